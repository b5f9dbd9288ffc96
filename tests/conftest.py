"""Test harness: a real PostgreSQL, a fresh database per test, the real server on loopback.

HS_TEST_DSN names a PostgreSQL cluster to use (scripts/test.sh sets it when one answers on
127.0.0.1:5432); without it the tests start an embedded PostgreSQL of their own.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from tests.harness import TestServer, start_test_server

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_dsn():
    dsn = os.environ.get("HS_TEST_DSN")
    if dsn:
        yield dsn
        return
    from storage.embedded import EmbeddedPostgres

    tmp = tempfile.mkdtemp(prefix="hs-test-pg-")
    embedded = EmbeddedPostgres(Path(tmp))
    try:
        yield embedded.start()
    finally:
        embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _dsn_for(admin_dsn: str, dbname: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(admin_dsn)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_db(pg_admin_dsn):
    """A database with every migration applied, copied for each test (fast: a file copy)."""
    from storage.database import apply_migrations

    name = f"hs_template_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(_dsn_for(pg_admin_dsn, name))
    await apply_migrations(conn)
    await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_dsns(pg_admin_dsn, template_db):
    """`await fresh_dsns()` makes one more fresh database; all are dropped at the end."""
    admin = await asyncpg.connect(pg_admin_dsn)
    names: list[str] = []

    async def make() -> str:
        name = f"hs_test_{os.getpid()}_{next(_counter)}"
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        names.append(name)
        return _dsn_for(pg_admin_dsn, name)

    try:
        yield make
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_dsn(fresh_dsns):
    return await fresh_dsns()


@pytest_asyncio.fixture(loop_scope="session")
async def make_server(fresh_dsn, fresh_dsns, tmp_path):
    """Starts servers on loopback; `await make_server(**config_overrides)`.

    The first server uses `fresh_dsn`; later ones get a fresh database each unless
    given `dsn=` (e.g. two workers sharing one database).
    """
    servers: list[TestServer] = []

    async def factory(**overrides) -> TestServer:
        dsn = overrides.pop("dsn", None) or (fresh_dsn if not servers else await fresh_dsns())
        server = await start_test_server(dsn, tmp_path / f"server{len(servers)}", **overrides)
        servers.append(server)
        return server

    yield factory
    for server in reversed(servers):
        await server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def server(make_server) -> TestServer:
    return await make_server()


@pytest.fixture
def embedded_pg_dir():
    """A directory for a private embedded PostgreSQL (storage/embedded.py), outside pytest's
    tmp_path: as root, pgserver runs PostgreSQL as its own user, which cannot enter
    pytest's private directories (any pytest run starting resets their mode to 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hs-embedded-pg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
