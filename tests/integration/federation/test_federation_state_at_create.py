"""/state_ids and /state at a room's create event: the state before it is empty, which is
an answer, not "unknown" (found with Synapse, which asks when it pulls a room's first
events and gave up on them after our 404)."""

from __future__ import annotations

from urllib.parse import quote

from federation.client import FederationError
from tests.federation_ca import TestCA
from tests.federation_rooms import shared_room


async def test_state_before_the_create_event_is_empty(make_server, tmp_path):
    room = await shared_room(make_server, TestCA(tmp_path / "ca"))
    hs1, hs2 = room.hs1, room.hs2
    create = await hs1.hs.events.current_state_event(room.room_id, "m.room.create")
    path = f"/_matrix/federation/v1/state_ids/{quote(room.room_id, safe='')}"
    got = await hs2.hs.federation.client.get_json(
        hs1.server_name, path, query={"event_id": create.event_id}
    )
    assert got == {"pdu_ids": [], "auth_chain_ids": []}
    path = f"/_matrix/federation/v1/state/{quote(room.room_id, safe='')}"
    got = await hs2.hs.federation.client.get_json(
        hs1.server_name, path, query={"event_id": create.event_id}
    )
    assert got == {"pdus": [], "auth_chain": []}
    # An event we do not have is still not found.
    try:
        await hs2.hs.federation.client.get_json(
            hs1.server_name, path, query={"event_id": "$nothing"}
        )
    except FederationError as e:
        assert (e.status, e.errcode) == (404, "M_NOT_FOUND")
    else:
        raise AssertionError("state at an unknown event was answered")
