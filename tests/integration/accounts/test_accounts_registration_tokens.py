"""Token-authenticated registration and the Synapse admin API that manages tokens."""

from nio import RegisterResponse

from tests.harness import PASSWORD
from tests.schema import assert_matches_schema

ADMIN_API = "/_synapse/admin/v1/registration_tokens"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity?token="


async def token_server(make_server):
    return await make_server(registration={"open": False}, admins=["@admin:test.local"])


async def admin_token(server) -> str:
    await server.hs.db.execute(
        "INSERT INTO users (user_id, password_hash, created_ts) VALUES ('@admin:test.local', NULL, 0)"
    )
    from homeserver.http.auth import hash_token

    await server.hs.db.execute(
        "INSERT INTO access_tokens VALUES ($1, '@admin:test.local', 'ADMINDEV', 0)",
        hash_token("admin-token"),
    )
    return "admin-token"


async def test_token_lifecycle_and_registration(make_server):
    server = await token_server(make_server)
    admin = await admin_token(server)

    # Closed, and no token exists yet: registration is refused outright.
    status, body = await server.request("POST", "/_matrix/client/v3/register", json={})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"

    status, created = await server.request(
        "POST", ADMIN_API + "/new", token=admin, json={"token": "welcome", "uses_allowed": 1}
    )
    assert status == 200, created
    assert created == {
        "token": "welcome",
        "uses_allowed": 1,
        "pending": 0,
        "completed": 0,
        "expiry_time": None,
    }
    status, body = await server.request("GET", VALIDITY + "welcome")
    assert status == 200 and body == {"valid": True}
    assert_matches_schema(
        "registration_tokens.yaml",
        "/register/m.login.registration_token/validity",
        "get",
        200,
        body,
    )

    # Without a token the flow is offered but not satisfied by a dummy stage.
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/register",
        json={"username": "nobody", "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
    )
    assert status == 401 and body["flows"] == [
        {"stages": ["m.login.registration_token", "m.login.dummy"]}
    ]
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/register",
        json={
            "username": "nobody",
            "password": PASSWORD,
            "auth": {"type": "m.login.registration_token", "token": "bogus"},
        },
    )
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"

    client = server.new_client("newcomer")
    resp = await client.register_with_token("newcomer", PASSWORD, "welcome")
    assert isinstance(resp, RegisterResponse), resp
    status, row = await server.request("GET", f"{ADMIN_API}/welcome", token=admin)
    assert status == 200 and row["completed"] == 1
    status, body = await server.request("GET", VALIDITY + "welcome")
    assert body == {"valid": False}

    # Spent: a second registration with it fails and stores nothing.
    users = await server.db.fetchval("SELECT count(*) FROM users")
    second = server.new_client("latecomer")
    resp = await second.register_with_token("latecomer", PASSWORD, "welcome")
    assert not isinstance(resp, RegisterResponse)
    assert await server.db.fetchval("SELECT count(*) FROM users") == users

    status, listed = await server.request("GET", ADMIN_API + "?valid=false", token=admin)
    assert status == 200 and [t["token"] for t in listed["registration_tokens"]] == ["welcome"]
    status, _ = await server.request("DELETE", f"{ADMIN_API}/welcome", token=admin)
    assert status == 200
    status, body = await server.request("GET", f"{ADMIN_API}/welcome", token=admin)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_admin_api_checks(make_server):
    server = await token_server(make_server)
    admin = await admin_token(server)
    # Registration tokens only: open a token, register a normal user with it.
    status, created = await server.request(
        "POST", ADMIN_API + "/new", token=admin, json={"length": 12}
    )
    assert status == 200 and len(created["token"]) == 12
    client = server.new_client("plain")
    assert isinstance(
        await client.register_with_token("plain", PASSWORD, created["token"]), RegisterResponse
    )

    status, body = await server.request("GET", ADMIN_API, token=client.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    for bad in (
        {"token": "has space"},
        {"uses_allowed": -1},
        {"expiry_time": "soon"},
        {"length": 0},
    ):
        status, body = await server.request("POST", ADMIN_API + "/new", token=admin, json=bad)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", bad
    status, body = await server.request(
        "POST", ADMIN_API + "/new", token=admin, json={"token": created["token"]}
    )
    assert status == 400
    assert await server.db.fetchval("SELECT count(*) FROM registration_tokens") == 1
