"""The asyncpg pool, numbered SQL migrations, and the LISTEN connection for notifications."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources

import asyncpg

logger = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
# One channel for every cross-process wake-up; payloads say which stream moved.
NOTIFY_CHANNEL = "hs_streams"
# Cache invalidations sent by triggers (migration 1600), on the same LISTEN connection.
INVALIDATE_CHANNEL = "hs_invalidate"
# The LISTEN connection: how long it may sit idle before we check it still answers (a
# dead peer that never closed the socket), and the backoff between attempts to reopen it.
LISTEN_CHECK_SECONDS = 30.0
LISTEN_RETRY_FIRST = 0.1
LISTEN_RETRY_MAX = 5.0
LISTEN_APPLICATION_NAME = "homeserver-listen"


def migration_files() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        m = _MIGRATION_NAME.fullmatch(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text()))
    found.sort()
    numbers = [n for n, _, _ in found]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"duplicate migration numbers: {numbers}")
    return found


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Applies the migrations not yet applied, each in its own transaction.

    An advisory lock makes concurrent start-ups of several workers wait for one another.
    """
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock(7220211)")
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for number, name, sql in migration_files():
            if number in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, name
                )
            applied_now.append(name)
            logger.info("applied migration %s", name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(7220211)")
    return applied_now


def _payload_only(callback: Callable[[str], None]):
    def on_notify(_conn, _pid, _channel, payload):
        callback(payload)

    return on_notify


async def _keep_session(_conn: asyncpg.Connection) -> None:
    return None


class Database:
    def __init__(
        self,
        dsn: str,
        min_size: int = 2,
        max_size: int = 20,
        on_pool_wait: Callable[[float], None] | None = None,
    ):
        self.dsn = dsn
        # Told how long each request waited for a pooled connection (a metric above us).
        self._on_pool_wait = on_pool_wait
        self.min_size = min_size
        self.max_size = max_size
        self.pool: asyncpg.Pool | None = None
        self._listen_conn: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task | None = None
        self._listen_lost = asyncio.Event()
        # Times the LISTEN connection was reopened after it was lost (tests, metrics).
        self.listen_reconnects = 0
        # Further channels heard on the LISTEN connection (add_channel), e.g. invalidations.
        self._channels: dict[str, Callable[[str], None]] = {}
        # True once listening and, after a reconnect, once `on_reconnect` has run (it drops
        # what was cached while notifications could not arrive).
        self._listen_ready = False

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            # Statements are few and hot; keep them prepared per connection.
            statement_cache_size=1024,
            # asyncpg's default reset runs a round trip (UNLISTEN, RESET ALL, ...) on every
            # release: a tenth of a /sync fan-out's CPU. Pooled connections never keep
            # session state (LISTEN has its own connection; the migrations' advisory lock is
            # released explicitly), so there is nothing to reset.
            reset=_keep_session,
        )
        async with self.pool.acquire() as conn:
            await apply_migrations(conn)

    def add_channel(self, channel: str, callback: Callable[[str], None]) -> None:
        """Also calls `callback(payload)` for every NOTIFY on `channel` (call before listen)."""
        self._channels[channel] = callback

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up: while it is not, notifications are lost, so
        process caches that rely on them must neither serve nor fill."""
        conn = self._listen_conn
        return (
            self._listen_ready
            and conn is not None
            and not conn.is_closed()
            and not self._listen_lost.is_set()
        )

    async def listen(
        self,
        callback: Callable[[str], None],
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Calls `callback(payload)` for every NOTIFY on the streams channel, in commit order.

        The LISTEN connection is kept open: when it is lost (PostgreSQL restarted, the
        backend terminated, the network gone) it is reopened with backoff, and then
        `on_reconnect()` runs. Notifications sent while it was gone are lost for good, so
        `on_reconnect` must re-read whatever they would have said."""
        await self._listen_connect(callback)
        self._listen_ready = True
        self._listen_task = asyncio.get_running_loop().create_task(
            self._keep_listening(callback, on_reconnect)
        )

    async def _listen_connect(self, callback: Callable[[str], None]) -> None:
        # Named, so that an operator (or a test) can tell it from the pool's connections.
        conn = await asyncpg.connect(
            self.dsn, server_settings={"application_name": LISTEN_APPLICATION_NAME}
        )

        def on_notify(_conn, _pid, _channel, payload):
            callback(payload)

        def on_lost(lost_conn) -> None:
            if lost_conn is self._listen_conn:
                self._listen_lost.set()

        self._listen_lost.clear()
        self._listen_conn = conn
        conn.add_termination_listener(on_lost)
        try:
            await conn.add_listener(NOTIFY_CHANNEL, on_notify)
            for channel, channel_callback in self._channels.items():
                await conn.add_listener(channel, _payload_only(channel_callback))
        except BaseException:
            self._listen_conn = None
            conn.terminate()
            raise

    async def _listen_alive(self) -> bool:
        """Waits until the LISTEN connection is lost, or answers a check (True)."""
        try:
            await asyncio.wait_for(self._listen_lost.wait(), LISTEN_CHECK_SECONDS)
            return False
        except TimeoutError:
            pass
        conn = self._listen_conn
        if conn is None or conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.execute("SELECT 1"), LISTEN_CHECK_SECONDS)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    async def _keep_listening(
        self,
        callback: Callable[[str], None],
        on_reconnect: Callable[[], Awaitable[None]] | None,
    ) -> None:
        while True:
            if await self._listen_alive():
                continue
            self._listen_ready = False
            old, self._listen_conn = self._listen_conn, None
            if old is not None:
                old.terminate()
            logger.warning("LISTEN connection lost; reconnecting")
            delay = LISTEN_RETRY_FIRST
            while True:
                try:
                    await self._listen_connect(callback)
                    if on_reconnect is not None:
                        await on_reconnect()
                    self._listen_ready = True
                    break
                except Exception as e:
                    # Still down (or down again): try again, one line per attempt at most
                    # every LISTEN_RETRY_MAX seconds.
                    logger.info("LISTEN connection not back yet (%s); retrying", type(e).__name__)
                    conn, self._listen_conn = self._listen_conn, None
                    if conn is not None:
                        conn.terminate()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, LISTEN_RETRY_MAX)
            self.listen_reconnects += 1
            logger.warning("LISTEN connection re-established")

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listen_task
            self._listen_task = None
        if self._listen_conn is not None:
            conn, self._listen_conn = self._listen_conn, None
            await conn.close()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    @property
    def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("Database.open() has not been called")
        return self.pool

    # Thin pass-throughs so stores read as SQL, not pool plumbing.
    async def fetch(self, query: str, *args):
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args):
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args):
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args):
        async with self.acquire() as conn:
            return await conn.execute(query, *args)

    async def notify(self, channel: str, payload: str) -> None:
        await self.execute("SELECT pg_notify($1, $2)", channel, payload)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; the wait for it is reported (pool exhaustion shows there
        before it shows as latency everywhere)."""
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            if self._on_pool_wait is not None:
                self._on_pool_wait(time.perf_counter() - started)
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self):
        """A connection inside a transaction, for writes that take no stream position."""
        async with self.acquire() as conn, conn.transaction():
            yield conn

    def pool_stats(self) -> tuple[int, int]:
        """(connections in use, connections open)."""
        if self.pool is None:
            return 0, 0
        size = self.pool.get_size()
        return size - self.pool.get_idle_size(), size


def like_pattern(term: str) -> str:
    """A LIKE pattern matching `term` anywhere, its wildcards taken literally."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
