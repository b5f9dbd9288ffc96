"""POST /_matrix/client/v3/rooms/{roomId}/upgrade: the replacement room, what it copies,
the old room's tombstone and power levels, aliases, the directory, tags and DMs; and
requests that must change nothing."""

from __future__ import annotations

from urllib.parse import quote

from nio import JoinResponse, RoomPreset, RoomPutStateResponse, RoomVisibility

from tests.integration.spaces.helpers import join_rule, link, make_room
from tests.schema import assert_matches_schema

V3 = "/_matrix/client/v3"


async def _upgrade(server, token: str, room_id: str, body) -> tuple[int, dict]:
    status, answer = await server.request(
        "POST", f"{V3}/rooms/{quote(room_id)}/upgrade", token=token, json=body
    )
    if status == 200:
        assert_matches_schema("room_upgrades.yaml", "/rooms/{roomId}/upgrade", "post", 200, answer)
    return status, answer


async def _state(server, token: str, room_id: str) -> dict[tuple[str, str], dict]:
    status, events = await server.request("GET", f"{V3}/rooms/{quote(room_id)}/state", token=token)
    assert status == 200, events
    return {(e["type"], e["state_key"]): e for e in events}


async def _state_ids(server, token: str, room_id: str) -> dict[tuple[str, str], str]:
    return {k: e["event_id"] for k, e in (await _state(server, token, room_id)).items()}


async def _put(client, room_id: str, etype: str, content: dict, state_key: str = "") -> None:
    resp = await client.room_put_state(room_id, etype, content, state_key=state_key)
    assert isinstance(resp, RoomPutStateResponse), resp


# matrix-nio has no tag calls: raw HTTP.
async def _tag(server, client, room_id: str, tag: str, body: dict) -> None:
    path = f"{V3}/user/{client.user_id}/rooms/{room_id}/tags/{tag}"
    status, answer = await server.request("PUT", path, token=client.access_token, json=body)
    assert status == 200, answer


async def _tags(server, client, room_id: str) -> dict:
    path = f"{V3}/user/{client.user_id}/rooms/{room_id}/tags"
    status, answer = await server.request("GET", path, token=client.access_token)
    assert status == 200, answer
    return answer["tags"]


async def test_upgrade_copies_state_and_moves_aliases_tags_and_dms(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    dave = await server.client("dave")
    carol = await server.client("carol")
    resp = await alice.room_create(
        visibility=RoomVisibility.public,
        preset=RoomPreset.public_chat,
        alias="lobby",
        name="Lobby",
        topic="Everything",
        room_version="10",
    )
    old = resp.room_id
    alias = f"#lobby:{server.server_name}"
    for client in (bob, dave, carol):
        assert isinstance(await client.join(old), JoinResponse)
    await _put(alice, old, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
    await _put(alice, old, "m.room.avatar", {"url": "mxc://example.org/avatar"})
    await _put(alice, old, "org.example.private", {"kept": False})
    levels = (await _state(server, alice.access_token, old))[("m.room.power_levels", "")]["content"]
    levels["users"][bob.user_id] = 50
    await _put(alice, old, "m.room.power_levels", levels)
    await alice.room_ban(old, carol.user_id, "spam")
    await _tag(server, alice, old, "m.favourite", {"order": 0.5})
    await _tag(server, bob, old, "u.work", {})
    status, _ = await server.request(
        "PUT",
        f"{V3}/user/{alice.user_id}/account_data/m.direct",
        token=alice.access_token,
        json={bob.user_id: [old]},
    )
    assert status == 200

    status, body = await _upgrade(server, alice.access_token, old, {"new_version": "11"})
    assert status == 200, body
    new = body["replacement_room"]
    assert new != old

    state = await _state(server, alice.access_token, new)
    create = state[("m.room.create", "")]["content"]
    assert create["room_version"] == "11" and create["predecessor"]["room_id"] == old
    assert create["predecessor"]["event_id"].startswith("$") and "type" not in create
    before = await _state(server, alice.access_token, old)
    for key in (
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.avatar", ""),
        ("m.room.encryption", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
    ):
        assert (state.get(key) or {}).get("content") == (before.get(key) or {}).get("content"), key
    assert state[("m.room.power_levels", "")]["content"]["users"] == levels["users"]
    assert ("org.example.private", "") not in state
    assert state[("m.room.member", carol.user_id)]["content"]["membership"] == "ban"
    assert not any(k[0] == "m.room.member" and k[1] == bob.user_id for k in state)
    assert state[("m.room.canonical_alias", "")]["content"]["alias"] == alias

    # The old room: tombstoned, its alias gone to the new room, closed to ordinary speech.
    tombstone = before[("m.room.tombstone", "")]["content"]
    assert tombstone["replacement_room"] == new and tombstone["body"]
    assert "alias" not in before[("m.room.canonical_alias", "")]["content"]
    old_levels = before[("m.room.power_levels", "")]["content"]
    assert (old_levels["events_default"], old_levels["invite"]) == (50, 50)
    status, body = await server.request(
        "PUT",
        f"{V3}/rooms/{old}/send/m.room.message/t1",
        token=dave.access_token,
        json={"msgtype": "m.text", "body": "still here?"},
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    resolved = await alice.room_resolve_alias(alias)
    assert resolved.room_id == new
    status, body = await server.request("GET", f"{V3}/directory/list/room/{new}")
    assert body == {"visibility": "public"}
    status, body = await server.request("GET", f"{V3}/directory/list/room/{old}")
    assert body == {"visibility": "private"}

    # Alice's tags and DM list came along; Bob's come when he joins.
    assert await _tags(server, alice, new) == {"m.favourite": {"order": 0.5}}
    status, direct = await server.request(
        "GET", f"{V3}/user/{alice.user_id}/account_data/m.direct", token=alice.access_token
    )
    assert direct == {bob.user_id: [old, new]}
    assert await _tags(server, bob, new) == {}
    assert isinstance(await bob.join(new), JoinResponse)
    assert await _tags(server, bob, new) == {"u.work": {}}


async def test_upgrading_a_space_to_v12(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    here = [server.server_name]
    space = await make_room(alice, "Space", join_rule("public"), space=True)
    child = await make_room(alice, "Child", join_rule("public"))
    await link(alice, space, child, here, order="a")
    status, body = await _upgrade(
        server,
        alice.access_token,
        space,
        {"new_version": "12", "additional_creators": [bob.user_id]},
    )
    assert status == 200, body
    new = body["replacement_room"]
    state = await _state(server, alice.access_token, new)
    create = state[("m.room.create", "")]
    assert create["content"]["type"] == "m.space"
    assert create["content"]["additional_creators"] == [bob.user_id]
    assert create["content"]["predecessor"] == {"room_id": space}
    # v12 creators hold infinite power and are never listed.
    assert alice.user_id not in state[("m.room.power_levels", "")]["content"]["users"]
    assert state[("m.space.child", child)]["content"] == {"via": here, "order": "a"}
    resp = await alice.space_get_hierarchy(new)
    assert [r["name"] for r in resp.rooms] == ["Space", "Child"]


async def test_refused_upgrades_change_nothing(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    stranger = await server.client("stranger")
    room = await make_room(alice, "Room", join_rule("public"))
    assert isinstance(await bob.join(room), JoinResponse)
    rooms_before = await server.db.fetchval("SELECT count(*) FROM rooms")
    state_before = await _state_ids(server, alice.access_token, room)
    cases = [
        (alice, {"new_version": "99"}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
        (alice, {}, 400, "M_MISSING_PARAM"),
        (alice, {"new_version": 11}, 400, "M_BAD_JSON"),
        (alice, {"new_version": "12", "additional_creators": ["nobody"]}, 400, "M_BAD_JSON"),
        (bob, {"new_version": "11"}, 403, "M_FORBIDDEN"),  # no power to send a tombstone
        (stranger, {"new_version": "11"}, 403, "M_FORBIDDEN"),  # not in the room
    ]
    for client, body, status_wanted, errcode in cases:
        status, answer = await _upgrade(server, client.access_token, room, body)
        assert (status, answer.get("errcode")) == (status_wanted, errcode), body
    status, answer = await _upgrade(
        server, alice.access_token, f"!missing:{server.server_name}", {"new_version": "11"}
    )
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    status, answer = await server.request(
        "POST", f"{V3}/rooms/{room}/upgrade", token=alice.access_token, data=b"{not json"
    )
    assert (status, answer["errcode"]) == (400, "M_NOT_JSON")
    assert await server.db.fetchval("SELECT count(*) FROM rooms") == rooms_before
    assert await _state_ids(server, alice.access_token, room) == state_before


async def test_upgrading_string_power_levels_of_an_old_room(server):
    """Room version 5 reads "50" as 50; version 11 refuses strings, so the copy is made of
    integers (else the replacement room would refuse its own power levels)."""
    alice = await server.client("alice")
    bob = await server.client("bob")
    resp = await alice.room_create(name="Old", room_version="5")
    old = resp.room_id
    levels = (await _state(server, alice.access_token, old))[("m.room.power_levels", "")]["content"]
    levels["users"] = {alice.user_id: "100", bob.user_id: "50"}
    levels["ban"] = "60"
    await _put(alice, old, "m.room.power_levels", levels)
    status, body = await _upgrade(server, alice.access_token, old, {"new_version": "11"})
    assert status == 200, body
    state = await _state(server, alice.access_token, body["replacement_room"])
    copied = state[("m.room.power_levels", "")]["content"]
    assert copied["users"] == {alice.user_id: 100, bob.user_id: 50} and copied["ban"] == 60


async def test_replacement_names_the_tombstone_and_gets_private_room_defaults(server):
    """The new room's predecessor.event_id is the old room's tombstone (the old room's
    last event, as Synapse names it), the tombstone is the first event a client syncs in
    the old room after the upgrade, and what the old room lacked (a public_chat room has
    no m.room.guest_access) is a new private room's default, as in Synapse."""
    alice = await server.client("alice")
    old = (await alice.room_create(preset=RoomPreset.public_chat, room_version="10")).room_id
    first = await alice.sync(timeout=0)
    status, body = await _upgrade(server, alice.access_token, old, {"new_version": "10"})
    assert status == 200, body
    new = body["replacement_room"]
    sync = await alice.sync(timeout=0, since=first.next_batch)
    [tombstone, *_] = sync.rooms.join[old].timeline.events
    assert tombstone.source["type"] == "m.room.tombstone"
    assert tombstone.source["content"]["replacement_room"] == new
    timeline = [e.source for e in sync.rooms.join[new].timeline.events]
    assert timeline[0]["type"] == "m.room.create"
    assert timeline[0]["content"]["predecessor"] == {
        "room_id": old,
        "event_id": tombstone.event_id,
    }
    state = await _state(server, alice.access_token, new)
    assert state[("m.room.guest_access", "")]["content"] == {"guest_access": "can_join"}
    # Copied state wins over the defaults.
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
    types = [e["type"] for e in timeline]
    assert types.count("m.room.join_rules") == 1 and types.count("m.room.guest_access") == 1
