"""The deprecated APIs Synapse still serves and SyTest uses: GET /events, /initialSync,
/rooms/{id}/initialSync, and POST send/redact without a transaction ID (raw HTTP: no
client library speaks them)."""

from __future__ import annotations

from urllib.parse import quote


async def _room(server):
    alice = await server.client()
    bob = await server.client()
    room_id = (await alice.room_create(name="legacy", invite=[bob.user_id])).room_id
    await bob.join(room_id)
    return alice, bob, room_id


async def test_events_stream_returns_what_happened_since_from(server):
    alice, bob, room_id = await _room(server)
    status, first = await server.request(
        "GET", "/_matrix/client/v3/events?timeout=0", token=bob.access_token
    )
    assert status == 200
    assert {"start", "end", "chunk"} <= first.keys()
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/typing/{quote(alice.user_id)}",
        token=alice.access_token,
        json={"typing": True, "timeout": 10000},
    )
    status, body = await server.request(
        "GET", f"/_matrix/client/r0/events?from={first['end']}&timeout=5000", token=bob.access_token
    )
    assert status == 200
    assert body["start"] == first["end"]
    messages = [e for e in body["chunk"] if e["type"] == "m.room.message"]
    assert [m["content"]["body"] for m in messages] == ["hi"]
    assert messages[0]["room_id"] == room_id
    typing = [e for e in body["chunk"] if e["type"] == "m.typing"]
    assert typing and typing[-1]["room_id"] == room_id

    # Account data, global and of a room, comes down the stream too.
    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/user/{quote(bob.user_id)}/account_data/my.type",
        token=bob.access_token,
        json={"a": 1},
    )
    assert status == 200
    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/user/{quote(bob.user_id)}/rooms/{room_id}/tags/u.work",
        token=bob.access_token,
        json={},
    )
    assert status == 200
    status, more = await server.request(
        "GET", f"/_matrix/client/r0/events?from={body['end']}&timeout=5000", token=bob.access_token
    )
    assert [e["content"] for e in more["chunk"] if e["type"] == "my.type"] == [{"a": 1}]
    tags = [e for e in more["chunk"] if e["type"] == "m.tag"]
    assert tags and tags[0]["room_id"] == room_id and "u.work" in tags[0]["content"]["tags"]
    body = more
    # Nothing new since `end`: an empty chunk.
    status, again = await server.request(
        "GET", f"/_matrix/client/r0/events?from={body['end']}&timeout=0", token=bob.access_token
    )
    assert status == 200 and again["chunk"] == []


async def test_events_stream_bad_token_is_refused(server):
    alice = await server.client()
    for query in ("from=nonsense", "limit=hello", "limit=-2", "timeout=soon"):
        status, body = await server.request(
            "GET", f"/_matrix/client/r0/events?{query}&timeout=0", token=alice.access_token
        )
        assert status == 400, query
        assert body["errcode"] == "M_INVALID_PARAM"


async def test_initial_sync_lists_rooms_state_messages_receipts(server):
    alice, bob, room_id = await _room(server)
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    await alice.update_receipt_marker(room_id, sent.event_id)
    status, body = await server.request(
        "GET", "/_matrix/client/v3/initialSync?limit=1", token=alice.access_token
    )
    assert status == 200
    [room] = [r for r in body["rooms"] if r["room_id"] == room_id]
    assert room["membership"] == "join" and room["visibility"] == "private"
    assert [e["event_id"] for e in room["messages"]["chunk"]] == [sent.event_id]
    assert room["messages"]["chunk"][0]["user_id"] == alice.user_id  # the old format
    assert {"start", "end"} <= room["messages"].keys()
    # The current state, not only the state before the timeline.
    members = {
        e["state_key"]: e["content"]["membership"]
        for e in room["state"]
        if e["type"] == "m.room.member"
    }
    assert members == {alice.user_id: "join", bob.user_id: "join"}
    receipts = [r for r in body["receipts"] if r["room_id"] == room_id]
    assert sent.event_id in receipts[0]["content"]
    assert "end" in body

    status, body = await server.request(
        "GET", "/_matrix/client/v3/initialSync?limit=0", token=alice.access_token
    )
    [room] = [r for r in body["rooms"] if r["room_id"] == room_id]
    assert room["messages"]["chunk"] == []


async def test_initial_sync_archived_includes_left_rooms(server):
    alice, bob, room_id = await _room(server)
    await bob.room_leave(room_id)
    status, body = await server.request(
        "GET", "/_matrix/client/v3/initialSync", token=bob.access_token
    )
    assert status == 200 and all(r["room_id"] != room_id for r in body["rooms"])
    status, body = await server.request(
        "GET", "/_matrix/client/v3/initialSync?archived=true", token=bob.access_token
    )
    [room] = [r for r in body["rooms"] if r["room_id"] == room_id]
    assert room["membership"] == "leave"


async def test_room_initial_sync_member_and_outsider(server):
    alice, bob, room_id = await _room(server)
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "y"})
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{room_id}/initialSync", token=bob.access_token
    )
    assert status == 200, body
    assert body["room_id"] == room_id and body["membership"] == "join"
    assert body["messages"]["chunk"][-1]["content"]["body"] == "y"
    assert {p["content"]["user_id"] for p in body["presence"]} == {alice.user_id, bob.user_id}

    outsider = await server.client()
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{room_id}/initialSync", token=outsider.access_token
    )
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await server.request(
        "GET",
        f"/_matrix/client/r0/events?room_id={quote(room_id)}&timeout=0",
        token=outsider.access_token,
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"

    # World-readable: an outsider reads state and history.
    await alice.room_put_state(
        room_id, "m.room.history_visibility", {"history_visibility": "world_readable"}
    )
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "public"})
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{room_id}/initialSync", token=outsider.access_token
    )
    assert status == 200
    assert body["visibility"] == "private"  # not published in the room directory
    assert body["presence"] == []  # members' presence is for members
    # From the change of visibility on (the change itself seen under the more permissive
    # setting); the shared history before stays hidden.
    chunk = body["messages"]["chunk"]
    assert [e["type"] for e in chunk] == ["m.room.history_visibility", "m.room.message"]
    assert chunk[1]["content"]["body"] == "public"

    # Peeking with /events and the room: what comes next, from the initialSync's end.
    end = body["messages"]["end"]
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "next"})
    status, peek = await server.request(
        "GET",
        f"/_matrix/client/r0/events?room_id={quote(room_id)}&from={end}&timeout=5000",
        token=outsider.access_token,
    )
    assert status == 200
    assert [e["content"]["body"] for e in peek["chunk"]] == ["next"]
    status, peek = await server.request(
        "GET",
        f"/_matrix/client/r0/events?room_id={quote(room_id)}&from={peek['end']}&timeout=0",
        token=outsider.access_token,
    )
    assert status == 200 and peek["chunk"] == []


async def test_send_and_redact_without_transaction_id(server):
    alice, bob, room_id = await _room(server)
    path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message"
    content = {"msgtype": "m.text", "body": "no txn"}
    status, first = await server.request("POST", path, token=alice.access_token, json=content)
    assert status == 200
    status, second = await server.request("POST", path, token=alice.access_token, json=content)
    assert status == 200
    assert first["event_id"] != second["event_id"]  # no idempotency without a txn ID
    status, red = await server.request(
        "POST",
        f"/_matrix/client/v3/rooms/{room_id}/redact/{first['event_id']}",
        token=alice.access_token,
        json={"reason": "r"},
    )
    assert status == 200 and red["event_id"].startswith("$")
    status, ev = await server.request(
        "GET",
        f"/_matrix/client/v3/rooms/{room_id}/event/{first['event_id']}",
        token=bob.access_token,
    )
    assert status == 200 and ev["content"] == {}

    # A non-member may not send this way either, and nothing is stored.
    outsider = await server.client()
    status, body = await server.request("POST", path, token=outsider.access_token, json=content)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_peeking_events_in_world_readable_room_tells_typing_receipts_presence(server):
    """/events with the room_id of a world-readable room the user is not in: the room's
    messages, then its members' presence (not that of users outside the room), its
    receipts and its typing, as Synapse peeks (SyTest 30rooms/30history-visibility
    "non-joined user can call /events on world_readable room")."""
    alice = await server.client()
    stranger = await server.client()
    outsider = await server.client()
    room_id = (await alice.room_create(name="peek")).room_id
    await alice.room_put_state(
        room_id, "m.room.history_visibility", {"history_visibility": "world_readable"}
    )

    async def peek(since: str | None, timeout: int = 5000) -> dict:
        query = f"room_id={quote(room_id)}&timeout={timeout}" + (f"&from={since}" if since else "")
        status, body = await server.request(
            "GET", f"/_matrix/client/r0/events?{query}", token=outsider.access_token
        )
        assert status == 200, body
        return body

    token = (await peek(None, 0))["end"]
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "mice"})
    body = await peek(token)
    assert [e["content"]["body"] for e in body["chunk"]] == ["mice"]
    token = body["end"]

    for user in (stranger, alice):
        status, _ = await server.request(
            "PUT",
            f"/_matrix/client/v3/presence/{quote(user.user_id)}/status",
            token=user.access_token,
            json={"presence": "online", "status_msg": "lemurs"},
        )
        assert status == 200
    body = await peek(token)
    assert [(e["type"], e["content"]["user_id"]) for e in body["chunk"]] == [
        ("m.presence", alice.user_id)
    ]
    token = body["end"]

    status, _ = await server.request(
        "POST",
        f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{quote(sent.event_id)}",
        token=alice.access_token,
        json={},
    )
    assert status == 200
    body = await peek(token)
    [receipt] = body["chunk"]
    assert receipt["type"] == "m.receipt" and receipt["room_id"] == room_id
    assert alice.user_id in receipt["content"][sent.event_id]["m.read"]
    token = body["end"]

    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/typing/{quote(alice.user_id)}",
        token=alice.access_token,
        json={"typing": True, "timeout": 10000},
    )
    assert status == 200
    body = await peek(token)
    assert body["chunk"] == [
        {"type": "m.typing", "room_id": room_id, "content": {"user_ids": [alice.user_id]}}
    ]
    assert (await peek(body["end"], 0))["chunk"] == []
