"""Account data and tags: the REST endpoints, and delivery through nio's /sync."""

from types import SimpleNamespace
from urllib.parse import quote

from nio import RoomCreateResponse

from homeserver.sync.streams.account_data import AccountDataStream
from tests.schema import assert_matches_schema

V3 = "/_matrix/client/v3"


def global_path(client, data_type):
    return f"{V3}/user/{quote(client.user_id)}/account_data/{data_type}"


def room_path(client, room_id, rest):
    return f"{V3}/user/{quote(client.user_id)}/rooms/{quote(room_id)}/{rest}"


async def test_global_account_data(server):
    alice = await server.client("alice")
    path = global_path(alice, "m.direct")
    status, body = await server.request("GET", path, token=alice.access_token)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"

    content = {"@bob:test.local": ["!room:test.local"]}
    status, body = await server.request("PUT", path, token=alice.access_token, json=content)
    assert status == 200 and body == {}
    status, body = await server.request("GET", path, token=alice.access_token)
    assert status == 200 and body == content
    row = await server.db.fetchrow("SELECT stream_pos FROM account_data")
    assert row["stream_pos"] == await server.db.fetchval(
        "SELECT pos FROM stream_positions WHERE stream = 'account_data'"
    )

    bob = await server.client("bob")
    status, body = await server.request("GET", path, token=bob.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await server.request("PUT", path, token=bob.access_token, json={})
    assert status == 403
    status, body = await server.request("PUT", path, token=alice.access_token, data=b"[1]")
    assert status == 400 and body["errcode"] == "M_NOT_JSON"
    status, body = await server.request("GET", path, token=alice.access_token)
    assert body == content


async def test_account_data_reaches_sync(server):
    alice = await server.client("carol")
    room = await alice.room_create()
    assert isinstance(room, RoomCreateResponse)
    first = await alice.sync(timeout=0, full_state=True)
    assert first.next_batch

    status, _ = await server.request(
        "PUT",
        global_path(alice, "im.vector.web.settings"),
        token=alice.access_token,
        json={"theme": "dark"},
    )
    assert status == 200
    status, body = await server.request(
        "PUT",
        room_path(alice, room.room_id, "account_data/org.example.note"),
        token=alice.access_token,
        json={"note": "hello"},
    )
    assert status == 200, body

    second = await alice.sync(timeout=0, since=first.next_batch)
    globals_ = {e.type: e for e in second.account_data_events}
    assert "im.vector.web.settings" in globals_
    room_info = second.rooms.join[room.room_id]
    assert any(getattr(e, "type", None) == "org.example.note" for e in room_info.account_data)

    # Nothing new: the next incremental sync repeats none of it.
    third = await alice.sync(timeout=0, since=second.next_batch)
    assert not third.account_data_events
    assert room.room_id not in third.rooms.join

    # An initial sync carries everything stored.
    status, body = await server.request("GET", f"{V3}/sync?timeout=0", token=alice.access_token)
    assert status == 200
    assert "im.vector.web.settings" in {e["type"] for e in body["account_data"]["events"]}
    room_events = body["rooms"]["join"][room.room_id]["account_data"]["events"]
    assert {"type": "org.example.note", "content": {"note": "hello"}} in room_events


async def test_tags(server):
    alice = await server.client("dora")
    room = await alice.room_create()
    tags = room_path(alice, room.room_id, "tags")
    status, body = await server.request("GET", tags, token=alice.access_token)
    assert status == 200 and body == {"tags": {}}

    status, _ = await server.request(
        "PUT", f"{tags}/m.favourite", token=alice.access_token, json={"order": 0.5}
    )
    assert status == 200
    status, _ = await server.request("PUT", f"{tags}/u.work", token=alice.access_token, json={})
    status, body = await server.request("GET", tags, token=alice.access_token)
    assert body == {"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}}
    assert_matches_schema("tags.yaml", "/user/{userId}/rooms/{roomId}/tags", "get", 200, body)

    status, body = await server.request(
        "PUT", f"{tags}/u.bad", token=alice.access_token, json={"order": "first"}
    )
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    status, _ = await server.request("DELETE", f"{tags}/u.work", token=alice.access_token)
    assert status == 200
    status, body = await server.request(
        "GET", room_path(alice, room.room_id, "account_data/m.tag"), token=alice.access_token
    )
    assert body == {"tags": {"m.favourite": {"order": 0.5}}}

    sync = await alice.sync(timeout=0, full_state=True)
    tag_events = [e for e in sync.rooms.join[room.room_id].account_data if hasattr(e, "tags")]
    assert tag_events and "m.favourite" in tag_events[0].tags


async def test_room_account_data_wire_errors(server):
    alice = await server.client("erin")
    bad_room = room_path(alice, "not-a-room", "account_data/x.y")
    status, body = await server.request("PUT", bad_room, token=alice.access_token, json={})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    fully_read = room_path(alice, "!r:test.local", "account_data/m.fully_read")
    status, body = await server.request(
        "PUT", fully_read, token=alice.access_token, json={"event_id": "$x"}
    )
    assert status == 405 and body["errcode"] == "M_BAD_JSON"
    assert await server.db.fetchval("SELECT count(*) FROM account_data") == 0


async def test_sync_extension_filters_by_type(server):
    """The extension honours account_data filters and skips rooms the user is not in."""
    alice = await server.client("fred")
    for data_type in ("a.keep", "b.drop"):
        await server.request(
            "PUT", global_path(alice, data_type), token=alice.access_token, json={}
        )
    await server.request(
        "PUT",
        room_path(alice, "!elsewhere:test.local", "account_data/c.x"),
        token=alice.access_token,
        json={},
    )
    hs = server.hs
    ctx = SimpleNamespace(
        user_id=alice.user_id,
        device_id=alice.device_id,
        since=None,
        now=await hs.streams.current_positions(),
        joined_room_ids=set(),
        newly_joined_room_ids=set(),
        newly_left_room_ids=set(),
        full_state=False,
        filter={"account_data": {"not_types": ["b.*"]}},
    )
    response = {}
    for provider in hs.sync_handler.providers:
        if isinstance(provider, AccountDataStream):
            await provider.fill(ctx, response)
    assert [e["type"] for e in response["account_data"]["events"]] == ["a.keep"]
    assert "rooms" not in response
