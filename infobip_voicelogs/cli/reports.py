"""The delivery reports' side of `poll` and `demo`: the receiver served on the poller's loop.

`reports_auth` turns the `--reports-*` options and the environment into a `ReportsAuth`
(exactly one scheme, its secret from the environment, never from the command line where
`ps` and the shell's history would show it). `serving` runs a `ReportsReceiver` with
uvicorn on the running event loop, next to the poller, and stops it within a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Generator, Mapping

import uvicorn

from ..models import VoiceLog
from ..reports import BasicCredentials, HmacSignature, NoAuth, ReportsAuth, VoiceReport

__all__ = [
    "PASSWORD_ENV",
    "ROUTE",
    "SECRET_ENV",
    "Serving",
    "as_log",
    "env_secret",
    "header_name",
    "reports_auth",
    "serving",
    "user_name",
]

#: The environment variable holding the Basic password (`--reports-user`).
PASSWORD_ENV = "INFOBIP_REPORTS_PASSWORD"
#: The environment variable holding the HMAC secret (`--reports-hmac-header`).
SECRET_ENV = "INFOBIP_REPORTS_SECRET"
#: The path the receiver answers under: ``POST /reports/{account}``.
ROUTE = "/reports"

logger = logging.getLogger("infobip_voicelogs")


def reports_auth(
    *,
    user: str | None,
    hmac_header: str | None,
    hmac_alg: str,
    no_auth: bool,
    environ: Mapping[str, str],
) -> ReportsAuth:
    """The receiver's authentication from the options: exactly one scheme.

    Raises `ValueError` with a one-line message naming the options or the variable; the
    message never holds a secret.
    """
    chosen = [name for name, on in _schemes(user, hmac_header, no_auth) if on]
    if len(chosen) != 1:
        given = f" (given: {', '.join(chosen)})" if chosen else ""
        raise ValueError(
            "--reports-port needs exactly one of --reports-user, --reports-hmac-header "
            f"and --reports-no-auth{given}"
        )
    if no_auth:
        return NoAuth()
    if user is not None:
        return BasicCredentials(
            user_name(user, "--reports-user"), env_secret(environ, PASSWORD_ENV)
        )
    assert hmac_header is not None
    header = header_name(hmac_header, "--reports-hmac-header")
    secret = env_secret(environ, SECRET_ENV)
    try:
        return HmacSignature(header, secret, algorithm=hmac_alg)
    except ValueError as exc:  # the header and the secret are checked: it is the algorithm
        raise ValueError(f"--reports-hmac-alg: {exc}") from None


def _schemes(user: str | None, header: str | None, no_auth: bool) -> list[tuple[str, bool]]:
    return [
        ("--reports-user", user is not None),
        ("--reports-hmac-header", header is not None),
        ("--reports-no-auth", no_auth),
    ]


def env_secret(environ: Mapping[str, str], variable: str) -> str:
    """The secret in the environment variable `variable`; `ValueError` naming it if unset."""
    value = environ.get(variable, "")
    if not value:
        raise ValueError(f"the environment variable {variable} is not set (or is empty)")
    return value


def user_name(user: str, option: str) -> str:
    """`user` as a Basic user name; `ValueError` naming `option` if it is empty or has ':'."""
    if not user or ":" in user:
        raise ValueError(f"{option} must be a non-empty name without ':'")
    return user


def header_name(name: str, option: str) -> str:
    """`name` as an HTTP header's name; `ValueError` naming `option` if it cannot be one."""
    if not name or not name.isascii() or any(c in name for c in " :\t\r\n"):
        raise ValueError(f"{option} must be an HTTP header name like X-Signature")
    return name


def as_log(item: VoiceLog | VoiceReport) -> VoiceLog:
    """A report as the log of the same state, for the table and CSV outputs (a log as is).

    Only what both sources carry: the report's own fields (`callbackData`, its call's
    times) are in the NDJSON output.
    """
    if isinstance(item, VoiceLog):
        return item
    call = item.voice_call
    duration = item.duration if call is None else call.duration
    done = item.done_at or item.end_time or (call.end_time if call is not None else None)
    return VoiceLog(
        bulk_id=item.bulk_id,
        message_id=item.message_id,
        to=item.to,
        from_=item.from_,
        sent_at=item.sent_at,
        done_at=done,
        duration=duration,
        mccmnc=item.mcc_mnc,
        price=item.price,
        status=item.status,
        error=item.error,
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket of our own: its port is known before uvicorn starts (port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Serving:
    """A receiver being served: its base URL, and `stop` to begin stopping it now."""

    def __init__(self, server: uvicorn.Server, url: str) -> None:
        self._server = server
        #: ``http://host:port``, the port the one bound (useful with port 0).
        self.url = url

    def stop(self) -> None:
        """Stop accepting; the requests in flight finish within the grace (idempotent)."""
        self._server.should_exit = True


@contextlib.asynccontextmanager
async def serving(
    app: object, *, host: str, port: int, grace: float, started: float = 10.0
) -> AsyncIterator[Serving]:
    """Serve the ASGI `app` with uvicorn on this loop while the block runs.

    Leaving stops it (or `Serving.stop` began it earlier): the requests in flight get
    `grace` seconds (a batch answered then is committed; one cut is answered nothing, so
    the provider sends it again), then the server is cancelled. Waiting for the start is
    bounded by `started` seconds. Raises `OSError` when the address cannot be bound.
    """
    server = _quiet_server(app, grace)
    sock = _bind(host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(started):
            while not server.started:
                if task.done():
                    task.result()  # its error, if it failed to start
                    raise OSError("the reports server stopped before it started")
                await asyncio.sleep(0.01)
        bound = sock.getsockname()[1]
        yield Serving(server, f"http://{f'[{host}]' if ':' in host else host}:{bound}")
    finally:
        server.should_exit = True
        await _stopped(task, grace)
        sock.close()


async def _stopped(task: asyncio.Task[None], grace: float) -> None:
    """Wait for uvicorn to finish its requests in flight, at most about `grace` seconds."""
    try:
        # Awaited, not shielded: a timeout (or our own cancellation) cancels it too.
        async with asyncio.timeout(grace + 1.0):  # uvicorn's own bound is whole seconds
            await task
    except TimeoutError:
        logger.warning("reports: the receiver's requests in flight were cut after the grace")
    except Exception:  # a failure while serving is the log's; the poller's end stands
        logger.exception("reports: the receiver's server failed")


def _quiet_server(app: object, grace: float) -> _Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]  # an ASGI callable; uvicorn's alias is narrower
        lifespan="off",
        log_level="warning",
        access_log=False,  # the paths carry account names only, but the log is the poller's
        timeout_graceful_shutdown=max(1, round(grace)),
        server_header=False,
    )
    return _Server(config)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: `poll`'s own handle Ctrl-C and SIGTERM
    (uvicorn's would replace them, and raise the signal again once it stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
