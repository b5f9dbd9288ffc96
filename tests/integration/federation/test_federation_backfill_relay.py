"""Backfill when the first server asked holds only part of the history: hs3 joins through
hs1, which itself joined hs2's room after it began, so hs1 can give back only its own
join; the rest comes from hs2 as hs3's user pages on. (Found with Synapse, which joins
rooms without fetching their history: /messages ended the history after that first part.)"""

from __future__ import annotations

from urllib.parse import quote

from nio import (
    JoinResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomVisibility,
)

from tests.federation_ca import TestCA, start_federating_server


async def test_history_is_complete_when_the_first_server_asked_has_only_part(make_server, tmp_path):
    ca = TestCA(tmp_path / "ca")
    # hs1 sorts before hs2: hs3 asks it first, as it lists the room's servers by name.
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["*.test.local"])
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["*.test.local"])
    hs3 = await start_federating_server(make_server, ca, "hs3.test.local", ["*.test.local"])
    alice, bob, carol = await hs2.client("alice"), await hs1.client("bob"), await hs3.client("c")
    created = await alice.room_create(visibility=RoomVisibility.public, alias="relay")
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "early"})
    assert isinstance(await bob.join(f"#relay:{hs2.server_name}"), JoinResponse)
    status, body = await hs3.request(
        "POST",
        f"/_matrix/client/v3/join/{quote(room_id)}?via={quote(hs1.server_name)}",
        token=carol.access_token,
        json={},
    )
    assert (status, body.get("room_id")) == (200, room_id), body

    sync = await carol.sync(timeout=0)
    token = sync.rooms.join[room_id].timeline.prev_batch
    bodies, types = [], []
    for _ in range(10):  # bounded: a dozen events, 5 a page
        page = await carol.room_messages(room_id, token, limit=5)
        assert isinstance(page, RoomMessagesResponse), page
        bodies += [e.body for e in page.chunk if isinstance(e, RoomMessageText)]
        types += [e.source["type"] for e in page.chunk]
        if not page.end:
            break
        token = page.end
    assert bodies == ["early"]
    assert types[-1] == "m.room.create"  # all the way to the start of the room
