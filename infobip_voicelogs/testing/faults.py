"""Faults on demand: what the fake does instead of (or on top of) answering well.

A fault is plain data (`Fault.status(503)`, `Fault.reset()`, ...). An account draws
the fault for each request from its `FaultPlan`: first the scripted sequence, one
fault per request in order, then, once the script is used up, the seeded random
faults by probability. How each fault looks to a client depends on how the client
reaches the fake; see the table in the "Testing your code" docs page.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs

__all__ = ["Fault", "FaultKind", "FaultPlan"]

FaultKind = Literal["pass", "status", "reset", "truncate", "malformed", "delay"]

#: The statuses a `Fault.status` may answer with: what the provider and its proxies send.
FAULT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@attrs.frozen
class Fault:
    """One misbehaviour of the fake, for one request. Build it with the class methods.

    >>> Fault.status(503)
    Fault(kind='status', status_code=503, seconds=0.0, retry_after=None, after_work=False)
    """

    #: What goes wrong.
    kind: FaultKind
    #: The HTTP status of a `status` fault.
    status_code: int | None = None
    #: How long a `delay` fault holds the response, in real seconds.
    seconds: float = 0.0
    #: The `Retry-After` a `status` fault sends, in seconds (written as the fake is configured).
    retry_after: float | None = None
    #: A `status` or `reset` fault that strikes after the provider did the work: the
    #: request counted against the limit, and a pull consumed its reports (a lost answer).
    after_work: bool = False

    @classmethod
    def status(
        cls, code: int, *, retry_after: float | None = None, after_work: bool = False
    ) -> Fault:
        """Answer with an error status (429, 408, 500, 502, 503 or 504) and the provider's body.

        The request does not reach the rate limiter, so it does not count against it;
        with ``after_work=True`` it does, and the answer replaces the real one after it
        was made: a pull's reports are consumed and lost, as when a proxy's 502 replaces
        the provider's answer.
        """
        if code not in FAULT_STATUSES:
            allowed = ", ".join(str(s) for s in sorted(FAULT_STATUSES))
            raise ValueError(f"Fault.status takes one of {allowed}, not {code}")
        return cls("status", status_code=code, retry_after=retry_after, after_work=after_work)

    @classmethod
    def reset(cls, *, after_work: bool = False) -> Fault:
        """Drop the connection without answering.

        With ``after_work=True`` the provider did the work first (the request counted
        against the limit, a pull consumed its reports), and the answer was lost.
        """
        return cls("reset", after_work=after_work)

    @classmethod
    def truncate(cls) -> Fault:
        """Answer 200 but send only half the body announced by `Content-Length` (a pull's
        reports were consumed: they are lost)."""
        return cls("truncate")

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with a complete body that is not valid JSON or XML (a pull's reports
        were consumed: they are lost)."""
        return cls("malformed")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds` of real time (to trip a client timeout)."""
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        return cls("delay", seconds=seconds)

    @classmethod
    def none(cls) -> Fault:
        """A scripted step that answers normally: `script(Fault.none(), Fault.status(503))`."""
        return cls("pass")


class FaultPlan:
    """The faults one account will show: a script first, then random faults by probability.

    Taking a fault is synchronous and locked, so concurrent requests each take a
    different scripted step and the random draws stay reproducible for a seed.
    """

    __slots__ = ("_lock", "_probabilities", "_rng", "_script")

    def __init__(self, seed: int | str | None = None) -> None:
        self._script: collections.deque[Fault] = collections.deque()
        self._probabilities: tuple[tuple[Fault, float], ...] = ()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def script(self, faults: Iterable[Fault]) -> None:
        """Append faults to the script; each request takes the next one."""
        with self._lock:
            self._script.extend(faults)

    def randomly(self, probabilities: Mapping[Fault, float], seed: int | str | None) -> None:
        """Replace the random faults: each request gets at most one, with these probabilities."""
        total = sum(probabilities.values())
        if any(p < 0 for p in probabilities.values()) or total > 1:
            raise ValueError("fault probabilities must be >= 0 and add up to at most 1")
        with self._lock:
            self._probabilities = tuple(probabilities.items())
            if seed is not None:
                self._rng = random.Random(seed)

    def clear(self) -> None:
        """Forget the script and the random faults."""
        with self._lock:
            self._script.clear()
            self._probabilities = ()

    @property
    def pending(self) -> int:
        """How many scripted steps are still to come."""
        return len(self._script)

    def take(self) -> Fault | None:
        """The fault for the next request, or `None` to answer normally."""
        with self._lock:
            if self._script:
                fault = self._script.popleft()
                return None if fault.kind == "pass" else fault
            if not self._probabilities:
                return None
            draw = self._rng.random()
            for fault, probability in self._probabilities:
                if draw < probability:
                    return fault
                draw -= probability
            return None
