"""Knocking on a room of this server (POST /knock) and the knock section of /sync."""

from __future__ import annotations

from nio import JoinResponse, RoomCreateResponse, RoomInviteResponse, RoomKnockResponse

from tests.schema import assert_matches_schema


async def test_knock_shows_in_sync_and_an_invite_answers_it(server):
    alice = await server.client("alice")
    created = await alice.room_create(
        name="Knock here",
        alias="knockers",
        initial_state=[
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
        ],
    )
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    bob = await server.client("bob")
    first = await bob.sync(timeout=0)

    refused = await bob.join(room_id)
    assert getattr(refused, "status_code", None) == "M_FORBIDDEN", refused
    knocked = await bob.room_knock(f"#knockers:{server.server_name}", reason="please")
    assert isinstance(knocked, RoomKnockResponse), knocked
    assert knocked.room_id == room_id

    # matrix-nio does not read the knock section: check it on the wire, with the schema.
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/sync?since={first.next_batch}", token=bob.access_token
    )
    assert status == 200
    assert_matches_schema("sync.yaml", "/sync", "get", 200, body)
    events = body["rooms"]["knock"][room_id]["knock_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "Knock here"}} in [
        {k: e[k] for k in ("type", "state_key", "content")} for e in events
    ]
    mine = events[-1]
    assert (mine["sender"], mine["content"]["membership"]) == (bob.user_id, "knock")
    assert mine["content"]["reason"] == "please"

    assert isinstance(await alice.room_invite(room_id, bob.user_id), RoomInviteResponse)
    assert isinstance(await bob.join(room_id), JoinResponse)
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/sync?since={first.next_batch}", token=bob.access_token
    )
    assert room_id in body["rooms"]["join"] and room_id not in body["rooms"]["knock"]


async def test_knock_on_a_room_that_does_not_allow_it(server):
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="Closed")).room_id
    bob = await server.client("bob")
    refused = await bob.room_knock(room_id)
    assert getattr(refused, "status_code", None) == "M_FORBIDDEN", refused
    unknown = await bob.room_knock(f"!nowhere:{server.server_name}")
    assert getattr(unknown, "status_code", None) == "M_NOT_FOUND", unknown
