"""Room summaries (MSC3266): GET /v1/room_summary/{roomIdOrAlias} and its unstable paths,
with and without authentication, on rooms set up by matrix-nio; bodies validated against
the spec's room_summary.yaml."""

from __future__ import annotations

from urllib.parse import quote

from nio import RoomCreateResponse, RoomPreset, RoomVisibility

from tests.schema import assert_matches_schema

PATHS = (
    "/_matrix/client/v1/room_summary/{}",
    "/_matrix/client/unstable/im.nheko.summary/rooms/{}/summary",
    "/_matrix/client/unstable/im.nheko.summary/summary/{}",
)


async def _summary(server, room, client=None, path=PATHS[0], query=""):
    status, body = await server.request(
        "GET",
        path.format(quote(room, safe="")) + query,
        token=client.access_token if client is not None else None,
    )
    if status == 200:
        assert_matches_schema(
            "room_summary.yaml", "/room_summary/{roomIdOrAlias}", "get", 200, body
        )
    return status, body


async def _create(client, **kw) -> str:
    resp = await client.room_create(**kw)
    assert isinstance(resp, RoomCreateResponse), resp
    return resp.room_id


def _join_rule(rule, **extra):
    return {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": rule, **extra}}


async def test_public_room_by_alias_with_and_without_auth(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = await _create(
        alice,
        visibility=RoomVisibility.public,
        alias="lobby",
        name="Lobby",
        topic="Say hello",
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    alias = f"#lobby:{server.server_name}"
    for path in PATHS:
        status, body = await _summary(server, alias, path=path)
        assert status == 200, body
        assert body["room_id"] == room
        assert body["name"] == "Lobby" and body["topic"] == "Say hello"
        assert body["canonical_alias"] == alias
        assert body["join_rule"] == "public" and body["num_joined_members"] == 1
        assert body["encryption"] == "m.megolm.v1.aes-sha2"
        assert body["room_version"]
        assert "membership" not in body
    status, body = await _summary(server, room, alice)
    assert body["membership"] == "join"
    status, body = await _summary(server, room, bob)
    assert (status, body["membership"]) == (200, "leave")


async def test_private_room_is_not_revealed(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    room = await _create(alice, preset=RoomPreset.private_chat, name="Secret")
    missing = f"!doesnotexist:{server.server_name}"
    # Strangers, anonymous or not, get the very answer an unknown room gets.
    expected = (404, {"errcode": "M_NOT_FOUND", "error": "Room not found"})
    assert await _summary(server, room, carol) == expected
    assert await _summary(server, room) == expected
    assert await _summary(server, missing, carol) == expected
    status, body = await _summary(server, f"#nope:{server.server_name}", carol)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

    await alice.room_invite(room, bob.user_id)
    status, body = await _summary(server, room, bob)
    assert (status, body["membership"], body["name"]) == (200, "invite", "Secret")
    await bob.join(room)
    status, body = await _summary(server, room, bob, path=PATHS[1])
    assert (status, body["membership"], body["num_joined_members"]) == (200, "join", 2)


async def test_knock_world_readable_and_restricted(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    knock = await _create(alice, initial_state=[_join_rule("knock")])
    status, body = await _summary(server, knock)
    assert (status, body["join_rule"]) == (200, "knock")

    readable = await _create(
        alice,
        preset=RoomPreset.private_chat,
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "world_readable"},
            }
        ],
    )
    status, body = await _summary(server, readable)
    assert (status, body["world_readable"]) == (200, True)

    space = await _create(alice, preset=RoomPreset.private_chat, space=True)
    restricted = await _create(
        alice,
        initial_state=[
            _join_rule("restricted", allow=[{"type": "m.room_membership", "room_id": space}])
        ],
    )
    # Not in the space: nothing to see; anonymous neither.
    assert (await _summary(server, restricted, bob))[0] == 404
    assert (await _summary(server, restricted))[0] == 404
    await alice.room_invite(space, bob.user_id)
    await bob.join(space)
    status, body = await _summary(server, restricted, bob)
    assert status == 200, body
    assert body["allowed_room_ids"] == [space]
    assert body["membership"] == "leave"
    status, body = await _summary(server, space, bob, path=PATHS[2])
    assert (status, body["room_type"]) == (200, "m.space")


async def test_bad_input(server):
    alice = await server.client("alice")
    status, body = await _summary(server, "not-a-room", alice)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await server.request(
        "GET", PATHS[0].format(quote(f"!x:{server.server_name}")), token="not-a-token"
    )
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, body = await server.request("GET", "/_matrix/client/versions")
    assert body["unstable_features"]["im.nheko.summary"] is True
