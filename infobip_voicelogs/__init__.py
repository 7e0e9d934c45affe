"""Read Infobip voice message logs (`GET /tts/3/logs`) reliably and fast, from asyncio.

```python
from infobip_voicelogs import LogsFetcher, LogsQuery, GeneralStatus

async with LogsFetcher("https://xyz.api.infobip.com", auth="API-KEY") as fetcher:
    logs = await fetcher.fetch(LogsQuery(general_status=GeneralStatus.DELIVERED))
```

Every public name is importable from here; the modules behind them are the layers
described in the design (`models`, `codec`, `throttle`, `retry`, `fetcher`, ...).
"""

import logging

from .__about__ import __version__
from .auth import ApiKeyAuth, BasicAuth, BearerAuth, IbssoAuth
from .codec import Format, decode_logs, encode_logs
from .endpoint import validate_base_url
from .errors import (
    ApiError,
    AuthenticationError,
    BudgetExceededError,
    DecodeError,
    IncompleteWindowWarning,
    InfobipError,
    InvalidQueryError,
    LeaseLostError,
    RateLimitError,
    RetentionWarning,
    ServerError,
    ThrottleUnavailableError,
    TransportError,
    VoiceLogsWarning,
)
from .fetcher import FetcherStats, LogsFetcher, Throttle
from .models import ErrorInfo, GeneralStatus, LogsQuery, Price, Status, VoiceLog
from .poller import Account, AccountResult, AccountStatus, Handler, LeaseState, LogsPoller
from .retry import RetryEvent
from .store import (
    CheckpointStore,
    Delivered,
    Lease,
    LeaseStore,
    ReportStore,
    SqliteStore,
    StoreError,
)
from .throttle import TokenBucket

__all__ = [
    "Account",
    "AccountResult",
    "AccountStatus",
    "ApiError",
    "ApiKeyAuth",
    "AuthenticationError",
    "BasicAuth",
    "BearerAuth",
    "BudgetExceededError",
    "CheckpointStore",
    "DecodeError",
    "Delivered",
    "ErrorInfo",
    "FetcherStats",
    "Format",
    "GeneralStatus",
    "Handler",
    "IbssoAuth",
    "IncompleteWindowWarning",
    "InfobipError",
    "InvalidQueryError",
    "Lease",
    "LeaseLostError",
    "LeaseState",
    "LeaseStore",
    "LogsFetcher",
    "LogsPoller",
    "LogsQuery",
    "Price",
    "RateLimitError",
    "ReportStore",
    "RetentionWarning",
    "RetryEvent",
    "ServerError",
    "SqliteStore",
    "Status",
    "StoreError",
    "Throttle",
    "ThrottleUnavailableError",
    "TokenBucket",
    "TransportError",
    "VoiceLog",
    "VoiceLogsWarning",
    "__version__",
    "decode_logs",
    "encode_logs",
    "validate_base_url",
]

# A library logs, the application decides where to: without its own configuration nothing
# is printed (not even "No handlers could be found").
logging.getLogger("infobip_voicelogs").addHandler(logging.NullHandler())
