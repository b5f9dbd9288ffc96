"""Simplified sliding sync (MSC4186) driven over HTTP the way matrix-rust-sdk drives it:
a room list growing from 0-19 to 0-99, a subscription, a room bumped to the top, an
invite appearing, extensions, long-poll, and M_UNKNOWN_POS recovery."""

from __future__ import annotations

import asyncio

from nio import RoomCreateResponse

from tests.integration.sliding_sync.helpers import Connection, list_ids
from tests.schema import assert_matches_schema, response_schema

ALL_ROOMS = {
    "ranges": [[0, 19]],
    "timeline_limit": 1,
    "required_state": [
        ["m.room.name", ""],
        ["m.room.encryption", ""],
        ["m.room.member", "$LAZY"],
        ["m.room.member", "$ME"],
    ],
}


def _client_event_schema() -> dict:
    """The spec's ClientEventWithoutRoomID: what timeline and required_state carry."""
    sync = response_schema("sync.yaml", "/sync", "get", 200)
    joined = sync["properties"]["rooms"]["properties"]["join"]["patternProperties"]
    room = next(iter(joined.values()))
    return room["properties"]["timeline"]["allOf"][0]["properties"]["events"]["items"]


def _assert_client_events(resp: dict) -> None:
    import jsonschema

    schema = _client_event_schema()
    for room in resp["rooms"].values():
        for ev in [*room.get("timeline", []), *room.get("required_state", [])]:
            jsonschema.validate(ev, schema)


async def _rooms(client, n: int, prefix: str = "room") -> list[str]:
    ids = []
    for i in range(n):
        resp = await client.room_create(name=f"{prefix} {i}")
        assert isinstance(resp, RoomCreateResponse), resp
        ids.append(resp.room_id)
    return ids


async def test_versions_advertise_simplified_sliding_sync(server):
    status, body = await server.request("GET", "/_matrix/client/versions")
    assert status == 200
    assert body["unstable_features"]["org.matrix.simplified_msc3575"] is True
    assert_matches_schema("versions.yaml", "/versions", "get", 200, body)


async def test_room_list_grows_bumps_and_shows_invites(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    rooms = await _rooms(alice, 25)
    newest_first = rooms[::-1]
    conn = Connection(server, alice.access_token)

    resp = await conn.sync({"lists": {"all": ALL_ROOMS}})
    assert resp["lists"]["all"]["count"] == 25
    assert list_ids(resp, "all") == newest_first[:20]
    assert set(resp["rooms"]) == set(newest_first[:20])
    first = resp["rooms"][newest_first[0]]
    assert first["initial"] is True
    assert first["name"] == "room 24"
    assert first["joined_count"] == 1 and first["invited_count"] == 0
    assert len(first["timeline"]) == 1 and first["limited"] is True
    assert {(e["type"], e["state_key"]) for e in first["required_state"]} == {
        ("m.room.name", ""),
        ("m.room.member", "@alice:test.local"),
    }
    _assert_client_events(resp)

    # The SDK grows the list: only the rooms not sent yet come down.
    grown = {"lists": {"all": {**ALL_ROOMS, "ranges": [[0, 99]]}}}
    resp = await conn.sync(grown)
    assert list_ids(resp, "all") == newest_first
    assert set(resp["rooms"]) == set(newest_first[20:])
    assert all(r["initial"] for r in resp["rooms"].values())

    # A message to the oldest room bumps it to the top, and only it is sent.
    sent = await alice.room_send(rooms[0], "m.room.message", {"msgtype": "m.text", "body": "hi"})
    resp = await conn.sync(grown)
    assert list_ids(resp, "all")[0] == rooms[0]
    assert list(resp["rooms"]) == [rooms[0]]
    bumped = resp["rooms"][rooms[0]]
    assert "initial" not in bumped
    assert [e["event_id"] for e in bumped["timeline"]] == [sent.event_id]
    assert bumped["num_live"] == 1 and bumped["limited"] is False

    # A state change that is not a bump is sent, but does not move the room.
    await alice.room_put_state(rooms[1], "m.room.topic", {"topic": "quiet"})
    resp = await conn.sync(grown)
    assert list_ids(resp, "all")[0] == rooms[0]
    assert list(resp["rooms"]) == [rooms[1]]

    # An invite (a DM) appears at the top with its stripped state.
    dm = await bob.room_create(name="bob and alice", invite=[alice.user_id], is_direct=True)
    resp = await conn.sync(grown)
    assert resp["lists"]["all"]["count"] == 26
    assert list_ids(resp, "all")[0] == dm.room_id
    invite = resp["rooms"][dm.room_id]
    assert invite["initial"] is True and invite["is_dm"] is True
    stripped = {(e["type"], e.get("state_key")): e for e in invite["invite_state"]}
    assert stripped[("m.room.name", "")]["content"]["name"] == "bob and alice"
    assert stripped[("m.room.member", alice.user_id)]["content"]["membership"] == "invite"
    assert "timeline" not in invite

    # Joining sends the room again, now with its timeline.
    await alice.join(dm.room_id)
    resp = await conn.sync(grown)
    joined = resp["rooms"][dm.room_id]
    assert joined["initial"] is True and "invite_state" not in joined
    assert joined["timeline"][-1]["content"]["membership"] == "join"
    assert joined["joined_count"] == 2

    # Nothing new: the same list, no rooms.
    resp = await conn.sync(grown)
    assert resp["rooms"] == {}


async def test_room_subscription_and_required_state_wildcards(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    rooms = await _rooms(alice, 3)
    for i in range(4):
        await alice.room_send(rooms[0], "m.room.message", {"msgtype": "m.text", "body": str(i)})
    foreign = (await bob.room_create(name="bob's")).room_id
    conn = Connection(server, alice.access_token)
    body = {
        "lists": {"top": {"ranges": [[0, 0]], "timeline_limit": 1, "required_state": []}},
        "room_subscriptions": {
            rooms[1]: {"timeline_limit": 5, "required_state": [["*", "*"]]},
            foreign: {"timeline_limit": 5, "required_state": [["*", "*"]]},
        },
    }
    resp = await conn.sync(body)
    assert list_ids(resp, "top") == [rooms[0]]
    assert set(resp["rooms"]) == {rooms[0], rooms[1]}  # never a room alice is not in
    sub = resp["rooms"][rooms[1]]
    assert len(sub["timeline"]) == 5
    state_types = {e["type"] for e in sub["required_state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"} <= state_types
    assert "required_state" not in resp["rooms"][rooms[0]]

    # A new required_state for a room already sent: its state again, no new timeline.
    body["room_subscriptions"] = {rooms[1]: {"timeline_limit": 5, "required_state": []}}
    body["lists"]["top"]["required_state"] = [["m.room.create", ""]]
    resp = await conn.sync(body)
    assert set(resp["rooms"]) == {rooms[0]}
    assert [e["type"] for e in resp["rooms"][rooms[0]]["required_state"]] == ["m.room.create"]
    assert "timeline" not in resp["rooms"][rooms[0]]


async def test_list_filters(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    plain, named = await _rooms(alice, 2, prefix="Project")
    encrypted = (
        await alice.room_create(
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
        )
    ).room_id
    space = (await alice.room_create(space=True, name="Space")).room_id
    await alice.room_put_state(space, "m.space.child", {"via": ["test.local"]}, state_key=plain)
    dm = (await alice.room_create(invite=[bob.user_id], is_direct=True)).room_id
    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/user/{alice.user_id}/account_data/m.direct",
        token=alice.access_token,
        json={bob.user_id: [dm]},
    )
    assert status == 200
    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/user/{alice.user_id}/rooms/{named}/tags/m.favourite",
        token=alice.access_token,
        json={"order": 0.5},
    )
    assert status == 200
    invited = (await bob.room_create(invite=[alice.user_id])).room_id

    def lst(**filters):
        return {"ranges": [[0, 99]], "timeline_limit": 0, "filters": filters}

    conn = Connection(server, alice.access_token)
    resp = await conn.sync(
        {
            "lists": {
                "dms": lst(is_dm=True),
                "not_dms": lst(is_dm=False, is_invite=False),
                "encrypted": lst(is_encrypted=True),
                "invites": lst(is_invite=True),
                "spaces": lst(room_types=["m.space"]),
                "no_spaces": lst(not_room_types=["m.space"], is_invite=False),
                "in_space": lst(spaces=[space]),
                "favourites": lst(tags=["m.favourite"]),
                "not_favourites": lst(not_tags=["m.favourite"], is_invite=False),
                "like": lst(room_name_like="PROJECT 1"),
                "untyped": lst(room_types=[None], is_invite=False),
            }
        }
    )
    ids = {name: set(list_ids(resp, name)) for name in resp["lists"]}
    everything = {plain, named, encrypted, space, dm}
    assert ids["dms"] == {dm}
    assert ids["not_dms"] == everything - {dm}
    assert ids["encrypted"] == {encrypted}
    assert ids["invites"] == {invited}
    assert ids["spaces"] == {space}
    assert ids["no_spaces"] == everything - {space}
    assert ids["in_space"] == {plain}
    assert ids["favourites"] == {named}
    assert ids["not_favourites"] == everything - {named}
    assert ids["like"] == {named}
    assert ids["untyped"] == everything - {space}
    assert resp["rooms"][dm]["is_dm"] is True


async def test_extensions_scoped_to_lists(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = (await alice.room_create(invite=[bob.user_id])).room_id
    await bob.join(room)
    other = (await alice.room_create()).room_id
    conn = Connection(server, alice.access_token)
    body = {
        "lists": {"top": {"ranges": [[0, 0]], "timeline_limit": 1}},
        "extensions": {
            "account_data": {"enabled": True},
            "receipts": {"enabled": True},
            "typing": {"enabled": True, "lists": ["top"]},
            "to_device": {"enabled": True},
            "e2ee": {"enabled": True},
        },
    }
    # `other` is newest: the list's one slot shows it, so `room` is out of scope.
    resp = await conn.sync(body)
    assert list_ids(resp, "top") == [other]
    assert resp["extensions"]["e2ee"]["device_one_time_keys_count"] == {"signed_curve25519": 0}
    sent = await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "yo"})
    resp = await conn.sync(body)
    assert list_ids(resp, "top") == [room]
    await bob.room_typing(room, True, 30000)
    await bob.room_read_markers(room, sent.event_id, sent.event_id)
    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/user/{alice.user_id}/rooms/{room}/account_data/org.example",
        token=alice.access_token,
        json={"n": 1},
    )
    assert status == 200
    await alice.room_typing(other, True, 30000)  # out of scope: not reported
    resp = await conn.sync(body)
    ext = resp["extensions"]
    assert ext["typing"]["rooms"] == {
        room: {"type": "m.typing", "content": {"user_ids": [bob.user_id]}}
    }
    receipts = ext["receipts"]["rooms"][room]["content"][sent.event_id]["m.read"]
    assert bob.user_id in receipts
    assert ext["account_data"]["rooms"][room] == [{"type": "org.example", "content": {"n": 1}}]
    assert other not in ext["account_data"]["rooms"]

    # lists: [] and rooms: [] select nothing.
    body["extensions"]["typing"] = {"enabled": True, "lists": [], "rooms": []}
    await bob.room_typing(room, False)
    resp = await conn.sync(body)
    assert "typing" not in resp["extensions"]


async def test_to_device_since_acknowledges(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    status, _ = await server.request(
        "PUT",
        "/_matrix/client/v3/sendToDevice/org.example.ping/txn1",
        token=bob.access_token,
        json={"messages": {alice.user_id: {alice.device_id: {"n": 1}}}},
    )
    assert status == 200
    conn = Connection(server, alice.access_token, conn_id="encryption")
    body: dict = {"extensions": {"to_device": {"enabled": True}}}
    resp = await conn.sync(body)
    section = resp["extensions"]["to_device"]
    assert [(e["type"], e["content"]) for e in section["events"]] == [
        ("org.example.ping", {"n": 1})
    ]
    # Not acknowledged yet: sent again.
    resp = await conn.sync(body)
    assert len(resp["extensions"]["to_device"]["events"]) == 1
    body["extensions"]["to_device"]["since"] = section["next_batch"]
    resp = await conn.sync(body)
    assert resp["extensions"]["to_device"]["events"] == []
    left = await server.db.fetchval(
        "SELECT count(*) FROM to_device_messages WHERE user_id = $1", alice.user_id
    )
    assert left == 0


async def test_long_poll_wakes_on_a_message(server):
    alice = await server.client("alice")
    room = (await alice.room_create()).room_id
    conn = Connection(server, alice.access_token)
    body = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}}
    await conn.sync(body)
    waiting = asyncio.create_task(conn.sync(body, timeout=30000))
    await asyncio.sleep(0.2)
    sent = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "wake"})
    resp = await asyncio.wait_for(waiting, 20)
    assert [e["event_id"] for e in resp["rooms"][room]["timeline"]] == [sent.event_id]


async def test_unknown_pos_and_connections_that_outlive_the_process(server, make_server):
    alice = await server.client("alice")
    rooms = await _rooms(alice, 2)
    body = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}}
    conn = Connection(server, alice.access_token)
    await conn.sync(body)
    first = conn.pos
    resp = await conn.sync(body)
    assert resp["pos"] == first  # nothing new: the client stays where it is

    async def news():
        await alice.room_send(rooms[1], "m.room.message", {"msgtype": "m.text", "body": "n"})

    await news()
    await conn.sync(body)
    # A retry of `first` (its answer lost) is served, and replaces that answer.
    status, resp = await conn.raw(body, pos=first)
    assert status == 200 and list(resp["rooms"]) == [rooms[1]]
    conn.pos = resp["pos"]
    await news()
    await conn.sync(body)
    # The client has used the position after `first`: `first` is gone.
    status, resp = await conn.raw(body, pos=first)
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN_POS")
    status, resp = await conn.raw(body, pos="not-a-pos")
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN_POS")
    # Each conn_id is its own connection; another's pos is unknown to it.
    other = Connection(server, alice.access_token, conn_id="encryption")
    status, resp = await other.raw(body, pos=conn.pos)
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN_POS")

    # A second process on the same database serves the connection where it stands.
    second = await make_server(dsn=server.hs.db.dsn)
    moved = Connection(second, alice.access_token)
    moved.pos = conn.pos
    resp = await moved.sync(body)
    assert resp["rooms"] == {}
    await alice.room_send(rooms[0], "m.room.message", {"msgtype": "m.text", "body": "x"})
    resp = await moved.sync(body)
    assert list(resp["rooms"]) == [rooms[0]]

    # Recovery: the SDK drops pos and starts over; everything is sent again.
    conn.pos = None
    resp = await conn.sync(body)
    assert set(resp["rooms"]) == set(rooms)
    assert all(r["initial"] for r in resp["rooms"].values())


async def test_unread_counts_follow_messages_and_own_receipts(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = (await alice.room_create(invite=[bob.user_id])).room_id
    await bob.join(room)
    conn = Connection(server, alice.access_token)
    body = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}}
    await conn.sync(body)
    for i in range(2):
        sent = await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    resp = await conn.sync(body)
    assert resp["rooms"][room]["notification_count"] == 2
    # Reading the room: only its counts come down, without a timeline.
    await alice.room_read_markers(room, sent.event_id, sent.event_id)
    resp = await conn.sync(body)
    assert resp["rooms"][room]["notification_count"] == 0
    assert "timeline" not in resp["rooms"][room]
    resp = await conn.sync(body)
    assert resp["rooms"] == {}


async def test_an_abandoned_long_poll_never_counts_as_sent(server):
    """The SDK abandons a waiting request when its ranges change and sends the same pos
    again; the abandoned one, woken later, must not mark rooms as sent."""
    alice = await server.client("alice")
    rooms = await _rooms(alice, 3)
    conn = Connection(server, alice.access_token)
    small = {"lists": {"all": {"ranges": [[0, 0]], "timeline_limit": 1}}}
    grown = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}}
    await conn.sync(small)
    start = conn.pos
    abandoned = asyncio.create_task(conn.raw(small, pos=start, timeout=30000))
    await asyncio.sleep(0.2)
    resp = await conn.sync(grown)  # same pos, new ranges: answered at once
    assert set(resp["rooms"]) == set(rooms[:2])
    await conn.sync(grown)  # takes the new answer: `start` is acknowledged away
    sent = await alice.room_send(rooms[0], "m.room.message", {"msgtype": "m.text", "body": "x"})
    status, body = await asyncio.wait_for(abandoned, 20)
    assert (status, body.get("errcode")) == (400, "M_UNKNOWN_POS")
    resp = await conn.sync(grown)
    assert [e["event_id"] for e in resp["rooms"][rooms[0]]["timeline"]] == [sent.event_id]


async def test_a_list_without_timeline_still_reports_bumps(server):
    alice = await server.client("alice")
    old, new = await _rooms(alice, 2)
    conn = Connection(server, alice.access_token)
    body = {"lists": {"names": {"ranges": [[0, 9]], "timeline_limit": 0}}}
    resp = await conn.sync(body)
    assert list_ids(resp, "names") == [new, old]
    stamp = resp["rooms"][old]["bump_stamp"]
    await alice.room_send(old, "m.room.message", {"msgtype": "m.text", "body": "up"})
    resp = await conn.sync(body)
    assert list_ids(resp, "names") == [old, new]
    assert resp["rooms"][old]["bump_stamp"] > stamp
    assert "timeline" not in resp["rooms"][old] and resp["rooms"][old]["limited"] is True


async def test_a_connection_unused_for_a_week_is_forgotten(server):
    alice = await server.client("alice")
    idle = Connection(server, alice.access_token, conn_id="notifications")
    await idle.sync({})
    week_ago = await server.db.fetchval(
        "UPDATE sliding_sync_connections SET last_used_ts = last_used_ts - 8 * 86400000"
        " WHERE conn_id = 'notifications' RETURNING last_used_ts"
    )
    assert week_ago is not None
    status, resp = await idle.raw({}, pos=idle.pos)
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN_POS")
    # The next connection the user opens clears it away.
    await Connection(server, alice.access_token).sync({})
    conn_ids = await server.db.fetch("SELECT conn_id FROM sliding_sync_connections")
    assert [r["conn_id"] for r in conn_ids] == ["room-list"]


async def test_a_room_the_user_was_removed_from_shows_its_state_at_removal(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = (await bob.room_create(name="before", invite=[alice.user_id])).room_id
    await alice.join(room)
    await bob.room_kick(room, alice.user_id)
    await bob.room_put_state(room, "m.room.name", {"name": "after"})
    await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "not for alice"})
    body = {
        "lists": {
            "all": {
                "ranges": [[0, 9]],
                "timeline_limit": 5,
                "required_state": [["m.room.name", ""], ["m.room.member", "$ME"]],
            }
        }
    }
    resp = await Connection(server, alice.access_token).sync(body)
    assert list_ids(resp, "all") == [room]
    entry = resp["rooms"][room]
    state = {(e["type"], e["state_key"]): e["content"] for e in entry["required_state"]}
    assert state[("m.room.name", "")] == {"name": "before"}
    assert state[("m.room.member", alice.user_id)]["membership"] == "leave"
    assert "name" not in entry and "joined_count" not in entry
    assert entry["timeline"][-1]["content"]["membership"] == "leave"
    assert all(e["type"] != "m.room.message" for e in entry["timeline"])


async def test_timeline_events_carry_bundled_aggregations(server):
    # Issue 12: m.relations wherever events are served, sliding sync included.
    alice = await server.client("alice")
    room = (await alice.room_create()).room_id
    root = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "root"})
    reply = {
        "msgtype": "m.text",
        "body": "in thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root.event_id},
    }
    await alice.room_send(room, "m.room.message", reply)
    edit = {
        "msgtype": "m.text",
        "body": "* root, edited",
        "m.new_content": {"msgtype": "m.text", "body": "root, edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": root.event_id},
    }
    await alice.room_send(room, "m.room.message", edit)
    conn = Connection(server, alice.access_token)
    resp = await conn.sync({"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 10}}})
    events = {e["event_id"]: e for e in resp["rooms"][room]["timeline"]}
    relations = events[root.event_id]["unsigned"]["m.relations"]
    assert relations["m.thread"]["count"] == 1
    assert relations["m.thread"]["current_user_participated"] is True
    assert relations["m.replace"]["content"]["m.new_content"]["body"] == "root, edited"
