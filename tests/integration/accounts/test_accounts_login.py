"""Login, logout and whoami with nio; the wire errors with raw HTTP."""

from nio import LoginInfoResponse, LogoutResponse, WhoamiResponse

from tests.harness import PASSWORD
from tests.schema import assert_matches_schema

LOGIN = "/_matrix/client/v3/login"


async def test_login_flows(server):
    client = server.new_client("anyone")
    resp = await client.login_info()
    assert isinstance(resp, LoginInfoResponse) and "m.login.password" in resp.flows
    status, body = await server.request("GET", LOGIN)
    assert_matches_schema("login.yaml", "/login", "get", 200, body)


async def test_login_whoami_logout(server):
    first = await server.client("alice")
    second = await server.login("alice")
    assert second.device_id != first.device_id
    who = await second.whoami()
    assert isinstance(who, WhoamiResponse)
    assert (who.user_id, who.device_id) == ("@alice:test.local", second.device_id)

    assert isinstance(await second.logout(), LogoutResponse)
    assert not isinstance(await second.whoami(), WhoamiResponse)
    assert (
        await server.db.fetchval(
            "SELECT count(*) FROM devices WHERE device_id = $1", second.device_id
        )
        == 0
    )
    # The other session is untouched.
    assert isinstance(await first.whoami(), WhoamiResponse)


async def test_logout_all(server):
    clients = [await server.client("bob")] + [await server.login("bob") for _ in range(2)]
    assert isinstance(await clients[1].logout(all_devices=True), LogoutResponse)
    for client in clients:
        assert not isinstance(await client.whoami(), WhoamiResponse)
    assert await server.db.fetchval("SELECT count(*) FROM access_tokens") == 0


async def test_login_wire(server):
    await server.client("carol")
    ok = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "@carol:test.local"},
        "password": PASSWORD,
        "device_id": "FIXEDID",
    }
    status, body = await server.request("POST", LOGIN, json=ok)
    assert status == 200, body
    assert_matches_schema("login.yaml", "/login", "post", 200, body)
    assert body["device_id"] == "FIXEDID"
    # Legacy top-level `user`, localpart, any case.
    status, body = await server.request(
        "POST", LOGIN, json={"type": "m.login.password", "user": "Carol", "password": PASSWORD}
    )
    assert status == 200 and body["user_id"] == "@carol:test.local"

    tokens = await server.db.fetchval("SELECT count(*) FROM access_tokens")
    bad = [
        ({**ok, "password": "wrong password"}, 403, "M_FORBIDDEN"),
        ({**ok, "identifier": {"type": "m.id.user", "user": "nobody"}}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.password", "password": PASSWORD}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": "carol"}, 400, "M_MISSING_PARAM"),
        ({"password": PASSWORD, "user": "carol"}, 400, "M_MISSING_PARAM"),
        ({**ok, "type": "m.login.sso"}, 400, "M_UNKNOWN"),
        ({**ok, "password": 12345678}, 400, "M_BAD_JSON"),
        (
            {**ok, "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b"}},
            400,
            "M_UNKNOWN",
        ),
    ]
    for body, status, errcode in bad:
        got_status, got = await server.request("POST", LOGIN, json=body)
        assert (got_status, got.get("errcode")) == (status, errcode), (body, got)
    got_status, got = await server.request("POST", LOGIN, data=b"[]")
    assert got_status == 400 and got["errcode"] == "M_NOT_JSON"
    assert await server.db.fetchval("SELECT count(*) FROM access_tokens") == tokens


async def test_whoami_needs_a_valid_token(server):
    status, body = await server.request("GET", "/_matrix/client/v3/account/whoami")
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"
    status, body = await server.request("GET", "/_matrix/client/v3/account/whoami", token="nope")
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
    client = await server.client()
    status, body = await server.request(
        "GET", "/_matrix/client/v3/account/whoami", token=client.access_token
    )
    assert_matches_schema("whoami.yaml", "/account/whoami", "get", 200, body)
