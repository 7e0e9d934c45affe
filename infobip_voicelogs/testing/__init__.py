"""A faithful fake of the provider, for your tests: `FakeInfobip` and its parts.

```python
from datetime import timedelta
from infobip_voicelogs.testing import FakeClock, FakeInfobip, Fault

fake = FakeInfobip(clock=FakeClock())
account = fake.add_account("acme")
account.generate(500, within=timedelta(hours=6))
account.script(Fault.status(429), Fault.reset())
async with fake.in_process_client(account) as client:
    ...
```

Nothing here imports uvicorn until `serve` or `running` is called, so the pytest
plugin (`infobip_voicelogs.testing.plugin`) loads without it.
"""

from .account import FakeAccount
from .clock import Clock, FakeClock, SystemClock
from .fake import IN_PROCESS_URL, FakeInfobip, JournalEntry
from .faults import Fault
from .pull import Pull, PullBox
from .pusher import PushBasic, PushFaults, PushHmac, PushStats, ReportPusher, report_of
from .server import FakeServer, running, serve
from .traffic import Traffic
from .transport import FakeTransport
from .virtual_time import FakeTime

__all__ = [
    "IN_PROCESS_URL",
    "Clock",
    "FakeAccount",
    "FakeClock",
    "FakeInfobip",
    "FakeServer",
    "FakeTime",
    "FakeTransport",
    "Fault",
    "JournalEntry",
    "Pull",
    "PullBox",
    "PushBasic",
    "PushFaults",
    "PushHmac",
    "PushStats",
    "ReportPusher",
    "SystemClock",
    "Traffic",
    "report_of",
    "running",
    "serve",
]
