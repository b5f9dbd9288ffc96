"""External accounts (homeserver/policy, admin API /v1/users/{user_id}/external): no room
creation or invites, hidden from the user directory, co-members only in their own
searches, and 403 once expired; the admin change is audited."""

from __future__ import annotations

import time
from urllib.parse import quote

from nio import RoomCreateResponse

from tests.integration.policy.test_access_rules import mark_external


async def _search(server, client, term: str) -> set[str]:
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/user_directory/search",
        token=client.access_token,
        json={"search_term": term},
    )
    assert status == 200, body
    return {r["user_id"] for r in body["results"]}


async def test_external_accounts(make_server):
    server = await make_server(admins=["@admin:test.local"])
    admin = await server.client("admin")
    alice = await server.client("alice")
    bob = await server.client("bob")
    eve = await server.client("eve")
    # eve is in alice's public lobby; bob is in a public room of his own.
    lobby = (await alice.room_create()).room_id
    await alice.room_put_state(lobby, "m.room.join_rules", {"join_rule": "public"})
    assert getattr(await eve.join(lobby), "room_id", None) == lobby
    own = (await bob.room_create()).room_id
    await bob.room_put_state(own, "m.room.join_rules", {"join_rule": "public"})
    # Before: everyone in a public room is found by everyone.
    assert eve.user_id in await _search(server, bob, "eve")
    assert bob.user_id in await _search(server, eve, "bob")

    answer = await mark_external(server, admin, eve.user_id)
    assert answer == {"user_id": eve.user_id, "external": True, "expires_at": None}

    # Hidden from those who share no room with them ...
    assert eve.user_id not in await _search(server, bob, "eve")
    # ... found by co-members ...
    assert eve.user_id in await _search(server, alice, "eve")
    # ... and they find co-members only.
    assert await _search(server, eve, "bob") == set()
    assert alice.user_id in await _search(server, eve, "alice")
    assert bob.user_id in await _search(server, alice, "bob")

    # No rooms, no DMs, no invites.
    rooms_before = (await eve.joined_rooms()).rooms
    for body in ({}, {"is_direct": True, "invite": [alice.user_id]}):
        status, err = await server.request(
            "POST", "/_matrix/client/v3/createRoom", token=eve.access_token, json=body
        )
        assert status == 403 and err["errcode"] == "M_FORBIDDEN", err
        assert "external" in err["error"]
    assert (await eve.joined_rooms()).rooms == rooms_before
    status, err = await server.request(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(lobby)}/invite",
        token=eve.access_token,
        json={"user_id": bob.user_id},
    )
    assert status == 403 and err["errcode"] == "M_FORBIDDEN", err

    # The change is in the audit log.
    status, log = await server.request(
        "GET", "/_synapse/admin/v1/audit_log?action=set_external", token=admin.access_token
    )
    assert status == 200 and log["entries"][0]["target"] == eve.user_id, log

    # Expired: every request answers 403 ORG_MATRIX_EXPIRED_ACCOUNT (as an account past
    # its validity does, which clients show as such), the optionally authenticated ones
    # too; unmarking lifts it.
    await mark_external(server, admin, eve.user_id, expires_at=int(time.time() * 1000) - 1)
    for path in (
        "/_matrix/client/v3/account/whoami",
        f"/_matrix/client/v3/profile/{quote('@someone:elsewhere.example')}",
    ):
        status, err = await server.request("GET", path, token=eve.access_token)
        assert status == 403 and err["errcode"] == "ORG_MATRIX_EXPIRED_ACCOUNT", (path, err)
    status, _ = await server.request(
        "PUT",
        f"/_synapse/admin/v1/users/{quote(eve.user_id)}/external",
        token=admin.access_token,
        json={"external": False},
    )
    assert status == 200
    status, who = await server.request(
        "GET", "/_matrix/client/v3/account/whoami", token=eve.access_token
    )
    assert status == 200 and who["user_id"] == eve.user_id

    # Expired again, the account may still log out.
    await mark_external(server, admin, eve.user_id, expires_at=int(time.time() * 1000) - 1)
    status, _ = await server.request(
        "POST", "/_matrix/client/v3/logout", token=eve.access_token, json={}
    )
    assert status == 200
    status, err = await server.request(
        "GET", "/_matrix/client/v3/account/whoami", token=eve.access_token
    )
    assert status == 401 and err["errcode"] == "M_UNKNOWN_TOKEN", err


async def test_admin_bad_input_changes_nothing(make_server):
    server = await make_server(admins=["@admin:test.local"])
    admin = await server.client("admin")
    alice = await server.client("alice")
    path = f"/_synapse/admin/v1/users/{quote(alice.user_id)}/external"
    for body, errcode in (
        ({}, "M_MISSING_PARAM"),
        ({"external": "yes"}, "M_BAD_JSON"),
        ({"external": True, "expires_at": "soon"}, "M_BAD_JSON"),
        ({"external": True, "expires_at": -5}, "M_INVALID_PARAM"),
    ):
        status, err = await server.request("PUT", path, token=admin.access_token, json=body)
        assert status == 400 and err["errcode"] == errcode, (body, err)
    # Not an admin: refused.
    status, err = await server.request(
        "PUT", path, token=alice.access_token, json={"external": True}
    )
    assert status == 403 and err["errcode"] == "M_FORBIDDEN"
    status, err = await server.request(
        "PUT",
        "/_synapse/admin/v1/users/%40nobody%3Atest.local/external",
        token=admin.access_token,
        json={"external": True},
    )
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"
    status, state = await server.request("GET", path, token=admin.access_token)
    assert state == {"user_id": alice.user_id, "external": False, "expires_at": None}
    # alice still creates rooms.
    assert isinstance(await alice.room_create(), RoomCreateResponse)
