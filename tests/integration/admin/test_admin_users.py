"""The user admin API (Synapse's shapes): listing, reading, creating and changing
accounts, deactivation, passwords, sessions, flags; admins only; bad input changes
nothing; real clients see the effect (a deactivated user's token stops working, a
suspended user may not send)."""

from __future__ import annotations

import asyncio

from nio import (
    JoinedMembersResponse,
    JoinResponse,
    LoginResponse,
    ProfileGetDisplayNameResponse,
    RoomSendError,
    RoomVisibility,
    SyncResponse,
    WhoamiResponse,
)

from homeserver.http.auth import hash_token
from tests.harness import PASSWORD
from tests.integration.admin.helpers import (
    BOSS,
    admin_server,
    create_room,
    forbidden_for,
    send_text,
)

ALICE = "@alice:test.local"

USER_ENDPOINTS = [
    ("GET", "/v2/users"),
    ("GET", "/v3/users"),
    ("GET", f"/v2/users/{ALICE}"),
    ("PUT", f"/v2/users/{ALICE}"),
    ("POST", f"/v1/deactivate/{ALICE}"),
    ("POST", f"/v1/reset_password/{ALICE}"),
    ("GET", f"/v1/whois/{ALICE}"),
    ("GET", f"/v1/users/{ALICE}/admin"),
    ("PUT", f"/v1/users/{ALICE}/admin"),
    ("GET", f"/v1/users/{ALICE}/joined_rooms"),
    ("GET", f"/v1/users/{ALICE}/memberships"),
    ("GET", f"/v1/users/{ALICE}/pushers"),
    ("GET", f"/v1/users/{ALICE}/accountdata"),
    ("GET", f"/v1/users/{ALICE}/media"),
    ("POST", f"/v1/users/{ALICE}/login"),
    ("POST", f"/v1/users/{ALICE}/shadow_ban"),
    ("DELETE", f"/v1/users/{ALICE}/shadow_ban"),
    ("GET", f"/v1/users/{ALICE}/override_ratelimit"),
    ("POST", f"/v1/users/{ALICE}/override_ratelimit"),
    ("DELETE", f"/v1/users/{ALICE}/override_ratelimit"),
    ("GET", f"/v2/users/{ALICE}/devices"),
    ("POST", f"/v2/users/{ALICE}/devices"),
    ("GET", f"/v2/users/{ALICE}/devices/X"),
    ("PUT", f"/v2/users/{ALICE}/devices/X"),
    ("DELETE", f"/v2/users/{ALICE}/devices/X"),
    ("POST", f"/v2/users/{ALICE}/delete_devices"),
    ("GET", "/v1/username_available?username=x"),
    ("PUT", f"/v1/suspend/{ALICE}"),
]


async def test_user_endpoints_refuse_non_admins(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    await forbidden_for(server, alice.access_token, USER_ENDPOINTS)
    status, body = await server.request("GET", "/_synapse/admin/v2/users")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    # Nothing the refused calls asked for happened, and nothing was audited.
    status, user = await admin("GET", f"/v2/users/{ALICE}")
    assert status == 200 and not user["deactivated"] and not user["admin"]
    assert not user["shadow_banned"] and not user["suspended"]
    assert await admin.audit("deactivate") == []


async def test_list_users_filters_order_paging(make_server):
    server, admin = await admin_server(make_server)
    for name in ("carol", "alice", "bob"):
        await server.client(name)
    await admin("PUT", "/v2/users/@dave:test.local", {"displayname": "Zed", "user_type": "bot"})
    await admin("POST", "/v1/deactivate/@bob:test.local", {})

    status, body = await admin("GET", "/v2/users?limit=2")
    assert status == 200
    assert [u["name"] for u in body["users"]] == [ALICE, BOSS]  # bob is deactivated
    assert body["total"] == 4 and body["next_token"] == "2"
    status, body = await admin("GET", f"/v2/users?from={body['next_token']}&limit=2")
    assert [u["name"] for u in body["users"]] == ["@carol:test.local", "@dave:test.local"]
    assert "next_token" not in body

    user = body["users"][1]
    assert user["displayname"] == "Zed" and user["user_type"] == "bot"
    assert user["admin"] is False and user["deactivated"] is False
    assert isinstance(user["creation_ts"], int) and user["is_guest"] is False

    status, body = await admin("GET", "/v2/users?deactivated=true&order_by=name&dir=b")
    assert [u["name"] for u in body["users"]][:2] == ["@dave:test.local", "@carol:test.local"]
    assert body["total"] == 5
    status, body = await admin("GET", "/v3/users?deactivated=true")
    assert [u["name"] for u in body["users"]] == ["@bob:test.local"]
    status, body = await admin("GET", "/v3/users?deactivated=false&admins=true")
    assert [u["name"] for u in body["users"]] == [BOSS]
    # `name` matches localparts and display names, not the server name all share.
    status, body = await admin("GET", "/v2/users?name=zed")
    assert [u["name"] for u in body["users"]] == ["@dave:test.local"]
    status, body = await admin("GET", "/v2/users?name=test")
    assert body["users"] == [] and body["total"] == 0
    status, body = await admin("GET", "/v2/users?user_id=car")
    assert [u["name"] for u in body["users"]] == ["@carol:test.local"]
    status, body = await admin("GET", "/v2/users?not_user_type=bot")
    assert "@dave:test.local" not in [u["name"] for u in body["users"]]

    for bad in ("order_by=password", "dir=x", "limit=-1", "from=x", "deactivated=maybe"):
        status, body = await admin("GET", f"/v2/users?{bad}")
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), bad


async def test_create_and_modify_user(make_server):
    server, admin = await admin_server(make_server)
    new = "@newbie:test.local"

    # Bad input first: each answers a Matrix error and creates nothing.
    for body, errcode in (
        ({"password": 5}, "M_BAD_JSON"),
        ({"password": "short"}, "M_WEAK_PASSWORD"),
        ({"admin": "yes"}, "M_BAD_JSON"),
        ({"avatar_url": "https://x"}, "M_INVALID_PARAM"),
        ({"deactivated": True}, "M_INVALID_PARAM"),
        ({"threepids": [{"medium": "email", "address": "a@b"}]}, "M_INVALID_PARAM"),
        ({"threepids": [{"medium": "msisdn", "address": "33600000000"}]}, "M_INVALID_PARAM"),
        ({"threepids": "a@b.fr"}, "M_BAD_JSON"),
        ({"external_ids": [{"auth_provider": "x", "external_id": "y"}]}, "M_UNKNOWN"),
    ):
        status, resp = await admin("PUT", f"/v2/users/{new}", body)
        assert status == 400 and resp["errcode"] == errcode, (body, resp)
    status, resp = await admin("PUT", "/v2/users/@Bad Name:test.local", {})
    assert status == 400 and resp["errcode"] == "M_INVALID_USERNAME"
    status, resp = await admin("PUT", "/v2/users/@x:elsewhere.example", {})
    assert status == 400
    status, resp = await admin("GET", f"/v2/users/{new}")
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")

    status, user = await admin(
        "PUT",
        f"/v2/users/{new}",
        {"password": PASSWORD, "displayname": "New Bie", "admin": True, "user_type": "support"},
    )
    assert status == 201
    assert user["name"] == new and user["admin"] is True and user["user_type"] == "support"
    assert user["displayname"] == "New Bie"
    newbie = await server.login("newbie")

    status, user = await admin("PUT", f"/v2/users/{new}", {"admin": False, "user_type": None})
    assert status == 200 and user["admin"] is False and user["user_type"] is None
    status, user = await admin("PUT", f"/v2/users/{new}", {"displayname": "Renamed"})
    resp = await newbie.get_displayname(new)
    assert isinstance(resp, ProfileGetDisplayNameResponse) and resp.displayname == "Renamed"

    # A new password logs the user out everywhere (the default), and works.
    status, _ = await admin("PUT", f"/v2/users/{new}", {"password": "another long password"})
    assert status == 200
    assert not isinstance(await newbie.whoami(), WhoamiResponse)
    again = server.new_client("newbie")
    assert isinstance(await again.login("another long password"), LoginResponse)

    # Deactivated through PUT; re-activation needs a password.
    status, user = await admin("PUT", f"/v2/users/{new}", {"deactivated": True})
    assert status == 200 and user["deactivated"] is True
    assert not isinstance(await again.whoami(), WhoamiResponse)
    status, resp = await admin("PUT", f"/v2/users/{new}", {"deactivated": False})
    assert status == 400
    status, user = await admin("GET", f"/v2/users/{new}")
    assert user["deactivated"] is True
    status, user = await admin(
        "PUT", f"/v2/users/{new}", {"deactivated": False, "password": PASSWORD}
    )
    assert status == 200 and user["deactivated"] is False
    await server.login("newbie")

    # An admin may not demote themselves.
    status, resp = await admin("PUT", f"/v2/users/{BOSS}", {"admin": False})
    assert status == 400
    status, resp = await admin("PUT", f"/v1/users/{BOSS}/admin", {"admin": False})
    assert status == 400
    status, resp = await admin("GET", f"/v1/users/{BOSS}/admin")
    assert resp == {"admin": True}

    actions = [e["action"] for e in await admin.audit("put_user")]
    assert len(actions) == 6
    entry = (await admin.audit("put_user"))[-1]
    assert entry["admin"] == BOSS and entry["target"] == new and entry["details"]["created"]
    assert "password" not in str(entry["details"]).replace("password_changed", "")


async def test_deactivate_with_erase(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    bob = await server.client("bob")
    await alice.set_displayname("Alice A")
    room_id = await create_room(alice, invite=[bob.user_id])
    await bob.join(room_id)
    await send_text(alice, room_id, "something to forget")

    status, body = await admin("POST", f"/v1/deactivate/{ALICE}", {"erase": "yes"})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    assert isinstance(await alice.whoami(), WhoamiResponse)

    status, body = await admin("POST", f"/v1/deactivate/{ALICE}", {"erase": True})
    assert (status, body) == (200, {"id_server_unbind_result": "success"})
    # The token stops working, the account left the room and its profile is gone.
    assert not isinstance(await alice.whoami(), WhoamiResponse)
    members = await bob.joined_members(room_id)
    assert isinstance(members, JoinedMembersResponse)
    assert [m.user_id for m in members.members] == [bob.user_id]
    status, user = await admin("GET", f"/v2/users/{ALICE}")
    assert user["deactivated"] and user["erased"] and user["displayname"] is None
    # The erasure was recorded and runs at once, in the background: once it is through,
    # nothing of it is left and the message is blanked.
    for _ in range(100):  # bounded
        erasure = await server.db.fetchval(
            "SELECT count(*) FROM user_erasures WHERE user_id = $1", ALICE
        )
        if erasure == 0:
            break
        await server.hs.housekeeping.runner.run_task("erasure")
        await asyncio.sleep(0.05)
    assert erasure == 0
    stored = await server.db.fetchval(
        "SELECT json FROM events WHERE sender = $1 AND type = 'm.room.message'", ALICE
    )
    assert "something to forget" not in stored
    login = await server.new_client("alice").login(PASSWORD)
    assert not isinstance(login, LoginResponse)
    status, body = await admin("POST", "/v1/deactivate/@nobody:test.local", {})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    [entry] = await admin.audit("deactivate")
    assert entry["target"] == ALICE and entry["details"] == {"erase": True}


async def test_reset_password_and_sessions(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    await server.login("alice")

    status, body = await admin("POST", f"/v1/reset_password/{ALICE}", {"new_password": "x"})
    assert (status, body["errcode"]) == (400, "M_WEAK_PASSWORD")
    status, body = await admin("POST", f"/v1/reset_password/{ALICE}", {})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    assert isinstance(await alice.whoami(), WhoamiResponse)

    status, body = await admin("GET", f"/v2/users/{ALICE}/devices")
    assert status == 200 and body["total"] == 2
    device = body["devices"][0]
    assert set(device) >= {"device_id", "display_name", "last_seen_ip", "last_seen_ts", "user_id"}
    status, body = await admin("GET", f"/v1/whois/{ALICE}")
    assert status == 200 and body["user_id"] == ALICE and len(body["devices"]) == 2
    connection = body["devices"][alice.device_id]["sessions"][0]["connections"][0]
    assert set(connection) == {"ip", "last_seen", "user_agent"}

    # Devices: create, rename, read, delete one, delete several.
    status, _ = await admin("POST", f"/v2/users/{ALICE}/devices", {"device_id": "ADMINMADE"})
    assert status == 200
    status, _ = await admin(
        "PUT", f"/v2/users/{ALICE}/devices/ADMINMADE", {"display_name": "made by admin"}
    )
    assert status == 200
    status, body = await admin("GET", f"/v2/users/{ALICE}/devices/ADMINMADE")
    assert body["display_name"] == "made by admin" and body["user_id"] == ALICE
    status, body = await admin("PUT", f"/v2/users/{ALICE}/devices/NOPE", {"display_name": "x"})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await admin("POST", f"/v2/users/{ALICE}/delete_devices", {"devices": "x"})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, _ = await admin("DELETE", f"/v2/users/{ALICE}/devices/ADMINMADE")
    assert status == 200
    status, body = await admin("GET", f"/v2/users/{ALICE}/devices/ADMINMADE")
    assert status == 404
    others = [d for d in (await admin("GET", f"/v2/users/{ALICE}/devices"))[1]["devices"]]
    other_id = next(d["device_id"] for d in others if d["device_id"] != alice.device_id)
    status, _ = await admin("POST", f"/v2/users/{ALICE}/delete_devices", {"devices": [other_id]})
    assert status == 200
    status, body = await admin("GET", f"/v2/users/{ALICE}/devices")
    assert [d["device_id"] for d in body["devices"]] == [alice.device_id]

    # Login as the user: a working token for them; not as oneself.
    status, body = await admin("POST", f"/v1/users/{ALICE}/login", {})
    assert status == 200
    puppet = server.new_client("alice")
    puppet.access_token = body["access_token"]
    puppet.user_id = ALICE
    who = await puppet.whoami()
    assert isinstance(who, WhoamiResponse) and who.user_id == ALICE
    status, body = await admin("POST", f"/v1/users/{BOSS}/login", {})
    assert status == 400

    status, _ = await admin(
        "POST", f"/v1/reset_password/{ALICE}", {"new_password": "a fresh long password"}
    )
    assert status == 200
    assert not isinstance(await alice.whoami(), WhoamiResponse)
    assert isinstance(
        await server.new_client("alice").login("a fresh long password"), LoginResponse
    )
    [entry] = await admin.audit("reset_password")
    assert entry["details"] == {"password_changed": True, "logout_devices": True}


async def test_rooms_pushers_account_data_of_a_user(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    bob = await server.client("bob")
    joined = await create_room(alice)
    left = await create_room(alice)
    await alice.room_leave(left)
    await create_room(bob, invite=[ALICE])
    await server.request(
        "PUT",
        f"/_matrix/client/v3/user/{ALICE}/account_data/org.example.setting",
        token=alice.access_token,
        json={"on": True},
    )

    status, body = await admin("GET", f"/v1/users/{ALICE}/joined_rooms")
    assert (status, body) == (200, {"joined_rooms": [joined], "total": 1})
    status, body = await admin("GET", f"/v1/users/{ALICE}/memberships")
    assert sorted(body["memberships"].values()) == ["invite", "join", "leave"]
    assert body["memberships"][left] == "leave"
    status, body = await admin("GET", f"/v1/users/{ALICE}/pushers")
    assert (status, body) == (200, {"pushers": [], "total": 0})
    pusher = {
        "app_id": "org.example.app",
        "pushkey": "device-push-key",
        "kind": "http",
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"},
    }
    status, _ = await server.request(
        "POST", "/_matrix/client/v3/pushers/set", token=alice.access_token, json=pusher
    )
    assert status == 200
    status, body = await admin("GET", f"/v1/users/{ALICE}/pushers")
    assert body["total"] == 1 and body["pushers"][0]["pushkey"] == "device-push-key"
    assert body["pushers"][0]["data"]["url"] == pusher["data"]["url"]
    status, body = await admin("GET", f"/v1/users/{ALICE}/accountdata")
    assert body["account_data"]["global"]["org.example.setting"] == {"on": True}
    # Reading someone's account data is audited.
    [entry] = await admin.audit("account_data")
    assert entry["target"] == ALICE

    status, body = await admin("GET", "/v1/users/@ghost:test.local/pushers")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # Deactivation stops pushes to the account's phones.
    await admin("POST", f"/v1/deactivate/{ALICE}", {})
    status, body = await admin("GET", f"/v1/users/{ALICE}/pushers")
    assert body == {"pushers": [], "total": 0}


async def test_flags_suspend_shadow_ban_ratelimit_username(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    room_id = await create_room(alice)

    status, body = await admin("PUT", f"/v1/suspend/{ALICE}", {"suspend": "yes"})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await admin("PUT", f"/v1/suspend/{ALICE}", {"suspend": True})
    assert (status, body) == (200, {f"user_{ALICE}_suspended": True})
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    assert isinstance(sent, RoomSendError) and sent.status_code == "M_USER_SUSPENDED"
    assert isinstance(await alice.sync(timeout=0), SyncResponse)  # reading still works
    status, body = await admin("GET", f"/v2/users/{ALICE}")
    assert body["suspended"] is True
    await admin("PUT", f"/v1/suspend/{ALICE}", {"suspend": False})
    await send_text(alice, room_id, "back")

    status, _ = await admin("POST", f"/v1/users/{ALICE}/shadow_ban")
    assert status == 200
    assert (await admin("GET", f"/v2/users/{ALICE}"))[1]["shadow_banned"] is True
    await admin("DELETE", f"/v1/users/{ALICE}/shadow_ban")
    assert (await admin("GET", f"/v2/users/{ALICE}"))[1]["shadow_banned"] is False

    status, body = await admin("GET", f"/v1/users/{ALICE}/override_ratelimit")
    assert (status, body) == (200, {})
    status, body = await admin(
        "POST", f"/v1/users/{ALICE}/override_ratelimit", {"messages_per_second": -1}
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await admin(
        "POST", f"/v1/users/{ALICE}/override_ratelimit", {"messages_per_second": 0}
    )
    assert body == {"messages_per_second": 0, "burst_count": 0}
    status, body = await admin("GET", f"/v1/users/{ALICE}/override_ratelimit")
    assert body == {"messages_per_second": 0, "burst_count": 0}
    await admin("DELETE", f"/v1/users/{ALICE}/override_ratelimit")
    assert (await admin("GET", f"/v1/users/{ALICE}/override_ratelimit"))[1] == {}

    status, body = await admin("GET", "/v1/username_available?username=free")
    assert (status, body) == (200, {"available": True})
    status, body = await admin("GET", "/v1/username_available?username=alice")
    assert (status, body["errcode"]) == (400, "M_USER_IN_USE")
    status, body = await admin("GET", "/v1/username_available?username=bad%20name")
    assert (status, body["errcode"]) == (400, "M_INVALID_USERNAME")

    # Locking logs the user out; their next login answers M_USER_LOCKED.
    status, body = await admin("PUT", f"/v2/users/{ALICE}", {"locked": True})
    assert status == 200 and body["locked"] is True
    assert not isinstance(await alice.whoami(), WhoamiResponse)
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/login",
        json={"type": "m.login.password", "user": "alice", "password": PASSWORD},
    )
    assert (status, body["errcode"], body["soft_logout"]) == (401, "M_USER_LOCKED", True)
    # A token issued before the lock (here: planted directly) stops working too.
    await server.db.execute(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts)"
        " VALUES ($1, $2, 'OLD', 0)",
        hash_token("old-token"),
        ALICE,
    )
    status, body = await server.request(
        "GET", "/_matrix/client/v3/account/whoami", token="old-token"
    )
    assert (status, body["errcode"], body["soft_logout"]) == (401, "M_USER_LOCKED", True)
    await admin("PUT", f"/v2/users/{ALICE}", {"locked": False})
    assert isinstance(await server.login("alice"), object)


async def _send_raw(server, client, room_id: str, txn: str) -> tuple[int, str | None]:
    status, body = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
        token=client.access_token,
        json={"msgtype": "m.text", "body": txn},
    )
    return status, body.get("errcode")


async def test_shadow_ban_and_ratelimit_override_take_effect(make_server):
    generous = {"per_second": 1000, "burst": 10000}
    server, admin = await admin_server(
        make_server,
        rate_limits={
            "enabled": True,
            "per_user": {"per_second": 0.001, "burst": 3},
            "per_ip": generous,
            "login": generous,
            "register": generous,
        },
    )
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(admin.client, visibility=RoomVisibility.public)
    assert isinstance(await alice.join(room_id), JoinResponse)  # one of alice's three
    await send_text(alice, room_id, "one")
    await send_text(alice, room_id, "two")
    # Raw HTTP: nio would wait out retry_after_ms and try again.
    assert await _send_raw(server, alice, room_id, "t3") == (429, "M_LIMIT_EXCEEDED")

    # An override of 0/0 lifts the limit for alice alone.
    await admin("POST", f"/v1/users/{ALICE}/override_ratelimit", {})
    for i in range(5):
        await send_text(alice, room_id, f"free {i}")
    await admin("DELETE", f"/v1/users/{ALICE}/override_ratelimit")
    assert await _send_raw(server, alice, room_id, "t9") == (429, "M_LIMIT_EXCEEDED")

    # Shadow-banned: bob's sends look successful to him but reach nobody.
    assert isinstance(await bob.join(room_id), JoinResponse)
    await admin("POST", "/v1/users/@bob:test.local/shadow_ban")
    fake = await send_text(bob, room_id, "spam")
    assert await server.db.fetchval("SELECT count(*) FROM events WHERE event_id = $1", fake) == 0
    await admin("DELETE", "/v1/users/@bob:test.local/shadow_ban")
    real = await send_text(bob, room_id, "hello again")
    assert await server.db.fetchval("SELECT count(*) FROM events WHERE event_id = $1", real) == 1


async def test_client_whois_for_oneself_or_an_admin(make_server):
    """GET /v3/admin/whois (admin.yaml): users look themselves up, server admins anyone
    (audited); anyone else is refused before the lookup (no user enumeration)."""
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    bob = await server.client("bob")
    path = "/_matrix/client/v3/admin/whois/"
    status, body = await server.request("GET", path + ALICE, token=alice.access_token)
    assert status == 200 and body["user_id"] == ALICE
    connection = body["devices"][alice.device_id]["sessions"][0]["connections"][0]
    assert set(connection) == {"ip", "last_seen", "user_agent"}
    for target in (ALICE, "@nobody:test.local"):
        status, body = await server.request("GET", path + target, token=bob.access_token)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.request("GET", path + ALICE, token=admin.token)
    assert status == 200 and set(body["devices"]) == {alice.device_id}
    status, body = await server.request("GET", path + "@nobody:test.local", token=admin.token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    audited = await admin.audit("whois")
    assert [(e["admin"], e["target"]) for e in audited] == [(BOSS, ALICE)]
