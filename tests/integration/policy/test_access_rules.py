"""Room access rules (im.vector.room.access_rules, homeserver/policy) on one server, with
matrix-nio clients: creation defaults, each rule allowing and refusing, and bad input
answering Matrix errors and changing nothing."""

from __future__ import annotations

from urllib.parse import quote

from nio import (
    RoomCreateResponse,
    RoomGetStateResponse,
    RoomPreset,
    RoomPutStateError,
    RoomPutStateResponse,
)

from homeserver.policy.rules import ACCESS_RULES

RULES_ON = {"access_rules": {"enabled": True, "external_servers": ["external.example"]}}


async def _state(client, room_id: str) -> dict[tuple[str, str], dict]:
    resp = await client.room_get_state(room_id)
    assert isinstance(resp, RoomGetStateResponse), resp
    return {(e["type"], e["state_key"]): e["content"] for e in resp.events}


async def _create(client, **kw) -> str:
    resp = await client.room_create(**kw)
    assert isinstance(resp, RoomCreateResponse), resp
    return resp.room_id


async def test_creation_defaults_restricted_and_direct(make_server):
    server = await make_server(**RULES_ON)
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = await _create(alice)
    state = await _state(alice, room)
    assert state[(ACCESS_RULES, "")] == {"rule": "restricted"}
    # Only admins may change the rule.
    assert state[("m.room.power_levels", "")]["events"][ACCESS_RULES] == 100

    dm = await _create(alice, is_direct=True, invite=[bob.user_id])
    assert (await _state(alice, dm))[(ACCESS_RULES, "")] == {"rule": "direct"}


async def mark_external(server, admin, user_id: str, **body) -> dict:
    status, answer = await server.request(
        "PUT",
        f"/_synapse/admin/v1/users/{quote(user_id)}/external",
        token=admin.access_token,
        json={"external": True, **body},
    )
    assert status == 200, answer
    return answer


async def test_rules_off_by_default(make_server):
    server = await make_server(admins=["@admin:test.local"])
    admin = await server.client("admin")
    alice = await server.client("alice")
    eve = await server.client("eve")
    await mark_external(server, admin, eve.user_id)
    room = await _create(alice)
    assert (ACCESS_RULES, "") not in await _state(alice, room)
    # No rule to enforce: an external user may be invited anywhere.
    resp = await alice.room_invite(room, eve.user_id)
    assert not hasattr(resp, "status_code") or resp.status_code is None, resp
    assert (await _state(alice, room))[("m.room.member", eve.user_id)]["membership"] == "invite"


async def test_restricted_refuses_external_users(make_server):
    server = await make_server(admins=["@admin:test.local"], **RULES_ON)
    admin = await server.client("admin")
    alice = await server.client("alice")
    eve = await server.client("eve")
    await mark_external(server, admin, eve.user_id)
    room = await _create(alice)
    public = await _create(alice, preset=RoomPreset.public_chat)
    before = await _state(alice, room)
    status, body = await server.request(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(room)}/invite",
        token=alice.access_token,
        json={"user_id": eve.user_id},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    assert "external" in body["error"]
    assert await _state(alice, room) == before
    # Nor may they join a public restricted room.
    resp = await eve.join(public)
    assert resp.status_code == "M_FORBIDDEN", resp
    assert ("m.room.member", eve.user_id) not in await _state(alice, public)

    # createRoom inviting an external user into a restricted room: refused, no room made.
    rooms_before = (await alice.joined_rooms()).rooms
    for invitee in (eve.user_id, "@mallory:external.example"):
        status, body = await server.request(
            "POST",
            "/_matrix/client/v3/createRoom",
            token=alice.access_token,
            json={"invite": [invitee]},
        )
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    assert (await alice.joined_rooms()).rooms == rooms_before

    # In an unrestricted room they come in by invitation only.
    await alice.room_put_state(room, ACCESS_RULES, {"rule": "unrestricted"})
    resp = await alice.room_invite(room, eve.user_id)
    assert getattr(resp, "status_code", None) is None, resp
    joined = await eve.join(room)
    assert getattr(joined, "room_id", None) == room, joined


async def test_direct_room_limits(make_server):
    server = await make_server(**RULES_ON)
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    dm = await _create(alice, is_direct=True, invite=[bob.user_id])
    for etype, content in (
        ("m.room.name", {"name": "ours"}),
        ("m.room.topic", {"topic": "t"}),
        ("m.room.avatar", {"url": "mxc://x/y"}),
    ):
        resp = await alice.room_put_state(dm, etype, content)
        assert isinstance(resp, RoomPutStateError) and resp.status_code == "M_FORBIDDEN", resp
    # A third member: refused.
    resp = await alice.room_invite(dm, carol.user_id)
    assert resp.status_code == "M_FORBIDDEN", resp
    state = await _state(alice, dm)
    assert ("m.room.member", carol.user_id) not in state
    assert ("m.room.name", "") not in state
    # The invited second member may join.
    joined = await bob.join(dm)
    assert getattr(joined, "room_id", None) == dm, joined
    # No public join rule, no other rule.
    resp = await alice.room_put_state(dm, "m.room.join_rules", {"join_rule": "public"})
    assert resp.status_code == "M_FORBIDDEN", resp
    resp = await alice.room_put_state(dm, ACCESS_RULES, {"rule": "restricted"})
    assert resp.status_code == "M_FORBIDDEN", resp
    assert (await _state(alice, dm))[(ACCESS_RULES, "")] == {"rule": "direct"}

    # createRoom: a direct room with a name, two invitees, or a public preset: refused
    # before anything is created.
    rooms_before = (await alice.joined_rooms()).rooms
    for body in (
        {"is_direct": True, "invite": [bob.user_id], "name": "x"},
        {"is_direct": True, "invite": [bob.user_id, carol.user_id]},
        {"is_direct": True, "preset": "public_chat"},
    ):
        status, answer = await server.request(
            "POST", "/_matrix/client/v3/createRoom", token=alice.access_token, json=body
        )
        assert status == 403 and answer["errcode"] == "M_FORBIDDEN", (body, answer)
    assert (await alice.joined_rooms()).rooms == rooms_before


async def test_rule_changes(make_server):
    server = await make_server(**RULES_ON)
    alice = await server.client("alice")
    room = await _create(alice)
    # restricted -> unrestricted is the one change allowed; there is no way back.
    resp = await alice.room_put_state(room, ACCESS_RULES, {"rule": "unrestricted"})
    assert isinstance(resp, RoomPutStateResponse), resp
    for rule in ("restricted", "direct"):
        resp = await alice.room_put_state(room, ACCESS_RULES, {"rule": rule})
        assert isinstance(resp, RoomPutStateError) and resp.status_code == "M_FORBIDDEN", resp
    # Public join rules only in restricted rooms.
    resp = await alice.room_put_state(room, "m.room.join_rules", {"join_rule": "public"})
    assert resp.status_code == "M_FORBIDDEN", resp
    # External users get no power in an unrestricted room, nor does a default level.
    state = await _state(alice, room)
    levels = state[("m.room.power_levels", "")]
    for change in (
        {"users": {**levels["users"], "@eve:external.example": 50}},
        {"users_default": 10},
    ):
        resp = await alice.room_put_state(room, "m.room.power_levels", {**levels, **change})
        assert resp.status_code == "M_FORBIDDEN", resp
    after = await _state(alice, room)
    assert after[(ACCESS_RULES, "")] == {"rule": "unrestricted"}
    assert after[("m.room.power_levels", "")] == levels
    assert after[("m.room.join_rules", "")] == state[("m.room.join_rules", "")]

    # A public restricted room cannot become unrestricted, and cannot be published once
    # unrestricted.
    public = await _create(alice, preset=RoomPreset.public_chat)
    resp = await alice.room_put_state(public, ACCESS_RULES, {"rule": "unrestricted"})
    assert resp.status_code == "M_FORBIDDEN", resp
    status, body = await server.request(
        "PUT",
        f"/_matrix/client/v3/directory/list/room/{quote(room)}",
        token=alice.access_token,
        json={"visibility": "public"},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/directory/list/room/{quote(room)}"
    )
    assert body == {"visibility": "private"}


async def test_unknown_rule_values_change_nothing(make_server):
    server = await make_server(**RULES_ON)
    alice = await server.client("alice")
    room = await _create(alice)
    before = await _state(alice, room)
    for content in ({"rule": "open"}, {"rule": 3}, {}, {"rule": None}):
        status, body = await server.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room)}/state/{ACCESS_RULES}/",
            token=alice.access_token,
            json=content,
        )
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", (content, body)
        assert "unknown access rule" in body["error"]
    assert await _state(alice, room) == before

    rooms_before = (await alice.joined_rooms()).rooms
    for body_json, errcode in (
        ({"initial_state": [{"type": ACCESS_RULES, "content": {"rule": "open"}}]}, "M_BAD_JSON"),
        (
            {"initial_state": [{"type": ACCESS_RULES, "content": {"rule": "direct"}}]},
            "M_INVALID_PARAM",
        ),
    ):
        status, body = await server.request(
            "POST", "/_matrix/client/v3/createRoom", token=alice.access_token, json=body_json
        )
        assert status == 400 and body["errcode"] == errcode, body
    assert (await alice.joined_rooms()).rooms == rooms_before

    # An explicit valid rule in initial_state is used once, in place of the default.
    room2 = await _create(
        alice,
        initial_state=[
            {"type": ACCESS_RULES, "state_key": "", "content": {"rule": "unrestricted"}}
        ],
    )
    assert (await _state(alice, room2))[(ACCESS_RULES, "")] == {"rule": "unrestricted"}


async def test_unrestricted_cannot_bring_in_power_levels_it_forbids(make_server):
    """The power levels come before the access rule at createRoom, and a restricted room
    may hold levels an unrestricted one may not: the rule's arrival is judged against
    the levels already there, at creation (before anything is created) and later."""
    server = await make_server(**RULES_ON)
    alice = await server.client("alice")
    unrestricted = [{"type": ACCESS_RULES, "state_key": "", "content": {"rule": "unrestricted"}}]
    rooms_before = (await alice.joined_rooms()).rooms
    for override in ({"users_default": 10}, {"users": {"@eve:external.example": 50}}):
        status, body = await server.request(
            "POST",
            "/_matrix/client/v3/createRoom",
            token=alice.access_token,
            json={"initial_state": unrestricted, "power_level_content_override": override},
        )
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", (override, body)
    assert (await alice.joined_rooms()).rooms == rooms_before

    # A restricted room whose default level is 10 cannot become unrestricted as it is.
    room = await _create(alice, power_level_override={"users_default": 10})
    resp = await alice.room_put_state(room, ACCESS_RULES, {"rule": "unrestricted"})
    assert isinstance(resp, RoomPutStateError) and resp.status_code == "M_FORBIDDEN", resp
    assert (await _state(alice, room))[(ACCESS_RULES, "")] == {"rule": "restricted"}
