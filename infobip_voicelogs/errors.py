"""The whole exception tree, and the warnings, in one place.

```
InfobipError
├── ApiError                  the provider answered with an error status
│   ├── AuthenticationError   401 or 403
│   ├── RateLimitError        429 after the last attempt
│   └── ServerError           5xx after the last attempt
├── TransportError            the network failed (after the last attempt, if it may pass)
├── BudgetExceededError       a call's time budget ran out (also a TimeoutError)
├── DecodeError               a body that is not what it claims to be
├── InvalidQueryError         a request that cannot be sent (also a ValueError)
├── StoreError                the checkpoint store failed (locked, full, corrupt, closed, too new)
│   └── LeaseLostError        a fenced commit found its account's lease held by another
└── ThrottleUnavailableError  a shared (Redis) throttle cannot be reached; never retried
```

No message or repr built here ever contains a credential: the classes carry
only the status, the provider's message id and text, and short body excerpts. Where the
library raises one of them over another library's error, the boundary scrubs every
configured secret from the whole chain (`redaction.scrub_exception`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BudgetExceededError",
    "DecodeError",
    "IncompleteWindowWarning",
    "InfobipError",
    "InvalidQueryError",
    "LeaseLostError",
    "RateLimitError",
    "RetentionWarning",
    "ServerError",
    "StoreError",
    "ThrottleUnavailableError",
    "TransportError",
    "VoiceLogsWarning",
]


class InfobipError(Exception):
    """Base class of every error this library raises.

    Every one pickles and copies with its attributes (across a process pool, say).
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # The subclasses' __init__ take different arguments: rebuild from what is stored.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(cls: type[InfobipError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


# -- errors the provider told us about -----------------------------------------------------


class ApiError(InfobipError):
    """The provider answered with an HTTP error status.

    Attributes:
        status_code: The HTTP status of the response.
        message_id: The provider's error id (`TOO_MANY_REQUESTS`, `E429`, ...), if the body had one.
        text: The provider's human-readable text, if the body had one.
        retry_after: Seconds the provider asked us to wait (`Retry-After`), if it did.
        validation_errors: The provider's complaints per request field
            (`{"limit": ("must be at most 1000",)}`), when the body carried any.
    """

    def __init__(
        self,
        status_code: int,
        message_id: str | None = None,
        text: str | None = None,
        *,
        retry_after: float | None = None,
        validation_errors: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.status_code = status_code
        self.message_id = message_id
        self.text = text
        self.retry_after = retry_after
        self.validation_errors: Mapping[str, tuple[str, ...]] = dict(validation_errors or {})
        super().__init__(status_code, message_id, text)

    def __str__(self) -> str:
        parts = [f"HTTP {self.status_code}"]
        if self.message_id:
            parts.append(self.message_id)
        if self.text:
            parts.append(self.text)
        fields = "; ".join(
            f"{field}: {', '.join(problems)}" for field, problems in self.validation_errors.items()
        )
        if fields:
            parts.append(f"({fields})")
        return ": ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, "
            f"message_id={self.message_id!r}, text={self.text!r})"
        )


class AuthenticationError(ApiError):
    """The credentials were refused (401) or lack the right (403); never retried."""


class RateLimitError(ApiError):
    """The account is over its request limit (429) and retrying did not help."""


class ServerError(ApiError):
    """The provider failed (5xx) and retrying did not help."""


# -- errors on our side of the wire --------------------------------------------------------


class TransportError(InfobipError):
    """The request never got a complete answer (connect, read, timeout, reset, truncation).

    Attributes:
        retryable: Whether another try may succeed: false for a failure that only repeats
            (a host name the resolver says does not exist, a request the HTTP layer
            refuses to send, such as a header it cannot carry), which is raised at once.
    """

    def __init__(self, *args: object, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(*args)


class BudgetExceededError(InfobipError, TimeoutError):
    """A call's ``budget`` ran out before it got an answer; the last error is its ``__cause__``.

    Also a `TimeoutError`, so code that catches timeouts catches it. The message says where
    the time went; so do the attributes.

    Attributes:
        budget: The seconds the call was allowed.
        spent: The seconds it had spent when it gave up.
        throttle_wait: Seconds spent waiting for the throttle.
        tries: Tries started.
        try_time: Seconds spent in those tries.
        backoff: Seconds spent waiting between tries.
    """

    def __init__(
        self,
        message: str,
        *,
        budget: float,
        spent: float,
        throttle_wait: float = 0.0,
        tries: int = 0,
        try_time: float = 0.0,
        backoff: float = 0.0,
    ) -> None:
        self.budget = budget
        self.spent = spent
        self.throttle_wait = throttle_wait
        self.tries = tries
        self.try_time = try_time
        self.backoff = backoff
        super().__init__(message)


class DecodeError(InfobipError):
    """A response body is not what its content type claims: malformed, truncated or misshapen.

    Attributes:
        path: Where in the body the problem is (`results[3].sentAt`), or `""` for the whole body.
        excerpt: A short excerpt of the body, for the log.
    """

    def __init__(self, message: str, *, path: str = "", excerpt: str = "") -> None:
        self.path = path
        self.excerpt = excerpt
        full = f"{path}: {message}" if path else message
        if excerpt:
            full = f"{full} (body starts {excerpt!r})"
        super().__init__(full)


class InvalidQueryError(InfobipError, ValueError):
    """A query that cannot be sent: the message names the field and what is wrong with it.

    Attributes:
        field: The name of the offending `LogsQuery` field.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


# -- errors of the checkpoint store --------------------------------------------------------


class StoreError(InfobipError):
    """The checkpoint store failed: locked, full, read-only, corrupt, closed, or too new."""


class LeaseLostError(StoreError):
    """A fenced commit was refused, nothing written: the lease expired or passed to another."""


# -- errors of a shared throttle -----------------------------------------------------------


class ThrottleUnavailableError(InfobipError):
    """A shared throttle (`RedisBucket` with ``on_unavailable="raise"``) cannot reach Redis.

    Raised by `acquire` before any request is sent, so nothing went over the limit; the
    retry policy does not retry it (the outage would only repeat, and a caller asked to know).
    """


# -- warnings ------------------------------------------------------------------------------


class VoiceLogsWarning(UserWarning):
    """Base class of the warnings this library emits."""


class IncompleteWindowWarning(VoiceLogsWarning):
    """A time-window walk could not reach every log of a millisecond holding more than a page."""


class RetentionWarning(VoiceLogsWarning):
    """A window reaches further back than the provider's 48-hour retention of logs."""
