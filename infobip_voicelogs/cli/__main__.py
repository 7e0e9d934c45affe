"""`python -m infobip_voicelogs.cli`: the same as the `infobip-voicelogs` command."""

from . import main

main()
