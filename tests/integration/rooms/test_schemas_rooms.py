"""Responses of the main room and sync endpoints match the spec's OpenAPI schemas."""

from __future__ import annotations

from tests.schema import assert_matches_schema


async def test_room_and_sync_responses_match_schemas(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    token = alice.access_token
    req = server.request

    status, created = await req(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=token,
        json={"name": "Schema", "topic": "t", "invite": [bob.user_id]},
    )
    assert status == 200
    assert_matches_schema("create_room.yaml", "/createRoom", "post", 200, created)
    room = created["room_id"]
    await bob.join(room)

    status, sent = await req(
        "PUT",
        f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t1",
        token=token,
        json={"msgtype": "m.text", "body": "hi"},
    )
    assert_matches_schema(
        "room_send.yaml", "/rooms/{roomId}/send/{eventType}/{txnId}", "put", 200, sent
    )
    status, state_put = await req(
        "PUT",
        f"/_matrix/client/v3/rooms/{room}/state/m.room.topic/",
        token=token,
        json={"topic": "new"},
    )
    assert status == 200
    assert_matches_schema(
        "room_state.yaml", "/rooms/{roomId}/state/{eventType}/{stateKey}", "put", 200, state_put
    )

    checks = [
        ("rooms.yaml", "/rooms/{roomId}/state", f"/rooms/{room}/state"),
        ("rooms.yaml", "/rooms/{roomId}/members", f"/rooms/{room}/members"),
        ("rooms.yaml", "/rooms/{roomId}/joined_members", f"/rooms/{room}/joined_members"),
        (
            "rooms.yaml",
            "/rooms/{roomId}/event/{eventId}",
            f"/rooms/{room}/event/{sent['event_id']}",
        ),
        (
            "message_pagination.yaml",
            "/rooms/{roomId}/messages",
            f"/rooms/{room}/messages?dir=b&limit=5",
        ),
        (
            "event_context.yaml",
            "/rooms/{roomId}/context/{eventId}",
            f"/rooms/{room}/context/{sent['event_id']}?limit=4",
        ),
        ("list_joined_rooms.yaml", "/joined_rooms", "/joined_rooms"),
        ("capabilities.yaml", "/capabilities", "/capabilities"),
    ]
    for api_file, spec_path, path in checks:
        status, body = await req("GET", "/_matrix/client/v3" + path, token=token)
        assert status == 200, (path, body)
        assert_matches_schema(api_file, spec_path, "get", 200, body)

    status, redacted = await req(
        "PUT", f"/_matrix/client/v3/rooms/{room}/redact/{sent['event_id']}/r1", token=token, json={}
    )
    assert_matches_schema(
        "redaction.yaml", "/rooms/{roomId}/redact/{eventId}/{txnId}", "put", 200, redacted
    )

    status, body = await req("GET", "/_matrix/client/versions")
    assert_matches_schema("versions.yaml", "/versions", "get", 200, body)

    await req(
        "PUT",
        f"/_matrix/client/v3/rooms/{room}/typing/{alice.user_id}",
        token=token,
        json={"typing": True, "timeout": 5000},
    )
    status, initial = await req("GET", "/_matrix/client/v3/sync?timeout=0", token=bob.access_token)
    assert status == 200
    assert_matches_schema("sync.yaml", "/sync", "get", 200, initial)
    joined = initial["rooms"]["join"][room]
    assert joined["summary"]["m.joined_member_count"] == 2
    await req(
        "PUT",
        f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t2",
        token=token,
        json={"msgtype": "m.text", "body": "again"},
    )
    status, incremental = await req(
        "GET",
        f"/_matrix/client/v3/sync?timeout=0&since={initial['next_batch']}",
        token=bob.access_token,
    )
    assert_matches_schema("sync.yaml", "/sync", "get", 200, incremental)
    events = incremental["rooms"]["join"][room]["timeline"]["events"]
    assert [e["content"].get("body") for e in events] == ["again"]


async def test_lazy_loading_members_in_sync(server):
    alice = await server.client("alice")
    others = [await server.client(f"member{i}") for i in range(4)]
    room = (await alice.room_create(name="Big", invite=[o.user_id for o in others])).room_id
    for o in others:
        await o.join(room)
    await others[0].room_send(room, "m.room.message", {"msgtype": "m.text", "body": "x"})
    lazy = '{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":1}}}'
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/sync?timeout=0&filter={lazy}", token=alice.access_token
    )
    assert status == 200
    members = {
        e["state_key"]
        for e in body["rooms"]["join"][room]["state"]["events"]
        if e["type"] == "m.room.member"
    }
    # Only the sender of the one timeline event, and ourselves: not the three silent members.
    assert members == {others[0].user_id, alice.user_id}
    assert body["rooms"]["join"][room]["timeline"]["limited"] is True


async def test_heroes_for_a_nameless_room(server):
    alice = await server.client("alice")
    others = [await server.client(f"hero{i}") for i in range(7)]
    room = (await alice.room_create(invite=[o.user_id for o in others])).room_id
    await others[0].join(room)
    status, body = await server.request(
        "GET", "/_matrix/client/v3/sync?timeout=0", token=alice.access_token
    )
    summary = body["rooms"]["join"][room]["summary"]
    assert summary["m.joined_member_count"] == 2
    assert summary["m.invited_member_count"] == 6
    assert summary["m.heroes"] == sorted(o.user_id for o in others)[:5]


async def test_joined_members_always_has_display_name_and_avatar_url(server):
    """Both keys, null when unset, as Synapse answers (SyTest 10apidoc/31room-state
    "joined_members fetches my membership"); the schema check allows the nulls."""
    alice = await server.client("alice")
    room = (await alice.room_create()).room_id
    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/profile/{alice.user_id}/avatar_url",
        token=alice.access_token,
        json={"avatar_url": "mxc://example.org/abc"},
    )
    assert status == 200
    status, body = await server.request(
        "PUT",
        f"/_matrix/client/v3/profile/{alice.user_id}/displayname",
        token=alice.access_token,
        json={"displayname": ""},
    )
    assert status == 200
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{room}/joined_members", token=alice.access_token
    )
    assert status == 200
    assert body["joined"] == {
        alice.user_id: {"display_name": None, "avatar_url": "mxc://example.org/abc"}
    }
    assert_matches_schema("rooms.yaml", "/rooms/{roomId}/joined_members", "get", 200, body)
