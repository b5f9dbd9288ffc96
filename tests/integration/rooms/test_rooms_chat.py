"""Two and three users chatting through matrix-nio: rooms, membership, messages, sync."""

from __future__ import annotations

import asyncio

from nio import (
    JoinResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    RoomVisibility,
    SyncResponse,
)


async def _send_text(client, room_id: str, body: str) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def test_two_users_invite_join_and_chat(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    created = await alice.room_create(name="Cabinet", invite=[bob.user_id])
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id

    sync = await bob.sync(timeout=0)
    assert isinstance(sync, SyncResponse), sync
    assert room_id in sync.rooms.invite
    joined = await bob.join(room_id)
    assert isinstance(joined, JoinResponse), joined

    await _send_text(alice, room_id, "hello bob")
    sync = await bob.sync(timeout=0)
    timeline = sync.rooms.join[room_id].timeline.events
    bodies = [e.body for e in timeline if isinstance(e, RoomMessageText)]
    assert bodies == ["hello bob"]
    room = bob.rooms[room_id]
    assert room.name == "Cabinet"
    assert set(room.users) == {alice.user_id, bob.user_id}

    # Bob's waiting long-poll wakes for Alice's next message, without polling.
    poll = asyncio.create_task(bob.sync(timeout=20_000, since=bob.next_batch))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await _send_text(alice, room_id, "second")
    sync = await asyncio.wait_for(poll, 15)
    bodies = [e.body for e in sync.rooms.join[room_id].timeline.events]
    assert bodies == ["second"]


async def test_pagination_over_150_messages(server):
    alice = await server.client("alice")
    created = await alice.room_create(name="History")
    room_id = created.room_id
    for i in range(150):
        await _send_text(alice, room_id, f"m{i}")
    sync = await alice.sync(timeout=0)
    timeline = sync.rooms.join[room_id].timeline
    assert timeline.limited
    seen = [e.body for e in timeline.events if isinstance(e, RoomMessageText)]
    token = timeline.prev_batch
    while True:
        page = await alice.room_messages(room_id, token, limit=40)
        assert isinstance(page, RoomMessagesResponse), page
        seen[:0] = [e.body for e in reversed(page.chunk) if isinstance(e, RoomMessageText)]
        if not page.chunk or page.end is None:
            break
        token = page.end
    assert seen == [f"m{i}" for i in range(150)]


async def test_prev_batch_of_a_whole_room_in_an_initial_sync_pages_back_over_it(server):
    """An initial sync whose timeline holds the room's whole history: its prev_batch is
    the sync's position (as Synapse), so /messages pages back over the same events, then
    comes back empty without `end` (SyTest 10apidoc/34room-messages)."""
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="Small")).room_id
    sent = await _send_text(alice, room_id, "hello")
    sync = await alice.sync(timeout=0)
    timeline = sync.rooms.join[room_id].timeline
    assert not timeline.limited and timeline.events[0].source["type"] == "m.room.create"
    page = await alice.room_messages(room_id, timeline.prev_batch, limit=50)
    assert isinstance(page, RoomMessagesResponse), page
    assert [e.event_id for e in reversed(page.chunk)] == [e.event_id for e in timeline.events]
    assert page.chunk[0].event_id == sent and page.end
    last = await alice.room_messages(room_id, page.end, limit=50)
    assert isinstance(last, RoomMessagesResponse) and last.chunk == [] and last.end is None
    # An incremental sync's prev_batch still points before its first event.
    again = await alice.sync(timeout=0, since=sync.next_batch)
    await _send_text(alice, room_id, "more")
    later = await alice.sync(timeout=0, since=again.next_batch)
    newer = await alice.room_messages(room_id, later.rooms.join[room_id].timeline.prev_batch)
    assert isinstance(newer, RoomMessagesResponse) and newer.chunk[0].event_id == sent


async def test_concurrent_senders_every_event_once_in_order(server):
    senders = [await server.client(f"sender{i}") for i in range(6)]
    receivers = [await server.client(f"receiver{i}") for i in range(3)]
    everyone = [c.user_id for c in senders[1:] + receivers]
    rooms = []
    for n in range(3):
        created = await senders[0].room_create(name=f"room{n}", invite=everyone)
        rooms.append(created.room_id)
    for c in senders[1:] + receivers:
        for room_id in rooms:
            assert isinstance(await c.join(room_id), JoinResponse)
    for r in receivers:
        await r.sync(timeout=0)

    async def burst(client, idx):
        for k in range(10):
            await _send_text(client, rooms[(idx + k) % len(rooms)], f"{client.user_id}:{k}")

    async def collect(receiver):
        got: dict[str, list[str]] = {r: [] for r in rooms}
        ids: list[str] = []
        total = len(senders) * 10
        for _ in range(200):
            if sum(len(v) for v in got.values()) >= total:
                break
            sync = await receiver.sync(timeout=5_000, since=receiver.next_batch)
            for room_id, info in sync.rooms.join.items():
                for ev in info.timeline.events:
                    if isinstance(ev, RoomMessageText):
                        got[room_id].append(ev.body)
                        ids.append(ev.event_id)
        return got, ids

    collectors = [asyncio.create_task(collect(r)) for r in receivers]
    await asyncio.gather(*(burst(c, i) for i, c in enumerate(senders)))
    results = await asyncio.wait_for(asyncio.gather(*collectors), 60)
    for got, ids in results:
        assert len(ids) == len(set(ids)) == len(senders) * 10
        for bodies in got.values():
            # Each sender's messages arrive in the order they were sent.
            for s in senders:
                mine = [int(b.rsplit(":", 1)[1]) for b in bodies if b.startswith(s.user_id + ":")]
                assert mine == sorted(mine)


async def test_public_room_joinable_by_alias_without_invite(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    created = await alice.room_create(
        visibility=RoomVisibility.public, alias="townhall", name="Town hall"
    )
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.join(f"#townhall:{server.server_name}")
    assert isinstance(joined, JoinResponse), joined
    assert joined.room_id == created.room_id
    join_rule = await server.db.fetchval(
        "SELECT e.json FROM current_state c JOIN events e USING (event_id)"
        " WHERE c.room_id = $1 AND c.type = 'm.room.join_rules'",
        created.room_id,
    )
    assert '"join_rule":"public"' in join_rule


async def test_identical_rooms_created_at_once_get_distinct_ids(server):
    # v12 room IDs are the create event's hash: the same sender, content and millisecond
    # would give the same ID unless the server makes the events differ.
    alice = await server.client("alice")
    results = await asyncio.gather(*(alice.room_create() for _ in range(8)))
    ids = [r.room_id for r in results if isinstance(r, RoomCreateResponse)]
    assert len(ids) == 8 and len(set(ids)) == 8
