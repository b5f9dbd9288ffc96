"""A second process must not go blind when its LISTEN connection dies (issue 17, item 2).

Two server processes share one database; each hears the other's commits through
LISTEN/NOTIFY. Here PostgreSQL terminates both LISTEN connections (as a restart of
PostgreSQL or an operator's pg_terminate_backend would). Each process reconnects with
backoff and then re-reads every stream position: a /sync on B that was waiting wakes
for the event A committed while B was not listening, and B's next event is built on the
room's real head (one forward extremity), not on the head B had cached.
"""

from __future__ import annotations

import asyncio

import asyncpg
from nio import RoomMessageText, RoomSendResponse

from storage.database import LISTEN_APPLICATION_NAME
from storage.embedded import EmbeddedPostgres
from tests.conftest import _dsn_for
from tests.harness import start_test_server


async def _terminate_listen_connections(db) -> int:
    return await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = $1",
        LISTEN_APPLICATION_NAME,
    )


async def test_second_process_sees_events_after_its_listen_connection_is_killed(
    make_server, fresh_dsn, monkeypatch
):
    first = await make_server()
    second = await make_server(dsn=fresh_dsn)
    alice = await first.client("alice")
    bob = await second.client("bob")
    room_id = (await alice.room_create(name="shared", invite=[bob.user_id])).room_id
    await bob.join(room_id)  # `second` now has the room's head cached
    await bob.sync(timeout=0)

    # B may reconnect only once A's event is committed, so that B surely missed its
    # notification (a reconnect a moment earlier would simply hear it).
    gate = asyncio.Event()
    connect = second.hs.db._listen_connect

    async def gated_connect(callback):
        await gate.wait()
        await connect(callback)

    monkeypatch.setattr(second.hs.db, "_listen_connect", gated_connect)

    poll = asyncio.create_task(bob.sync(timeout=30_000, since=bob.next_batch))
    await asyncio.sleep(0.2)
    assert not poll.done()
    assert await _terminate_listen_connections(first.db) == 2
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "blind"})
    gate.set()

    sync = await asyncio.wait_for(poll, 25)
    room = sync.rooms.join.get(room_id)
    assert room is not None, "B's /sync never woke for A's event"
    assert [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)] == ["blind"]
    assert second.hs.db.listen_reconnects >= 1

    # B builds on the head as stored, which A's event moved.
    mine = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "seen"})
    extremities = await first.db.fetch(
        "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", room_id
    )
    assert [r["event_id"] for r in extremities] == [mine.event_id]
    prev = await first.db.fetchval(
        "SELECT json::jsonb -> 'prev_events' FROM events WHERE event_id = $1", mine.event_id
    )
    assert sent.event_id in prev

    # And both keep hearing each other afterwards.
    await alice.sync(timeout=0)
    await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "again"})
    sync = await alice.sync(timeout=20_000, since=alice.next_batch)
    bodies = [
        e.body for e in sync.rooms.join[room_id].timeline.events if isinstance(e, RoomMessageText)
    ]
    assert "again" in bodies


async def test_both_processes_carry_on_after_a_real_postgresql_restart(tmp_path, embedded_pg_dir):
    """The same through a real restart of a private PostgreSQL (never the shared one):
    every connection of both processes dies at once."""
    embedded = EmbeddedPostgres(embedded_pg_dir)
    admin_dsn = await asyncio.to_thread(embedded.start)
    servers = []
    try:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute("CREATE DATABASE hs_restart")
        await admin.close()
        dsn = _dsn_for(admin_dsn, "hs_restart")
        first = await start_test_server(dsn, tmp_path / "a")
        servers.append(first)
        second = await start_test_server(dsn, tmp_path / "b")
        servers.append(second)
        alice = await first.client("alice")
        bob = await second.client("bob")
        room_id = (await alice.room_create(name="shared", invite=[bob.user_id])).room_id
        await bob.join(room_id)
        await bob.sync(timeout=0)

        poll = asyncio.create_task(bob.sync(timeout=30_000, since=bob.next_batch))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(embedded.stop)
        await asyncio.to_thread(embedded.start)
        sent = await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "after restart"}
        )
        assert isinstance(sent, RoomSendResponse), sent

        sync = await asyncio.wait_for(poll, 25)
        room = sync.rooms.join.get(room_id)
        assert room is not None, "B's /sync never woke for A's event"
        assert [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)] == [
            "after restart"
        ]
        mine = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "b"})
        assert isinstance(mine, RoomSendResponse), mine
        extremities = await first.db.fetch(
            "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", room_id
        )
        assert [r["event_id"] for r in extremities] == [mine.event_id]
    finally:
        for server in reversed(servers):
            await server.close()
        await asyncio.to_thread(embedded.stop)
