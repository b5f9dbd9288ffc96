"""The requests synapse-admin (etkecc/synapse-admin: src/synapse/dataProvider.ts,
resourceMap.ts, resources/users/List.tsx, resources/rooms/List.tsx) sends from its
screens, exactly as it builds them (query strings from react-admin's page, sort and
filters; bodies of its create/update/delete calls), and the fields its screens read
from the answers."""

from __future__ import annotations

import time
from urllib.parse import quote

from nio import RoomPreset, RoomVisibility, UploadResponse

from tests.harness import PASSWORD
from tests.integration.admin.helpers import BOSS, admin_server, create_room, send_text

USER_FIELDS = {"name", "avatar_url", "is_guest", "admin", "deactivated", "creation_ts", "locked"}
USER_FIELDS |= {"shadow_banned", "erased", "displayname", "user_type", "suspended"}
ROOM_FIELDS = {"room_id", "name", "canonical_alias", "joined_members", "joined_local_members"}
ROOM_FIELDS |= {"version", "creator", "encryption", "federatable", "public", "join_rules"}
ROOM_FIELDS |= {"state_events", "room_type", "guest_access", "history_visibility"}


async def test_synapse_admin_screens(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(
        alice, name="Lobby", visibility=RoomVisibility.public, preset=RoomPreset.public_chat
    )
    await bob.join(room_id)
    bad = await send_text(bob, room_id, "report me")
    await server.request(
        "POST",
        f"/_matrix/client/v3/rooms/{room_id}/report/{bad}",
        token=alice.access_token,
        json={"reason": "spam", "score": -100},
    )
    upload, _ = await alice.upload(lambda *_: b"x" * 64, content_type="text/plain", filesize=64)
    assert isinstance(upload, UploadResponse)
    media_id = upload.content_uri.rsplit("/", 1)[1]
    sn = server.server_name

    async def ok(method: str, path: str, json=None) -> dict:
        status, body = await admin(method, path, json)
        assert status in (200, 201), (method, path, body)
        return body

    # Users list: the default filters and sort of UserList, page 1 of 50.
    page = "from=0&limit=50"
    body = await ok(
        "GET", f"/v2/users?{page}&guests=false&locked=false&suspended=false&order_by=name&dir=f"
    )
    assert body["total"] == 3 and USER_FIELDS <= set(body["users"][0])
    await ok("GET", f"/v2/users?{page}&deactivated=true&order_by=creation_ts_ms&dir=b")
    await ok("GET", f"/v2/users?{page}&name=ali&order_by=displayname&dir=f")
    # getOne / getMany, with the ID URL-encoded; create and update send the whole record.
    record = await ok("GET", f"/v2/users/{quote(alice.user_id)}")
    created = await ok(
        "PUT",
        f"/v2/users/{quote('@carol:test.local')}",
        {
            "id": "@carol:test.local",
            "displayname": "Carol",
            "password": PASSWORD,
            "admin": False,
            "user_type": None,
        },
    )
    assert created["name"] == "@carol:test.local"
    edited = {
        **record,
        "id": record["name"],
        "avatar_src": None,
        "creation_ts_ms": record["creation_ts"] * 1000,
        "displayname": "Alice Admin",
    }
    edited = {k: v for k, v in edited.items() if v is not None or k == "user_type"}
    assert (await ok("PUT", f"/v2/users/{quote(alice.user_id)}", edited))["displayname"] == (
        "Alice Admin"
    )
    # The user edit screen's tabs (getManyReference adds from/limit/order_by/dir).
    ref = "from=0&limit=25&order_by=id&dir=f"
    user = quote(alice.user_id)
    assert "devices" in await ok("GET", f"/v2/users/{user}/devices?{ref}")
    assert "devices" in await ok("GET", f"/v1/whois/{user}")
    assert (await ok("GET", f"/v1/users/{user}/joined_rooms?{ref}"))["total"] == 1
    assert room_id in (await ok("GET", f"/v1/users/{user}/memberships?{ref}"))["memberships"]
    assert (await ok("GET", f"/v1/users/{user}/pushers?{ref}"))["total"] == 0
    media = await ok("GET", f"/v1/users/{user}/media?from=0&limit=25&order_by=created_ts&dir=b")
    assert {
        "media_id",
        "media_length",
        "media_type",
        "created_ts",
        "safe_from_quarantine",
        "quarantined_by",
        "upload_name",
        "last_access_ts",
    } <= set(media["media"][0])
    assert "account_data" in await ok("GET", f"/v1/users/{user}/accountdata")
    assert await ok("GET", f"/v1/users/{user}/override_ratelimit") == {}
    await ok("POST", f"/v1/users/{user}/override_ratelimit", {"messages_per_second": 5})
    await ok("DELETE", f"/v1/users/{user}/override_ratelimit")
    assert await ok("GET", f"/v1/experimental_features/{user}") == {"features": {}}
    assert await ok("GET", "/v1/username_available?username=dave") == {"available": True}
    await ok("PUT", f"/v1/suspend/{quote('@carol:test.local')}", {"suspend": True})
    await ok("PUT", f"/v1/suspend/{quote('@carol:test.local')}", {"suspend": False})

    # Rooms list with RoomList's sort; the row's getMany; its Show tabs.
    rooms = await ok("GET", f"/v1/rooms?{page}&order_by=name&dir=f")
    assert rooms["total_rooms"] == 1 and ROOM_FIELDS <= set(rooms["rooms"][0])
    await ok(
        "GET", f"/v1/rooms?{page}&search_term=lob&public_rooms=true&order_by=joined_members&dir=b"
    )
    details = await ok("GET", f"/v1/rooms/{quote(room_id)}")
    assert "avatar" in details
    assert (await ok("GET", f"/v1/rooms/{room_id}/members?{ref}"))["total"] == 2
    assert len((await ok("GET", f"/v1/rooms/{room_id}/state?{ref}"))["state"]) >= 6
    room_media = await ok("GET", f"/v1/room/{room_id}/media?{ref}")
    assert room_media["local"] == [] and room_media["total"] == 0
    extremities = await ok("GET", f"/v1/rooms/{room_id}/forward_extremities?{ref}")
    assert extremities["count"] == len(extremities["results"]) == 1
    await ok("POST", f"/v1/rooms/{quote(room_id)}/make_room_admin", {"user_id": BOSS})
    await ok("POST", f"/v1/join/{room_id}", {"user_id": "@carol:test.local"})
    await ok("PUT", f"/v1/rooms/{room_id}/block", {"block": True})
    assert (await ok("GET", f"/v1/rooms/{room_id}/block"))["block"] is True
    await ok("PUT", f"/v1/rooms/{room_id}/block", {"block": False})

    # Reports list (newest first) and Show.
    reports = await ok("GET", "/v1/event_reports?from=0&limit=25&order_by=received_ts&dir=b")
    assert reports["total"] == 1
    report = await ok("GET", f"/v1/event_reports/{reports['event_reports'][0]['id']}")
    assert report["event_id"] == bad and report["event_json"]["sender"] == bob.user_id

    # Media: statistics, protect/unprotect, quarantine/unquarantine, delete by date/size,
    # purge of remote media.
    stats = await ok(
        "GET",
        "/v1/statistics/users/media?from=0&limit=50&order_by=media_length&dir=b&search_term=ali",
    )
    assert [u["user_id"] for u in stats["users"]] == [alice.user_id]
    assert {"displayname", "media_count", "media_length", "user_id"} == set(stats["users"][0])
    await ok("GET", "/v1/statistics/users/media?from=0&limit=50&order_by=displayname&dir=f")
    await ok("POST", f"/v1/media/protect/{media_id}")
    await ok("POST", f"/v1/media/unprotect/{media_id}")
    await ok("POST", f"/v1/media/quarantine/{sn}/{media_id}")
    await ok("POST", f"/v1/media/unquarantine/{sn}/{media_id}")
    future = int(time.time() * 1000) + 60_000
    deleted = await ok(
        "POST", f"/v1/media/{sn}/delete?before_ts={future}&size_gt=1000&keep_profiles=true"
    )
    assert deleted == {"deleted_media": [], "total": 0}
    assert "deleted" in await ok("POST", f"/v1/purge_media_cache?before_ts={future}")

    # Server notices (bulk button: one request per user), registration tokens, destinations.
    notice = await ok(
        "POST",
        "/v1/send_server_notice",
        {"user_id": bob.user_id, "content": {"msgtype": "m.text", "body": "Hello"}},
    )
    assert notice["event_id"].startswith("$")
    token = await ok("POST", "/v1/registration_tokens/new", {"uses_allowed": 3})
    listed = await ok("GET", f"/v1/registration_tokens?{page}&order_by=token&dir=f")
    assert [t["token"] for t in listed["registration_tokens"]] == [token["token"]]
    await ok("DELETE", f"/v1/registration_tokens/{token['token']}")
    destinations = await ok("GET", f"/v1/federation/destinations?{page}&order_by=destination&dir=f")
    assert destinations == {"destinations": [], "total": 0}

    # Deleting: a room (v2, the list's bulk delete), a user (erase).
    assert "delete_id" in await ok("DELETE", f"/v2/rooms/{room_id}", {"block": False})
    result = await ok("POST", f"/v1/deactivate/{quote('@carol:test.local')}", {"erase": True})
    assert result == {"id_server_unbind_result": "success"}
