"""The `infobip-voicelogs` command: `fetch`, `poll`, `simulate` and `demo`.

The command needs the `cli` extra (`pip install 'infobip-voicelogs[cli]'`); without it
`main()` says exactly that instead of a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

# What the `cli` extra brings.
_EXTRA = {"typer", "rich", "click", "uvicorn"}


def main() -> None:
    """Run the command line (the console script's entry point)."""
    try:
        from .app import app
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _EXTRA:
            raise
        sys.stderr.write(
            f"infobip-voicelogs: the command line needs {exc.name}: "
            "pip install 'infobip-voicelogs[cli]'\n"
        )
        raise SystemExit(2) from None
    app()
