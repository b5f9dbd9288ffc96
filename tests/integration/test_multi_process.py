"""Two server processes on one database: a /sync on one wakes for an event sent via the other."""

from __future__ import annotations

import asyncio

from nio import RoomMessageText


async def test_sync_on_one_worker_wakes_for_event_persisted_by_another(make_server, fresh_dsn):
    first = await make_server()
    second = await make_server(dsn=fresh_dsn)
    alice = await first.client("alice")
    bob_on_second = await second.client("bob")
    room_id = (await alice.room_create(name="shared", invite=[bob_on_second.user_id])).room_id
    await bob_on_second.join(room_id)
    await bob_on_second.sync(timeout=0)

    poll = asyncio.create_task(bob_on_second.sync(timeout=20_000, since=bob_on_second.next_batch))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "across"})
    sync = await asyncio.wait_for(poll, 15)
    bodies = [
        e.body for e in sync.rooms.join[room_id].timeline.events if isinstance(e, RoomMessageText)
    ]
    assert bodies == ["across"]

    # And the other way: bob's worker persists, alice's worker sees it.
    await alice.sync(timeout=0)
    await bob_on_second.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "back"})
    sync = await alice.sync(timeout=10_000, since=alice.next_batch)
    bodies = [
        e.body for e in sync.rooms.join[room_id].timeline.events if isinstance(e, RoomMessageText)
    ]
    assert bodies == ["back"]
