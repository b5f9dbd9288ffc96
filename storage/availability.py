"""Whether the database is reachable, as requests find out.

While PostgreSQL is down (restarting, failing over, unreachable), every request that
needs it fails the same way. Those failures are not bugs: the client gets 503 with
Retry-After, and the log gets one line when the outage is first seen and one when a probe
finds the database back, not a traceback per request.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from types import TracebackType

import asyncpg

logger = logging.getLogger(__name__)

# How often the probe asks whether the database is back.
PROBE_INTERVAL_S = 1.0

# The server refuses or drops connections, or cannot take any write: class 08 (connection
# exception), class 57 (operator intervention: admin/crash shutdown, cannot connect now),
# class 53 (insufficient resources: too many connections, disk full); and asyncpg's
# protocol state errors, which a connection whose server died mid-way raises.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InternalClientError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


def _raised_in_asyncpg(tb: TracebackType | None) -> bool:
    return any(
        frame.f_globals.get("__name__", "").startswith("asyncpg")
        for frame, _ in traceback.walk_tb(tb)
    )


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (rather than a query's fault)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # "connection is closed", not a misuse of the API
    # Socket errors and connect timeouts count only when asyncpg met them (not a file's).
    if isinstance(exc, OSError):  # TimeoutError included
        return _raised_in_asyncpg(exc.__traceback__)
    return False


class OutageWithoutTraceback(logging.Filter):
    """During an outage a line says enough: asyncpg's pool logs each attempt to reconnect
    (with backoff), and background loops each failed round, with a traceback otherwise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            if is_unavailable(record.exc_info[1]):
                record.msg = f"{record.msg} ({type(record.exc_info[1]).__name__})"
                record.exc_info = None
                record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(OutageWithoutTraceback())


class Outage:
    """Tracks one database outage at a time: logs its start once, probes for its end."""

    def __init__(self, pool_of):
        # A callable returning the pool (or None when closed): the pool may be rebuilt.
        self._pool_of = pool_of
        self._probe: asyncio.Task | None = None
        self.requests_refused = 0

    @property
    def ongoing(self) -> bool:
        return self._probe is not None and not self._probe.done()

    def report(self, exc: BaseException) -> None:
        self.requests_refused += 1
        if self.ongoing:
            return
        logger.warning(
            "database unavailable (%s); answering 503 until it is back", type(exc).__name__
        )
        self.requests_refused = 1
        self._probe = asyncio.get_running_loop().create_task(self._wait_until_back())

    async def _wait_until_back(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            pool = self._pool_of()
            if pool is None:
                return
            try:
                await pool.fetchval("SELECT 1")
            except Exception as e:
                if is_unavailable(e):
                    continue
                raise
            logger.warning(
                "database available again (%d requests answered 503)", self.requests_refused
            )
            return

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
