"""A room joined over federation: its summary comes from the state the join brought, and
events arriving over federation bump it."""

from __future__ import annotations

from tests.federation_rooms import deliver, shared_room
from tests.integration.sliding_sync.helpers import Connection, list_ids
from tests.integration.sliding_sync.test_room_summaries import backfilled, snapshot

ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


async def test_room_joined_over_federation(make_server, ca):
    room = await shared_room(make_server, ca, initial_state=[ENCRYPTION])
    own = (await room.bob.room_create(name="local")).room_id
    conn = Connection(room.hs2, room.bob.access_token)
    body = {
        "lists": {
            "all": {"ranges": [[0, 9]], "timeline_limit": 1},
            "encrypted": {"ranges": [[0, 9]], "filters": {"is_encrypted": True}},
        }
    }
    resp = await conn.sync(body)
    assert set(list_ids(resp, "all")) == {room.room_id, own}
    assert list_ids(resp, "encrypted") == [room.room_id]
    entry = resp["rooms"][room.room_id]
    assert entry["name"] == "Shared" and entry["joined_count"] == 2

    said = await room.say(room.alice, "over federation")
    await deliver(room.hs1, room.hs2, [said])
    resp = await conn.sync(body)
    assert list_ids(resp, "all")[0] == room.room_id
    assert [e["event_id"] for e in resp["rooms"][room.room_id]["timeline"]] == [said]

    # The migration's backfill reads the state the join brought (held out of the
    # timeline) as the persistence hook did.
    maintained = await snapshot(room.hs2.db)
    assert await backfilled(room.hs2.db) == maintained
