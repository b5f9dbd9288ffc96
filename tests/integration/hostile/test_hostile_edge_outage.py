"""Issue 17 item 10: while the database is down, requests get 503 with Retry-After and
the log gets one line for the outage (not a traceback per request); when it is back, the
server serves again without a restart.

The database is a private embedded PostgreSQL that the test stops and starts (never the
shared one the other tests use).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse

import pytest_asyncio

from storage.embedded import EmbeddedPostgres
from tests.harness import start_test_server


@pytest_asyncio.fixture(loop_scope="session")
async def private_pg(embedded_pg_dir):
    embedded = EmbeddedPostgres(embedded_pg_dir)
    dsn = await asyncio.to_thread(embedded.start)
    yield embedded, dsn
    await asyncio.to_thread(embedded.stop)


async def test_database_outage_answers_503_and_logs_once(private_pg, tmp_path, caplog):
    embedded, dsn = private_pg
    server = await start_test_server(dsn, tmp_path / "server")
    try:
        client = await server.client()
        token = client.access_token
        user = urllib.parse.quote(client.user_id)
        requests = [
            ("GET", "/_matrix/client/v3/joined_rooms", None),
            ("GET", f"/_matrix/client/v3/profile/{user}", None),
            ("GET", "/_matrix/client/v3/sync?timeout=0", None),
            ("PUT", f"/_matrix/client/v3/user/{user}/account_data/org.example", {"a": 1}),
            ("POST", "/_matrix/client/v3/createRoom", {}),
        ]
        for method, path, body in requests:
            status, _ = await server.request(method, path, token=token, json=body)
            assert status == 200, (method, path)

        caplog.set_level(logging.INFO)
        await asyncio.to_thread(embedded.stop)
        answers = []
        for _ in range(5):
            for method, path, body in requests:
                async with server.http.request(
                    method,
                    server.base_url.rstrip("/") + path,
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                ) as resp:
                    answers.append(
                        (resp.status, (await resp.json())["errcode"], resp.headers["Retry-After"])
                    )
        assert set(answers) == {(503, "M_UNKNOWN", "5")}, answers
        outage_lines = [r for r in caplog.records if r.name == "storage.availability"]
        assert [r.getMessage().split(" (")[0] for r in outage_lines] == ["database unavailable"]
        tracebacks = [
            r.name
            for r in caplog.records
            if r.exc_info and r.name.startswith(("homeserver.http", "asyncpg"))
        ]
        assert not tracebacks, "a request's failure was logged with its traceback"

        await asyncio.to_thread(embedded.start)
        # Back: the first requests may still meet connections of the old server.
        for _ in range(100):
            status, _ = await server.request("GET", requests[0][1], token=token)
            if status == 200:
                break
            assert status == 503
            await asyncio.sleep(0.2)
        for method, path, body in requests:
            status, _ = await server.request(method, path, token=token, json=body)
            assert status == 200, (method, path)
        for _ in range(50):
            if any("available again" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.1)
        messages = [r.getMessage() for r in caplog.records if r.name == "storage.availability"]
        assert len(messages) == 2 and "available again" in messages[1], messages
    finally:
        await server.close()
