"""Client-side backfill: a user on hs2 pages back through history from before hs2 joined;
hs2 fetches it from hs1 with /backfill as /messages reaches the oldest event it has."""

from __future__ import annotations

from nio import (
    JoinResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomPreset,
    RoomVisibility,
    SyncResponse,
)

from tests.federation_ca import start_federating_server
from tests.federation_rooms import shared_room
from tests.integration.federation.helpers import served


async def _page_back(client, room_id: str, token: str) -> tuple[list[str], list[str]]:
    """Message bodies and event types, newest first, paging back to the room's start."""
    bodies: list[str] = []
    types: list[str] = []
    for _ in range(20):  # bounded: a few dozen events, 10 a page
        page = await client.room_messages(room_id, token, limit=10)
        assert isinstance(page, RoomMessagesResponse), page
        bodies += [e.body for e in page.chunk if isinstance(e, RoomMessageText)]
        types += [e.source["type"] for e in page.chunk]
        if not page.end or not page.chunk:
            break
        token = page.end
    return bodies, types


async def test_history_from_before_the_join_is_backfilled(make_server, ca):
    old: list[str] = []

    async def before_join(room):
        for i in range(25):
            old.append(await room.say(room.alice, f"old {i}"))

    room = await shared_room(make_server, ca, before_join=before_join)
    bob = room.bob
    sync = await bob.sync(timeout=0, full_state=True)
    assert isinstance(sync, SyncResponse)
    token = sync.rooms.join[room.room_id].timeline.prev_batch
    bodies, types = await _page_back(bob, room.room_id, token)
    assert bodies == [f"old {i}" for i in reversed(range(25))]
    assert types[-1] == "m.room.create"  # all the way to the start of the room

    stored = await room.hs2.hs.event_store.get_events(old)
    assert len(stored) == 25
    assert all(e.stream_ordering < 0 and e.status is None for e in stored.values())
    # Backfilled history never shows in an incremental sync.
    again = await bob.sync(timeout=0, since=sync.next_batch)
    joined = again.rooms.join.get(room.room_id)
    assert joined is None or not joined.timeline.events


async def test_a_room_without_other_servers_is_not_backfilled(server):
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="Alone")).room_id
    assert await server.hs.federation.backfiller.backfill(room_id, 10) == 0
    assert await server.hs.federation.backfiller.backward_extremities(room_id) == []


async def test_history_after_a_real_join_over_federation(make_server, ca):
    """The same through the join endpoints (make_join/send_join) and the outbound queues."""
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    alice = await hs1.client("alice")
    created = await alice.room_create(
        visibility=RoomVisibility.public, preset=RoomPreset.public_chat, alias="history"
    )
    assert isinstance(created, RoomCreateResponse), created
    for i in range(15):
        await alice.room_send(
            created.room_id, "m.room.message", {"msgtype": "m.text", "body": f"early {i}"}
        )
    bob = await hs2.client("bob")
    assert isinstance(await bob.join(f"#history:{hs1.server_name}"), JoinResponse)
    sync = await bob.sync(timeout=0, full_state=True)
    token = sync.rooms.join[created.room_id].timeline.prev_batch
    bodies, types = await _page_back(bob, created.room_id, token)
    assert bodies == [f"early {i}" for i in reversed(range(15))]
    assert types[-1] == "m.room.create"


async def test_a_short_history_comes_whole_in_one_request(make_server, ca):
    """SyTest 34room-backfill: a client asking for a few events still gets a batch big
    enough (MIN_REQUEST) to reach the room's first events, which hs2 holds only as
    outliers from the join: they are placed in order, with no /state_ids (which SyTest's
    server does not answer)."""
    old: list[str] = []

    async def before_join(room):
        for i in range(5):
            old.append(await room.say(room.alice, f"old {i}"))

    room = await shared_room(make_server, ca, before_join=before_join)
    asked = served("GET", "/_matrix/federation/v1/state_ids/{room_id}")
    sync = await room.bob.sync(timeout=0, full_state=True)
    token = sync.rooms.join[room.room_id].timeline.prev_batch
    page = await room.bob.room_messages(room.room_id, token, limit=2)
    assert isinstance(page, RoomMessagesResponse), page
    assert [e.body for e in page.chunk] == ["old 4", "old 3"]
    stored = await room.hs2.hs.event_store.get_events(old)
    assert len(stored) == 5 and all(e.status is None for e in stored.values())
    assert served("GET", "/_matrix/federation/v1/state_ids/{room_id}") == asked
    bodies, types = await _page_back(room.bob, room.room_id, page.end)
    assert bodies == ["old 2", "old 1", "old 0"]
    assert types[-1] == "m.room.create"
