"""The room admin API (Synapse's shapes): listing and searching, details, members, state,
messages, forward extremities, blocking, make_room_admin, joining users, deleting rooms
(v1 and v2 with status) and purging history; admins only."""

from __future__ import annotations

from nio import JoinError, JoinResponse, RoomMessagesResponse, RoomPreset, RoomVisibility

from tests.integration.admin.helpers import (
    BOSS,
    admin_server,
    create_room,
    forbidden_for,
    send_text,
)

ROOM = "!nowhere:test.local"

ROOM_ENDPOINTS = [
    ("GET", "/v1/rooms"),
    ("GET", f"/v1/rooms/{ROOM}"),
    ("GET", f"/v1/rooms/{ROOM}/members"),
    ("GET", f"/v1/rooms/{ROOM}/state"),
    ("GET", f"/v1/rooms/{ROOM}/messages"),
    ("GET", f"/v1/rooms/{ROOM}/context/$x"),
    ("GET", f"/v1/rooms/{ROOM}/block"),
    ("PUT", f"/v1/rooms/{ROOM}/block"),
    ("POST", f"/v1/rooms/{ROOM}/make_room_admin"),
    ("GET", f"/v1/rooms/{ROOM}/forward_extremities"),
    ("DELETE", f"/v1/rooms/{ROOM}/forward_extremities"),
    ("DELETE", f"/v1/rooms/{ROOM}"),
    ("DELETE", f"/v2/rooms/{ROOM}"),
    ("GET", f"/v2/rooms/{ROOM}/delete_status"),
    ("GET", "/v2/rooms/delete_status/x"),
    ("POST", f"/v1/join/{ROOM}"),
    ("POST", f"/v1/purge_history/{ROOM}"),
    ("GET", "/v1/purge_history_status/x"),
]


async def test_room_endpoints_refuse_non_admins(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    room_id = await create_room(alice)
    await forbidden_for(server, alice.access_token, ROOM_ENDPOINTS)
    await forbidden_for(
        server,
        alice.access_token,
        [("DELETE", f"/v2/rooms/{room_id}"), ("PUT", f"/v1/rooms/{room_id}/block")],
    )
    status, body = await admin("GET", f"/v1/rooms/{room_id}/block")
    assert body == {"block": False}
    assert (await admin("GET", f"/v1/rooms/{room_id}"))[0] == 200


async def test_list_and_read_rooms(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    bob = await server.client("bob")
    general = await create_room(
        alice,
        name="General",
        alias="general",
        visibility=RoomVisibility.public,
        preset=RoomPreset.public_chat,
    )
    await bob.join(general)
    secret = await create_room(
        alice,
        name="Secret",
        initial_state=[
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ],
    )
    empty = await create_room(bob, name="Abandoned")
    await bob.room_leave(empty)

    status, body = await admin("GET", "/v1/rooms")
    assert status == 200 and body["total_rooms"] == 3 and body["offset"] == 0
    assert [r["name"] for r in body["rooms"]] == ["Abandoned", "General", "Secret"]
    room = body["rooms"][1]
    assert room["room_id"] == general and room["canonical_alias"] == "#general:test.local"
    assert room["joined_members"] == 2 and room["joined_local_members"] == 2
    assert room["public"] is True and room["join_rules"] == "public"
    assert room["creator"] == alice.user_id and room["federatable"] is True
    assert room["encryption"] is None and room["state_events"] >= 6
    assert room["history_visibility"] == "shared" and room["room_type"] is None
    assert body["rooms"][2]["encryption"] == "m.megolm.v1.aes-sha2"

    # Counts are listed largest first with dir=f, as in Synapse.
    status, body = await admin("GET", "/v1/rooms?order_by=joined_members&limit=1")
    assert [r["room_id"] for r in body["rooms"]] == [general]
    assert body["next_batch"] == 1 and body["total_rooms"] == 3
    status, body = await admin("GET", "/v1/rooms?from=1&limit=1&order_by=size")
    assert body["prev_batch"] == 0
    status, body = await admin("GET", "/v1/rooms?order_by=joined_members&dir=b")
    assert [r["room_id"] for r in body["rooms"]][0] == empty
    status, body = await admin("GET", "/v1/rooms?search_term=secr")
    assert [r["room_id"] for r in body["rooms"]] == [secret]
    status, body = await admin("GET", "/v1/rooms?public_rooms=true")
    assert [r["room_id"] for r in body["rooms"]] == [general]
    status, body = await admin("GET", "/v1/rooms?empty_rooms=true")
    assert [r["room_id"] for r in body["rooms"]] == [empty]
    for bad in ("order_by=secret", "dir=up", "public_rooms=maybe", "limit=x"):
        status, body = await admin("GET", f"/v1/rooms?{bad}")
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), bad

    status, body = await admin("GET", f"/v1/rooms/{general}")
    assert body["name"] == "General" and body["joined_local_devices"] == 2
    assert body["forgotten"] is False and "topic" in body and "avatar" in body
    status, body = await admin("GET", "/v1/rooms/%23general:test.local")
    assert body["room_id"] == general
    status, body = await admin("GET", f"/v1/rooms/{general}/members")
    assert body == {"members": sorted([alice.user_id, bob.user_id]), "total": 2}
    status, body = await admin("GET", f"/v1/rooms/{general}/state")
    types = {e["type"] for e in body["state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name"} <= types
    status, body = await admin("GET", f"/v1/rooms/{general}/state?type=m.room.member")
    assert {e["state_key"] for e in body["state"]} == {alice.user_id, bob.user_id}
    for path in ("", "/members", "/state", "/messages", "/forward_extremities"):
        status, body = await admin("GET", f"/v1/rooms/{ROOM}{path}")
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), path
    status, body = await admin("GET", "/v1/rooms/not-a-room")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_messages_and_forward_extremities(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    room_id = await create_room(alice)
    for i in range(5):
        await send_text(alice, room_id, f"message {i}")

    # The admin is not in the room and still reads it (the moderator's view).
    status, body = await admin("GET", f"/v1/rooms/{room_id}/messages?dir=b&limit=3")
    assert status == 200
    assert [e["content"].get("body") for e in body["chunk"]] == [
        "message 4",
        "message 3",
        "message 2",
    ]
    status, body = await admin(
        "GET", f"/v1/rooms/{room_id}/messages?dir=b&limit=3&from={body['end']}"
    )
    assert [e["content"].get("body") for e in body["chunk"]][:2] == ["message 1", "message 0"]
    filt = '{"types":["m.room.create"]}'
    status, body = await admin("GET", f"/v1/rooms/{room_id}/messages?dir=f&limit=50&filter={filt}")
    assert [e["type"] for e in body["chunk"]] == ["m.room.create"]
    status, body = await admin("GET", f"/v1/rooms/{room_id}/messages?from=garbage")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert (await admin.audit("room_messages"))[0]["target"] == room_id

    # The context of a reported event, read by an admin who is not in the room.
    event_id = (await admin("GET", f"/v1/rooms/{room_id}/messages?dir=b&limit=3"))[1]["chunk"][1][
        "event_id"
    ]
    status, body = await admin("GET", f"/v1/rooms/{room_id}/context/{event_id}?limit=2")
    assert status == 200 and body["event"]["content"]["body"] == "message 3"
    assert [e["content"]["body"] for e in body["events_before"]] == ["message 2"]
    assert [e["content"]["body"] for e in body["events_after"]] == ["message 4"]
    status, body = await admin("GET", f"/v1/rooms/{room_id}/context/$unknown")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

    status, body = await admin("GET", f"/v1/rooms/{room_id}/forward_extremities")
    assert status == 200 and body["count"] == 1
    assert set(body["results"][0]) == {"event_id", "state_group", "depth", "received_ts"}
    status, body = await admin("DELETE", f"/v1/rooms/{room_id}/forward_extremities")
    assert body == {"deleted": 0}
    # A room with two extremities (as after a fork) keeps only the deepest one.
    ordered = await server.db.fetch(
        "SELECT event_id FROM events WHERE room_id = $1 ORDER BY stream_ordering DESC LIMIT 2",
        room_id,
    )
    await server.db.execute(
        "INSERT INTO room_forward_extremities (room_id, event_id) VALUES ($1, $2)",
        room_id,
        ordered[1]["event_id"],
    )
    status, body = await admin("GET", f"/v1/rooms/{room_id}/forward_extremities")
    assert body["count"] == 2
    status, body = await admin("DELETE", f"/v1/rooms/{room_id}/forward_extremities")
    assert body == {"deleted": 1}
    status, body = await admin("GET", f"/v1/rooms/{room_id}/forward_extremities")
    assert [r["event_id"] for r in body["results"]] == [ordered[0]["event_id"]]
    await send_text(alice, room_id, "the room still works")


async def test_block_make_room_admin_and_join(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    public = await create_room(
        alice, visibility=RoomVisibility.public, preset=RoomPreset.public_chat
    )
    private = await create_room(alice)

    status, body = await admin("PUT", f"/v1/rooms/{public}/block", {"block": "yes"})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await admin("PUT", f"/v1/rooms/{public}/block", {"block": True})
    assert (status, body) == (200, {"block": True})
    status, body = await admin("GET", f"/v1/rooms/{public}/block")
    assert body == {"block": True, "user_id": BOSS}
    refused = await bob.join(public)
    assert isinstance(refused, JoinError) and refused.status_code == "M_FORBIDDEN"
    status, body = await admin("PUT", f"/v1/rooms/{public}/block", {"block": False})
    assert isinstance(await bob.join(public), JoinResponse)
    # A room unknown here may be blocked ahead of time.
    status, body = await admin("PUT", f"/v1/rooms/{ROOM}/block", {"block": True})
    assert status == 200

    # Joining a user: a public room directly; a private one needs the admin inside.
    status, body = await admin("POST", f"/v1/join/{public}", {"user_id": carol.user_id})
    assert (status, body) == (200, {"room_id": public})
    status, body = await admin("POST", f"/v1/join/{private}", {"user_id": carol.user_id})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await admin("POST", f"/v1/join/{private}", {})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await admin("POST", f"/v1/join/{private}", {"user_id": "@x:elsewhere"})
    assert status == 400
    status, body = await admin("GET", f"/v1/rooms/{private}/members")
    assert body["members"] == [alice.user_id]

    # make_room_admin: the admin gets alice's power (joining the private room through an
    # invite alice sends), then can join carol into it.
    status, body = await admin("POST", f"/v1/rooms/{private}/make_room_admin", {})
    assert status == 200, body
    status, body = await admin("GET", f"/v1/rooms/{private}/state?type=m.room.power_levels")
    assert body["state"][0]["content"]["users"][BOSS] == 100
    status, body = await admin("GET", f"/v1/rooms/{private}/members")
    assert BOSS in body["members"]
    status, body = await admin("POST", f"/v1/join/{private}", {"user_id": carol.user_id})
    assert status == 200
    status, body = await admin(
        "POST", f"/v1/rooms/{private}/make_room_admin", {"user_id": "@ghost:test.local"}
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    entries = await admin.audit("make_room_admin")
    assert [e["target"] for e in entries] == [private]


async def test_delete_room_v2_moves_members(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(
        alice,
        alias="badroom",
        visibility=RoomVisibility.public,
        preset=RoomPreset.public_chat,
    )
    await bob.join(room_id)
    await send_text(bob, room_id, "bad content")

    status, body = await admin("DELETE", f"/v2/rooms/{room_id}", {"block": "yes"})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await admin("DELETE", f"/v2/rooms/{ROOM}", {})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await admin(
        "DELETE", f"/v2/rooms/{room_id}", {"new_room_user_id": "@ghost:test.local"}
    )
    assert status == 404
    status, body = await admin("GET", f"/v2/rooms/{room_id}/delete_status")
    assert status == 404  # nothing was started by the refused requests

    status, body = await admin(
        "DELETE",
        f"/v2/rooms/{room_id}",
        {"new_room_user_id": BOSS, "message": "Moved", "block": True, "purge": True},
    )
    assert status == 200
    delete_id = body["delete_id"]
    # The deletion runs in the background: wait on its status (a bounded number of polls).
    for _ in range(200):
        status, body = await admin("GET", f"/v2/rooms/delete_status/{delete_id}")
        if body["status"] in ("complete", "failed"):
            break
        await bob.sync(timeout=50)
    assert body["status"] == "complete", body
    result = body["shutdown_room"]
    assert sorted(result["kicked_users"]) == sorted([alice.user_id, bob.user_id])
    assert result["failed_to_kick_users"] == []
    assert result["local_aliases"] == ["#badroom:test.local"]
    new_room = result["new_room_id"]
    status, body = await admin("GET", f"/v2/rooms/{room_id}/delete_status")
    assert body["results"][0]["delete_id"] == delete_id

    # Purged and blocked: gone from the list, not joinable; the alias moved.
    status, body = await admin("GET", f"/v1/rooms/{room_id}")
    assert status == 404
    assert (await admin("GET", f"/v1/rooms/{room_id}/block"))[1]["block"] is True
    refused = await bob.join(room_id)
    assert isinstance(refused, JoinError)
    status, body = await server.request(
        "GET", "/_matrix/client/v3/directory/room/%23badroom:test.local"
    )
    assert body["room_id"] == new_room
    status, body = await admin("GET", f"/v1/rooms/{new_room}/members")
    assert sorted(body["members"]) == sorted([BOSS, alice.user_id, bob.user_id])
    messages = await bob.room_messages(new_room, limit=20)
    assert isinstance(messages, RoomMessagesResponse)
    assert "Moved" in [getattr(e, "body", None) for e in messages.chunk]
    status, body = await admin("GET", "/v2/rooms/delete_status/unknown")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_delete_room_v1_and_purge_history(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    room_id = await create_room(alice)
    early = [await send_text(alice, room_id, f"early {i}") for i in range(3)]
    cut = await send_text(alice, room_id, "cut here")
    await send_text(alice, room_id, "late")

    status, body = await admin("POST", f"/v1/purge_history/{room_id}", {})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await admin(
        "POST", f"/v1/purge_history/{room_id}", {"purge_up_to_event_id": "$nope"}
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await admin(
        "POST",
        f"/v1/purge_history/{room_id}",
        {"purge_up_to_event_id": cut, "delete_local_events": True},
    )
    assert status == 200
    purge_id = body["purge_id"]
    for _ in range(200):
        status, body = await admin("GET", f"/v1/purge_history_status/{purge_id}")
        if body["status"] in ("complete", "failed"):
            break
        await alice.sync(timeout=50)
    assert body == {"status": "complete"}
    remaining = await server.db.fetch(
        "SELECT event_id FROM events WHERE event_id = ANY($1)", [*early, cut]
    )
    assert [r["event_id"] for r in remaining] == [cut]
    status, body = await admin("GET", f"/v1/rooms/{room_id}/messages?dir=b&limit=50")
    bodies = [e["content"].get("body") for e in body["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["late", "cut here"]
    await send_text(alice, room_id, "still alive")

    status, body = await admin("DELETE", f"/v1/rooms/{room_id}", {"purge": "no"})
    assert status == 400
    status, body = await admin("DELETE", f"/v1/rooms/{room_id}", {})
    assert status == 200
    assert body == {
        "kicked_users": [alice.user_id],
        "failed_to_kick_users": [],
        "local_aliases": [],
        "new_room_id": None,
    }
    assert await server.db.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id) == 0
    status, body = await admin("GET", f"/v1/rooms/{room_id}")
    assert status == 404
    status, body = await admin("GET", "/v1/rooms")
    assert room_id not in [r["room_id"] for r in body["rooms"]]
    [entry] = await admin.audit("delete_room")
    assert entry["target"] == room_id and entry["details"]["purge"] is True
