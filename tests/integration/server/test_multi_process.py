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


async def test_state_derived_caches_follow_changes_made_by_another_worker(make_server, fresh_dsn):
    """Member counts, heroes, memberships and power levels are cached per process until
    the room's state moves; a change committed by the other process must reach them."""
    first = await make_server()
    second = await make_server(dsn=fresh_dsn)
    alice = await first.client("alice")
    carol = await first.client("carol")
    bob_on_second = await second.client("bob")
    room_id = (await alice.room_create(invite=[bob_on_second.user_id])).room_id
    await carol.sync(timeout=0)  # carol's (empty) memberships are now cached on `first`
    await alice.sync(timeout=0)
    summary = alice.rooms[room_id].summary
    assert (summary.joined_member_count, summary.invited_member_count) == (1, 1)

    await bob_on_second.join(room_id)
    sync = await alice.sync(timeout=10_000, since=alice.next_batch)
    assert sync.rooms.join[room_id].summary.joined_member_count == 2
    assert sync.rooms.join[room_id].summary.invited_member_count == 0

    # An invite written by the other worker reaches carol's cached memberships here.
    await bob_on_second.room_invite(room_id, carol.user_id)
    sync = await carol.sync(timeout=10_000, since=carol.next_batch)
    assert room_id in sync.rooms.invite

    # Power levels: bob may not notify the whole room (level 50) until alice, through the
    # other worker, raises him; the highlight must follow on this worker.
    async def at_room_highlights() -> int:
        sent = await bob_on_second.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "@room listen"}
        )
        # A sync may wake for something else first: read until the message is in it, so
        # the read marker below covers it (else it counts again in the next round).
        for _ in range(20):
            sync = await alice.sync(timeout=10_000, since=alice.next_batch)
            room = sync.rooms.join.get(room_id)
            if room is not None and sent.event_id in [e.event_id for e in room.timeline.events]:
                break
        else:
            raise AssertionError("the message never reached alice's sync")
        await alice.room_read_markers(room_id, sent.event_id, sent.event_id)
        return room.unread_notifications.highlight_count

    assert await at_room_highlights() == 0
    alice_on_second = await second.login("alice")
    levels = await alice_on_second.room_get_state_event(room_id, "m.room.power_levels")
    content = dict(levels.content)
    content["users"] = {**content.get("users", {}), bob_on_second.user_id: 50}
    await alice_on_second.room_put_state(room_id, "m.room.power_levels", content)
    await alice.sync(timeout=10_000, since=alice.next_batch)
    assert await at_room_highlights() == 1
