"""The asyncpg pool, numbered SQL migrations, and the LISTEN connection for notifications."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources

import asyncpg

logger = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# One channel for every cross-process wake-up; payloads say which stream moved.
NOTIFY_CHANNEL = "hs_streams"


def migration_files() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
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


async def _keep_session(_conn: asyncpg.Connection) -> None:
    return None


class Database:
    def __init__(self, dsn: str, min_size: int = 2, max_size: int = 20):
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.pool: asyncpg.Pool | None = None
        self._listen_conn: asyncpg.Connection | None = None

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

    async def listen(self, callback: Callable[[str], Awaitable[None] | None]) -> None:
        """Calls `callback(payload)` for every NOTIFY on the streams channel, in commit order."""
        self._listen_conn = await asyncpg.connect(self.dsn)

        def on_notify(_conn, _pid, _channel, payload):
            callback(payload)

        await self._listen_conn.add_listener(NOTIFY_CHANNEL, on_notify)

    async def close(self) -> None:
        if self._listen_conn is not None:
            await self._listen_conn.close()
            self._listen_conn = None
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
        return await self._pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args):
        return await self._pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args):
        return await self._pool.fetchval(query, *args)

    async def execute(self, query: str, *args):
        return await self._pool.execute(query, *args)

    def acquire(self):
        return self._pool.acquire()

    @contextlib.asynccontextmanager
    async def transaction(self):
        """A connection inside a transaction, for writes that take no stream position."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    def pool_stats(self) -> tuple[int, int]:
        """(connections in use, connections open)."""
        if self.pool is None:
            return 0, 0
        size = self.pool.get_size()
        return size - self.pool.get_idle_size(), size
