"""Reports (the client endpoints and the admin API that reads them), server notices, and
the audit log: admins only, bad input answers Matrix errors and changes nothing."""

from __future__ import annotations

from nio import InviteMemberEvent, JoinResponse, RoomMessageText, SyncResponse

from homeserver.admin.routes.register import expected_mac
from tests.harness import PASSWORD
from tests.integration.admin.helpers import (
    BOSS,
    admin_server,
    create_room,
    forbidden_for,
    send_text,
)

V3 = "/_matrix/client/v3"


async def _count(server, table: str) -> int:
    return await server.db.fetchval(f"SELECT count(*) FROM {table}")


async def test_reports_from_clients_to_admins(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    bob = await server.client("bob")
    eve = await server.client("eve")
    room_id = await create_room(alice, name="Town square", invite=[bob.user_id])
    await bob.join(room_id)
    bad = await send_text(alice, room_id, "offensive")
    token = bob.access_token

    # Bad input and unseeable events: Matrix errors, nothing stored.
    cases = [
        (f"/rooms/{room_id}/report/{bad}", eve.access_token, {"reason": "x"}, 404, "M_NOT_FOUND"),
        (f"/rooms/{room_id}/report/$missing", token, {"reason": "x"}, 404, "M_NOT_FOUND"),
        (f"/rooms/{room_id}/report/{bad}", token, {"reason": 5}, 400, "M_BAD_JSON"),
        (f"/rooms/{room_id}/report/{bad}", token, {"score": -500}, 400, "M_BAD_JSON"),
        (f"/rooms/{room_id}/report", token, {}, 400, "M_MISSING_PARAM"),
        ("/rooms/!nope:test.local/report", token, {"reason": "x"}, 404, "M_NOT_FOUND"),
        ("/users/@ghost:test.local/report", token, {"reason": "x"}, 404, "M_NOT_FOUND"),
        ("/users/not-a-user/report", token, {"reason": "x"}, 400, "M_INVALID_PARAM"),
        (f"/users/{alice.user_id}/report", token, {}, 400, "M_MISSING_PARAM"),
    ]
    for path, who, body, status, errcode in cases:
        got, resp = await server.request("POST", V3 + path, token=who, json=body)
        assert (got, resp.get("errcode")) == (status, errcode), (path, resp)
    for table in ("event_reports", "room_reports", "user_reports"):
        assert await _count(server, table) == 0

    status, body = await server.request(
        "POST", f"{V3}/rooms/{room_id}/report/{bad}", token=token, json={"reason": "rude"}
    )
    assert (status, body) == (200, {})
    status, _ = await server.request(
        "POST", f"{V3}/rooms/{room_id}/report/{bad}", token=eve.access_token, json={}
    )
    assert status == 404  # eve is not in the room
    status, _ = await server.request(
        "POST", f"{V3}/rooms/{room_id}/report", token=eve.access_token, json={"reason": "spam"}
    )
    assert status == 200  # reporting a room needs no membership
    status, _ = await server.request(
        "POST", f"{V3}/users/{alice.user_id}/report", token=token, json={"reason": "troll"}
    )
    assert status == 200

    await forbidden_for(
        server,
        token,
        [
            ("GET", "/v1/event_reports"),
            ("GET", "/v1/event_reports/1"),
            ("DELETE", "/v1/event_reports/1"),
            ("GET", "/v1/room_reports"),
            ("GET", "/v1/user_reports"),
            ("GET", "/v1/audit_log"),
        ],
    )

    status, body = await admin("GET", "/v1/event_reports")
    assert status == 200 and body["total"] == 1
    [report] = body["event_reports"]
    assert report["event_id"] == bad and report["user_id"] == bob.user_id
    assert report["sender"] == alice.user_id and report["reason"] == "rude"
    assert report["name"] == "Town square" and report["room_id"] == room_id
    assert set(report) == {
        "id",
        "received_ts",
        "room_id",
        "name",
        "event_id",
        "user_id",
        "reason",
        "score",
        "sender",
        "canonical_alias",
    }
    status, body = await admin("GET", f"/v1/event_reports?event_sender_user_id={bob.user_id}")
    assert body["total"] == 0
    status, body = await admin("GET", f"/v1/event_reports/{report['id']}")
    assert body["event_json"]["content"]["body"] == "offensive"
    status, body = await admin("GET", "/v1/event_reports/abc")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await admin("GET", "/v1/event_reports?dir=sideways")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

    status, body = await admin("GET", "/v1/room_reports")
    [room_report] = body["room_reports"]
    assert room_report["room_id"] == room_id and room_report["user_id"] == eve.user_id
    assert room_report["name"] == "Town square" and body["total"] == 1
    status, body = await admin("GET", "/v1/user_reports")
    assert [(r["target_user_id"], r["reason"]) for r in body["user_reports"]] == [
        (alice.user_id, "troll")
    ]

    status, body = await admin("DELETE", f"/v1/event_reports/{report['id']}")
    assert (status, body) == (200, {})
    status, body = await admin("DELETE", f"/v1/event_reports/{report['id']}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert await _count(server, "event_reports") == 0


async def test_server_notice_reaches_the_users_sync(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    first = await alice.sync(timeout=0)
    assert isinstance(first, SyncResponse)

    for body, status, errcode in (
        ({"content": {"msgtype": "m.text", "body": "x"}}, 400, "M_MISSING_PARAM"),
        ({"user_id": alice.user_id}, 400, "M_MISSING_PARAM"),
        ({"user_id": alice.user_id, "content": "text"}, 400, "M_BAD_JSON"),
        ({"user_id": "@ghost:test.local", "content": {"body": "x"}}, 404, "M_NOT_FOUND"),
        ({"user_id": "@x:elsewhere.example", "content": {"body": "x"}}, 400, "M_UNKNOWN"),
    ):
        got, resp = await admin("POST", "/v1/send_server_notice", body)
        assert (got, resp["errcode"]) == (status, errcode), (body, resp)
    assert await _count(server, "server_notice_rooms") == 0
    await forbidden_for(server, alice.access_token, [("POST", "/v1/send_server_notice")])

    notice = {"msgtype": "m.text", "body": "Maintenance tonight at 22:00"}
    status, body = await admin(
        "POST", "/v1/send_server_notice", {"user_id": alice.user_id, "content": notice}
    )
    assert status == 200 and body["event_id"].startswith("$")

    sync = await alice.sync(timeout=0, since=first.next_batch)
    assert isinstance(sync, SyncResponse)
    [(room_id, invited)] = sync.rooms.invite.items()
    inviter = [e for e in invited.invite_state if isinstance(e, InviteMemberEvent)]
    assert {e.sender for e in inviter} == {"@server:test.local"}
    assert isinstance(await alice.join(room_id), JoinResponse)
    sync = await alice.sync(timeout=0, since=sync.next_batch, full_state=True)
    timeline = sync.rooms.join[room_id].timeline.events
    texts = [e.body for e in timeline if isinstance(e, RoomMessageText)]
    assert texts == ["Maintenance tonight at 22:00"]
    tags = await server.request(
        "GET", f"{V3}/user/{alice.user_id}/rooms/{room_id}/tags", token=alice.access_token
    )
    assert tags == (200, {"tags": {"m.server_notice": {}}})

    # The next notice goes to the same room; users cannot speak there.
    status, body = await admin(
        "PUT",
        "/v1/send_server_notice/txn1",
        {"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "Done"}},
    )
    assert status == 200
    retried = await admin(
        "PUT",
        "/v1/send_server_notice/txn1",
        {"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "Done"}},
    )
    assert retried == (200, {"event_id": body["event_id"]})  # the same notice, sent once
    assert await _count(server, "server_notice_rooms") == 1
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    assert getattr(sent, "status_code", None) == "M_FORBIDDEN"
    entries = await admin.audit("send_server_notice")
    assert [e["target"] for e in entries] == [alice.user_id] * 3
    assert entries[0]["details"]["event_id"] == body["event_id"]
    assert "Maintenance" not in str(entries)  # the notice's content is not recorded
    assert {e["details"]["type"] for e in entries} == {"m.room.message"}


async def test_audit_log_and_server_version(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    await admin("PUT", f"/v1/users/{alice.user_id}/admin", {"admin": True})
    await admin("POST", f"/v1/reset_password/{alice.user_id}", {"new_password": "long enough pw"})
    await admin("GET", "/v2/users")  # listing is not an action: not audited

    status, body = await admin("GET", "/v1/audit_log")
    assert status == 200 and body["total"] == 2
    newest, oldest = body["entries"]
    assert (newest["action"], newest["target"], newest["admin"]) == (
        "reset_password",
        alice.user_id,
        BOSS,
    )
    assert oldest["action"] == "set_admin" and oldest["details"] == {"admin": True}
    assert isinstance(oldest["ts"], int)
    assert "long enough pw" not in str(body)
    status, body = await admin("GET", "/v1/audit_log?dir=f&limit=1")
    assert [e["action"] for e in body["entries"]] == ["set_admin"] and body["next_token"] == 1
    status, body = await admin("GET", f"/v1/audit_log?target={alice.user_id}&action=set_admin")
    assert body["total"] == 1
    status, body = await admin("GET", "/v1/audit_log?limit=-5")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

    # Shared-secret registration (register_new_matrix_user) is audited; no secret is.
    _, nonce = await server.request("GET", "/_synapse/admin/v1/register")
    mac = expected_mac(b"test-shared-secret", nonce["nonce"], "sam", PASSWORD, False, None)
    status, _ = await server.request(
        "POST",
        "/_synapse/admin/v1/register",
        json={"nonce": nonce["nonce"], "username": "sam", "password": PASSWORD, "mac": mac},
    )
    assert status == 200
    [entry] = await admin.audit("register")
    assert (entry["admin"], entry["target"], entry["details"]) == (
        "(shared secret)",
        "@sam:test.local",
        {"admin": False},
    )
    status, body = await admin("GET", "/v1/audit_log?limit=1000")
    assert PASSWORD not in str(body) and mac not in str(body) and nonce["nonce"] not in str(body)

    status, body = await server.request("GET", "/_synapse/admin/v1/server_version")
    assert status == 200 and isinstance(body["server_version"], str)


async def test_registration_token_update(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    status, token = await admin("POST", "/v1/registration_tokens/new", {"token": "welcome"})
    assert status == 200 and token["uses_allowed"] is None
    await forbidden_for(server, alice.access_token, [("PUT", "/v1/registration_tokens/welcome")])
    for bad in ({"uses_allowed": -1}, {"expiry_time": "soon"}, {"uses_allowed": True}):
        status, body = await admin("PUT", "/v1/registration_tokens/welcome", bad)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), bad
    status, body = await admin("GET", "/v1/registration_tokens/welcome")
    assert body["uses_allowed"] is None and body["expiry_time"] is None

    status, body = await admin("PUT", "/v1/registration_tokens/welcome", {"uses_allowed": 2})
    assert (status, body["uses_allowed"], body["expiry_time"]) == (200, 2, None)
    status, body = await admin(
        "PUT", "/v1/registration_tokens/welcome", {"expiry_time": 4102444800000}
    )
    assert (body["uses_allowed"], body["expiry_time"]) == (2, 4102444800000)
    status, body = await admin("PUT", "/v1/registration_tokens/welcome", {"uses_allowed": None})
    assert body["uses_allowed"] is None
    status, body = await admin("PUT", "/v1/registration_tokens/unknown", {"uses_allowed": 1})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # Tokens are credentials: the audit log records changes to them, never the token.
    entries = (await admin("GET", "/v1/audit_log?limit=100"))[1]["entries"]
    assert {e["action"] for e in entries} == {"create_token", "update_token"}
    assert "welcome" not in str(entries)
