"""Registration: nio's one-step dummy flow, the UIA challenge, tokens, and bad input."""

import hashlib
import hmac

from nio import RegisterResponse

from tests.harness import PASSWORD
from tests.schema import assert_matches_schema

REGISTER = "/_matrix/client/v3/register"


async def count_users(server) -> int:
    return await server.db.fetchval("SELECT count(*) FROM users")


async def test_nio_registers_in_one_step(server):
    client = server.new_client("alice")
    resp = await client.register("alice", PASSWORD, device_name="laptop")
    assert isinstance(resp, RegisterResponse), resp
    assert resp.user_id == "@alice:test.local"
    assert len(resp.device_id) == 10 and resp.device_id.isupper() and resp.device_id.isalpha()
    row = await server.db.fetchrow(
        "SELECT display_name FROM devices WHERE user_id = $1", "@alice:test.local"
    )
    assert row["display_name"] == "laptop"
    # Only the token's hash is stored.
    tokens = await server.db.fetch("SELECT token_hash FROM access_tokens")
    assert len(tokens) == 1 and tokens[0]["token_hash"] != resp.access_token.encode()
    hashed = await server.db.fetchval("SELECT password_hash FROM users")
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed


async def test_register_wire_shape_and_uia_challenge(server):
    status, body = await server.request("POST", REGISTER, json={"username": "bob"})
    assert status == 401
    assert_matches_schema("registration.yaml", "/register", "post", 401, body)
    assert body["flows"] == [{"stages": ["m.login.dummy"]}] and body["session"]
    assert "errcode" not in body
    assert await count_users(server) == 0

    status, body = await server.request(
        "POST",
        REGISTER,
        json={
            "username": "bob",
            "password": PASSWORD,
            "device_id": "MYDEVICE",
            "auth": {"type": "m.login.dummy", "session": body["session"]},
        },
    )
    assert status == 200, body
    assert_matches_schema("registration.yaml", "/register", "post", 200, body)
    assert body["device_id"] == "MYDEVICE" and body["user_id"] == "@bob:test.local"
    status, who = await server.request(
        "GET", "/_matrix/client/v3/account/whoami", token=body["access_token"]
    )
    assert status == 200 and who["device_id"] == "MYDEVICE"


async def test_inhibit_login_creates_no_device(server):
    status, body = await server.request(
        "POST",
        REGISTER,
        json={
            "username": "carol",
            "password": PASSWORD,
            "inhibit_login": True,
            "auth": {"type": "m.login.dummy"},
        },
    )
    assert status == 200 and body["user_id"] == "@carol:test.local"
    assert "access_token" not in body and "device_id" not in body
    assert await server.db.fetchval("SELECT count(*) FROM devices") == 0
    assert await server.db.fetchval("SELECT count(*) FROM access_tokens") == 0


async def test_bad_registrations_store_nothing(server):
    await server.client("taken")
    before = await count_users(server)
    # The successful registration keeps its session (a repeat answers the same account).
    sessions = await server.db.fetchval("SELECT count(*) FROM uia_sessions")
    dummy = {"type": "m.login.dummy"}
    cases = [
        ({"username": "taken", "password": PASSWORD, "auth": dummy}, 400, "M_USER_IN_USE"),
        ({"username": "TAKEN", "password": PASSWORD, "auth": dummy}, 400, "M_USER_IN_USE"),
        ({"username": "bad name!", "password": PASSWORD, "auth": dummy}, 400, "M_INVALID_USERNAME"),
        ({"username": "newline\n", "password": PASSWORD, "auth": dummy}, 400, "M_INVALID_USERNAME"),
        ({"username": "_reserved", "password": PASSWORD, "auth": dummy}, 400, "M_INVALID_USERNAME"),
        ({"username": "x" * 300, "password": PASSWORD, "auth": dummy}, 400, "M_INVALID_USERNAME"),
        ({"username": "weak", "password": "short", "auth": dummy}, 400, "M_WEAK_PASSWORD"),
        ({"username": "nopass", "auth": dummy}, 400, "M_MISSING_PARAM"),
        ({"username": 5, "password": PASSWORD, "auth": dummy}, 400, "M_BAD_JSON"),
        ({"username": "x1", "password": PASSWORD, "auth": "dummy"}, 400, "M_BAD_JSON"),
    ]
    for body, status, errcode in cases:
        got_status, got = await server.request("POST", REGISTER, json=body)
        assert (got_status, got.get("errcode")) == (status, errcode), (body, got)
    got_status, got = await server.request("POST", REGISTER, data=b"{not json")
    assert got_status == 400 and got["errcode"] == "M_NOT_JSON"
    got_status, got = await server.request("POST", REGISTER + "?kind=guest", json={})
    assert got_status == 403 and got["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    assert await count_users(server) == before
    assert await server.db.fetchval("SELECT count(*) FROM uia_sessions") == sessions


async def test_unknown_session_is_rejected(server):
    status, body = await server.request(
        "POST",
        REGISTER,
        json={
            "username": "dave",
            "password": PASSWORD,
            "auth": {"type": "m.login.dummy", "session": "nope"},
        },
    )
    assert status == 400 and body["errcode"] == "M_UNKNOWN"
    assert await count_users(server) == 0


async def test_registration_closed(make_server):
    server = await make_server(registration={"open": False})
    status, body = await server.request(
        "POST",
        REGISTER,
        json={"username": "eve", "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert await count_users(server) == 0


async def test_username_available(server):
    await server.client("frank")
    path = "/_matrix/client/v3/register/available?username="
    status, body = await server.request("GET", path + "george")
    assert status == 200 and body == {"available": True}
    assert_matches_schema("registration.yaml", "/register/available", "get", 200, body)
    status, body = await server.request("GET", path + "frank")
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"
    status, body = await server.request("GET", path + "Not%20Valid")
    assert status == 400 and body["errcode"] == "M_INVALID_USERNAME"


def _mac(secret, nonce, user, password, admin):
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{user}\0{password}\0{'admin' if admin else 'notadmin'}".encode())
    return mac.hexdigest()


async def test_shared_secret_registration(server):
    path = "/_synapse/admin/v1/register"
    status, body = await server.request("GET", path)
    assert status == 200
    nonce = body["nonce"]
    wrong = {"nonce": nonce, "username": "root", "password": PASSWORD, "admin": True}
    status, body = await server.request(
        "POST", path, json={**wrong, "mac": _mac("wrong-secret", nonce, "root", PASSWORD, True)}
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert await count_users(server) == 0

    good = {**wrong, "mac": _mac("test-shared-secret", nonce, "root", PASSWORD, True)}
    status, body = await server.request("POST", path, json=good)
    assert status == 200 and body["user_id"] == "@root:test.local" and body["access_token"]
    assert await server.db.fetchval("SELECT is_admin FROM users WHERE user_id = '@root:test.local'")
    # A nonce authorises one registration only.
    status, body = await server.request("POST", path, json={**good, "username": "root"})
    assert status == 400
    client = await server.login("root")
    assert client.user_id == "@root:test.local"


async def test_registration_session_remembers_parameters_and_is_idempotent(server):
    # The first request gives the parameters; the stage sends only `auth`.
    status, body = await server.request(
        "POST",
        REGISTER,
        json={
            "username": "remy",
            "password": PASSWORD,
            "device_id": "XYZZY",
            "initial_device_display_name": "phone",
        },
    )
    assert status == 401
    session = body["session"]
    stage = {"auth": {"type": "m.login.dummy", "session": session}}
    status, first = await server.request("POST", REGISTER, json=stage)
    assert status == 200
    assert first["user_id"] == "@remy:test.local" and first["device_id"] == "XYZZY"
    name = await server.db.fetchval(
        "SELECT display_name FROM devices WHERE user_id = $1", first["user_id"]
    )
    assert name == "phone"
    # The password of the first request is the account's.
    login = await server.login("remy")
    assert login.user_id == first["user_id"]
    # The same request on the same session: the same account, no second one.
    status, again = await server.request("POST", REGISTER, json=stage)
    assert status == 200
    assert again["user_id"] == first["user_id"] and again["access_token"]
    assert await count_users(server) == 1
    # The remembered password is stored only as a hash.
    results = await server.db.fetchval(
        "SELECT results::text FROM uia_sessions WHERE session_id = $1", session
    )
    assert PASSWORD not in results


async def test_registration_without_username_is_idempotent(server):
    status, body = await server.request("POST", REGISTER, json={"password": PASSWORD})
    stage = {"password": PASSWORD, "auth": {"type": "m.login.dummy", "session": body["session"]}}
    status, first = await server.request("POST", REGISTER, json=stage)
    assert status == 200
    status, again = await server.request("POST", REGISTER, json=stage)
    assert status == 200 and again["user_id"] == first["user_id"]
    assert await count_users(server) == 1
