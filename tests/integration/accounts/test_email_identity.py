"""E-mail identity through a real SMTP server (aiosmtpd): registration with an e-mail
stage, adding and deleting an address, password reset by e-mail, the domain rules and the
identity map, send_attempt idempotency, rate limits, and bad input that changes nothing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from nio import LoginError, LoginResponse, RegisterResponse

from tests.harness import PASSWORD
from tests.integration.accounts.smtp import Inbox
from tests.schema import assert_matches_schema

V3 = "/_matrix/client/v3"
EMAIL_STAGE = "m.login.email.identity"


@pytest.fixture
async def inbox():
    box = await Inbox().start()
    yield box
    await box.stop()


async def email_server(make_server, inbox, **email):
    return await make_server(email=inbox.config(**email))


async def request_token(server, kind, address, secret="s3cret", attempt=1, token=None):
    path = {
        "register": f"{V3}/register/email/requestToken",
        "add": f"{V3}/account/3pid/email/requestToken",
        "password": f"{V3}/account/password/email/requestToken",
    }[kind]
    return await server.request(
        "POST",
        path,
        token=token,
        json={"client_secret": secret, "email": address, "send_attempt": attempt},
    )


async def open_link(server, link: str) -> tuple[int, dict]:
    """What the browser does with the mail's link (on this test server's address)."""
    url = urlparse(link)
    status, body = await server.request("GET", url.path + "?" + url.query)
    return status, body


def link_params(link: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}


async def session_count(server) -> int:
    return await server.db.fetchval("SELECT count(*) FROM threepid_sessions")


async def register_by_email(server, inbox, address, username, secret="s3cret"):
    status, body = await request_token(server, "register", address, secret)
    assert status == 200, body
    sid = body["sid"]
    status, _ = await open_link(server, inbox.last_link(address.lower()))
    assert status == 200
    status, challenge = await server.request(
        "POST", f"{V3}/register", json={"username": username, "password": PASSWORD}
    )
    assert status == 401 and [EMAIL_STAGE] in [f["stages"] for f in challenge["flows"]]
    return await server.request(
        "POST",
        f"{V3}/register",
        json={
            "username": username,
            "password": PASSWORD,
            "auth": {
                "type": EMAIL_STAGE,
                "session": challenge["session"],
                "threepid_creds": {"sid": sid, "client_secret": secret},
            },
        },
    )


async def test_email_is_offered_only_when_configured(make_server, inbox):
    plain = await make_server()
    status, body = await plain.request("POST", f"{V3}/register", json={})
    assert status == 401 and all(EMAIL_STAGE not in f["stages"] for f in body["flows"])
    status, body = await request_token(plain, "register", "a@example.org")
    assert status == 400 and body["errcode"] == "M_THREEPID_MEDIUM_NOT_SUPPORTED"
    status, body = await plain.request(
        "GET", "/_matrix/identity/api/v1/info?medium=email&address=a@example.org"
    )
    assert status == 404 and body["errcode"] == "M_UNRECOGNIZED"
    client = await plain.client()
    caps = await plain.request("GET", f"{V3}/capabilities", token=client.access_token)
    assert caps[1]["capabilities"]["m.3pid_changes"] == {"enabled": False}
    assert await session_count(plain) == 0

    server = await email_server(make_server, inbox)
    status, body = await server.request("POST", f"{V3}/register", json={})
    assert [f["stages"] for f in body["flows"]] == [["m.login.dummy"], [EMAIL_STAGE]]
    client = await server.client()
    caps = await server.request("GET", f"{V3}/capabilities", token=client.access_token)
    assert caps[1]["capabilities"]["m.3pid_changes"] == {"enabled": True}

    required = await email_server(make_server, inbox, registration_requires_email=True)
    status, body = await required.request("POST", f"{V3}/register", json={})
    assert [f["stages"] for f in body["flows"]] == [[EMAIL_STAGE]]
    # nio's plain registration (m.login.dummy) is refused there, creating nothing.
    refused = await required.new_client("nomail").register("nomail", PASSWORD)
    assert not isinstance(refused, RegisterResponse)
    assert not await required.hs.accounts.users.user_exists("@nomail:test.local")


async def test_register_with_email_then_login_with_nio(make_server, inbox):
    server = await email_server(make_server, inbox)
    status, body = await register_by_email(server, inbox, "Alice@Example.org", "alice")
    assert status == 200, body
    assert body["user_id"] == "@alice:test.local"
    # The mail: from the configured sender, to the canonical address; no secret logged.
    mail = inbox.to("alice@example.org")[0]
    assert mail["From"] == "Test HS <noreply@test.local>"
    assert "/_matrix/client/unstable/registration/email/submit_token" in inbox.body(mail)

    status, listed = await server.request("GET", f"{V3}/account/3pid", token=body["access_token"])
    assert status == 200 and [(t["medium"], t["address"]) for t in listed["threepids"]] == [
        ("email", "alice@example.org")
    ]
    assert_matches_schema("administrative_contact.yaml", "/account/3pid", "get", 200, listed)
    client = await server.login("alice")
    assert client.user_id == "@alice:test.local"

    # Logging in by address (Tchap's clients do), in any case; an unknown address is a
    # wrong password, a malformed one a bad parameter.
    def by_email(address, password=PASSWORD):
        identifier = {"type": "m.id.thirdparty", "medium": "email", "address": address}
        return {"type": "m.login.password", "identifier": identifier, "password": password}

    status, body = await server.request("POST", f"{V3}/login", json=by_email("ALICE@example.org"))
    assert status == 200 and body["user_id"] == "@alice:test.local"
    for address, password, code, errcode in [
        ("alice@example.org", "wrong password", 403, "M_FORBIDDEN"),
        ("nobody@example.org", PASSWORD, 403, "M_FORBIDDEN"),
        ("not an address", PASSWORD, 400, "M_INVALID_PARAM"),
    ]:
        status, body = await server.request("POST", f"{V3}/login", json=by_email(address, password))
        assert status == code and body["errcode"] == errcode, address

    # The session was spent: it cannot register a second account, and the link is dead.
    status, replay = await open_link(server, inbox.last_link("alice@example.org"))
    assert status == 400 and replay["errcode"] == "M_FORBIDDEN"
    params = link_params(inbox.last_link("alice@example.org"))
    status, challenge = await server.request("POST", f"{V3}/register", json={"username": "bob"})
    status, again = await server.request(
        "POST",
        f"{V3}/register",
        json={
            "username": "bob",
            "password": PASSWORD,
            "auth": {
                "type": EMAIL_STAGE,
                "session": challenge["session"],
                "threepid_creds": {"sid": params["sid"], "client_secret": "s3cret"},
            },
        },
    )
    assert status == 401 and again["errcode"] == "M_THREEPID_AUTH_FAILED"
    assert not await server.hs.accounts.users.user_exists("@bob:test.local")
    # And the address, now bound, cannot start another registration.
    status, body = await request_token(server, "register", "alice@example.org", "other")
    assert status == 400 and body["errcode"] == "M_THREEPID_IN_USE"


async def test_send_attempt_is_idempotent(make_server, inbox):
    server = await email_server(make_server, inbox)
    status, first = await request_token(server, "register", "c@example.org", attempt=1)
    assert status == 200 and first["submit_url"].endswith(
        "/_matrix/client/unstable/registration/email/submit_token"
    )
    assert_matches_schema("registration.yaml", "/register/email/requestToken", "post", 200, first)
    status, same = await request_token(server, "register", "c@example.org", attempt=1)
    assert status == 200 and same["sid"] == first["sid"]
    assert len(inbox.to("c@example.org")) == 1  # a retry sends nothing
    old_link = inbox.last_link("c@example.org")
    status, newer = await request_token(server, "register", "c@example.org", attempt=2)
    assert status == 200 and newer["sid"] == first["sid"]
    assert len(inbox.to("c@example.org")) == 2
    # The first mail's token was replaced by the second's.
    status, body = await open_link(server, old_link)
    assert status == 400 and body["errcode"] == "M_FORBIDDEN"
    # A next_link: the link validates, then sends the browser there.
    status, body = await server.request(
        "POST",
        f"{V3}/register/email/requestToken",
        json={
            "client_secret": "nl",
            "email": "n@example.org",
            "send_attempt": 1,
            "next_link": "https://app.example.org/done",
        },
    )
    assert status == 200
    link = urlparse(inbox.last_link("n@example.org"))
    async with server.http.get(
        server.base_url.rstrip("/") + f"{link.path}?{link.query}", allow_redirects=False
    ) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "https://app.example.org/done"
    assert await server.db.fetchval(
        "SELECT validated_ts IS NOT NULL FROM threepid_sessions WHERE address = 'n@example.org'"
    )

    # The spec's submit_url: POST {sid, client_secret, token}.
    params = link_params(inbox.last_link("c@example.org"))
    status, body = await server.request("POST", urlparse(newer["submit_url"]).path, json=params)
    assert status == 200 and body == {"success": True}


async def test_add_and_delete_an_address(make_server, inbox):
    server = await email_server(make_server, inbox)
    client = await server.client("carol")
    token = client.access_token
    status, body = await request_token(server, "add", "carol@example.org", "carolsecret")
    assert status == 200
    sid = body["sid"]
    link = inbox.last_link("carol@example.org")
    assert "/_matrix/client/unstable/add_threepid/email/submit_token" in link

    # A wrong client_secret with the right token validates nothing.
    params = link_params(link)
    status, body = await server.request(
        "GET",
        urlparse(link).path + f"?sid={sid}&client_secret=wrong&token={params['token']}",
    )
    assert status == 400 and body["errcode"] == "M_FORBIDDEN"
    add = {"client_secret": "carolsecret", "sid": sid}
    status, body = await server.request("POST", f"{V3}/account/3pid/add", token=token, json=add)
    assert status == 400 and body["errcode"] == "M_THREEPID_AUTH_FAILED"

    assert (await open_link(server, link))[0] == 200
    # Wrong secret on /add: refused before any UIA round.
    status, body = await server.request(
        "POST", f"{V3}/account/3pid/add", token=token, json={"client_secret": "nope", "sid": sid}
    )
    assert status == 400 and body["errcode"] == "M_THREEPID_AUTH_FAILED"
    status, challenge = await server.request(
        "POST", f"{V3}/account/3pid/add", token=token, json=add
    )
    assert status == 401 and challenge["flows"] == [{"stages": ["m.login.password"]}]
    assert_matches_schema(
        "administrative_contact.yaml", "/account/3pid/add", "post", 401, challenge
    )
    auth = {
        "type": "m.login.password",
        "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": "carol"},
        "password": PASSWORD,
    }
    status, body = await server.request(
        "POST", f"{V3}/account/3pid/add", token=token, json={**add, "auth": auth}
    )
    assert status == 200, body
    status, listed = await server.request("GET", f"{V3}/account/3pid", token=token)
    assert [t["address"] for t in listed["threepids"]] == ["carol@example.org"]

    # Someone else cannot claim it.
    status, body = await request_token(server, "add", "carol@example.org", "dave")
    assert status == 400 and body["errcode"] == "M_THREEPID_IN_USE"

    status, body = await server.request(
        "POST",
        f"{V3}/account/3pid/delete",
        token=token,
        json={"medium": "email", "address": "carol@example.org"},
    )
    assert status == 200 and body == {"id_server_unbind_result": "no-support"}
    assert_matches_schema("administrative_contact.yaml", "/account/3pid/delete", "post", 200, body)
    status, listed = await server.request("GET", f"{V3}/account/3pid", token=token)
    assert listed["threepids"] == []


async def test_password_reset_by_email(make_server, inbox):
    server = await email_server(make_server, inbox)
    status, _ = await register_by_email(server, inbox, "erin@example.org", "erin")
    assert status == 200
    old_session = await server.login("erin")

    status, body = await request_token(server, "password", "nobody@example.org")
    assert status == 400 and body["errcode"] == "M_THREEPID_NOT_FOUND"
    assert not inbox.to("nobody@example.org")

    status, body = await request_token(server, "password", "erin@example.org", "reset1")
    assert status == 200
    sid = body["sid"]
    link = inbox.last_link("erin@example.org")
    assert "/_matrix/client/unstable/password_reset/email/submit_token" in link
    assert (await open_link(server, link))[0] == 200

    new_password = "a brand new password"
    request = {"new_password": new_password}
    status, challenge = await server.request("POST", f"{V3}/account/password", json=request)
    assert status == 401 and challenge["flows"] == [{"stages": [EMAIL_STAGE]}]
    creds = {"sid": sid, "client_secret": "reset1"}
    status, body = await server.request(
        "POST",
        f"{V3}/account/password",
        json={
            **request,
            "auth": {"type": EMAIL_STAGE, "session": challenge["session"], "threepid_creds": creds},
        },
    )
    assert status == 200, body

    # Every session was logged out; only the new password logs in.
    status, body = await server.request(
        "GET", f"{V3}/account/whoami", token=old_session.access_token
    )
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
    stale = server.new_client("erin")
    assert isinstance(await stale.login(PASSWORD), LoginError)
    fresh = server.new_client("erin")
    assert isinstance(await fresh.login(new_password), LoginResponse)

    # The session is spent: a second reset with it fails and changes nothing.
    status, challenge = await server.request("POST", f"{V3}/account/password", json=request)
    status, body = await server.request(
        "POST",
        f"{V3}/account/password",
        json={
            "new_password": "yet another password",
            "auth": {"type": EMAIL_STAGE, "session": challenge["session"], "threepid_creds": creds},
        },
    )
    assert status == 401 and body["errcode"] == "M_THREEPID_AUTH_FAILED"
    assert isinstance(await server.new_client("erin").login(new_password), LoginResponse)


async def test_domain_rules_and_identity_map(make_server, inbox):
    server = await make_server(
        email=inbox.config(allowed_domains=["ministere-a.gouv.fr", "ministere-b.gouv.fr"]),
        identity={
            "domain_map": {
                "ministere-a.gouv.fr": "test.local",
                "ministere-b.gouv.fr": "b.gouv.example",
            }
        },
    )
    info = "/_matrix/identity/api/v1/info?medium=email&address="
    assert await server.request("GET", info + "x@ministere-b.gouv.fr") == (
        200,
        {"hs": "b.gouv.example"},
    )
    assert await server.request("GET", info + "X@Ministere-A.gouv.fr") == (
        200,
        {"hs": "test.local"},
    )
    status, body = await server.request("GET", info + "x@elsewhere.org")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.request(
        "GET", "/_matrix/identity/api/v1/info?medium=msisdn&address=33600000000"
    )
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await server.request("GET", info + "not-an-address")
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"

    # Belongs on another ministry's server: refused, saying where it belongs.
    status, body = await request_token(server, "register", "x@ministere-b.gouv.fr")
    assert status == 403 and body["errcode"] == "M_THREEPID_DENIED"
    assert "b.gouv.example" in body["error"]
    # Not an allowed domain at all.
    status, body = await request_token(server, "register", "x@elsewhere.org")
    assert status == 403 and body["errcode"] == "M_THREEPID_DENIED"
    assert inbox.messages == [] and await session_count(server) == 0
    # Ours: accepted.
    status, body = await request_token(server, "register", "x@ministere-a.gouv.fr")
    assert status == 200 and len(inbox.to("x@ministere-a.gouv.fr")) == 1

    # Tchap's shape: every address not mapped goes to the external server.
    tchap = await make_server(
        email=inbox.config(),
        identity={"domain_map": {"a.fr": "test.local"}, "default_server": "externe.example"},
    )
    assert await tchap.request("GET", info + "x@gmail.com") == (200, {"hs": "externe.example"})
    status, body = await request_token(tchap, "register", "x@gmail.com")
    assert status == 403 and body["errcode"] == "M_THREEPID_DENIED"


@pytest.mark.parametrize(
    "address",
    [
        "a" * 65 + "@example.org",  # local part over 64
        "a@" + ".".join(c * 60 for c in "bcdef") + ".org",  # over 254 in all
        "no-at-sign",
        "two@@example.org",
        "a@b@example.org",
        "a b@example.org",
        "<a@example.org>",
        "a@localhost",
        "a@-bad.org",
        ".a@example.org",
        "a..b@example.org",
        "",
    ],
)
async def test_malformed_addresses_change_nothing(make_server, inbox, address):
    server = await email_server(make_server, inbox)
    status, body = await request_token(server, "register", address)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body
    assert inbox.messages == [] and await session_count(server) == 0


async def test_bad_requests_change_nothing(make_server, inbox):
    server = await email_server(make_server, inbox)
    path = f"{V3}/register/email/requestToken"
    cases = [
        ({"email": "a@example.org", "send_attempt": 1}, "M_MISSING_PARAM"),
        ({"client_secret": "s", "email": "a@example.org"}, "M_MISSING_PARAM"),
        ({"client_secret": "bad secret!", "email": "a@example.org", "send_attempt": 1}, None),
        ({"client_secret": "s" * 256, "email": "a@example.org", "send_attempt": 1}, None),
        ({"client_secret": "s", "email": 5, "send_attempt": 1}, "M_BAD_JSON"),
        ({"client_secret": "s", "email": "a@example.org", "send_attempt": "1"}, "M_BAD_JSON"),
        ({"client_secret": "s", "email": "a@example.org", "send_attempt": -1}, None),
        (
            {"client_secret": "s", "email": "a@example.org", "send_attempt": 1, "next_link": "x"},
            None,
        ),
    ]
    for body, errcode in cases:
        status, answer = await server.request("POST", path, json=body)
        assert status == 400 and answer["errcode"] == (errcode or "M_INVALID_PARAM"), body
    assert inbox.messages == [] and await session_count(server) == 0

    # An expired token validates nothing.
    status, body = await request_token(server, "register", "late@example.org")
    await server.db.execute("UPDATE threepid_sessions SET token_expires_ts = 0")
    status, answer = await open_link(server, inbox.last_link("late@example.org"))
    assert status == 400 and answer["errcode"] == "M_FORBIDDEN"
    assert await server.db.fetchval("SELECT validated_ts FROM threepid_sessions") is None
    # Unknown sid, a token of the wrong shape, a missing parameter.
    params = link_params(inbox.last_link("late@example.org"))
    submit = "/_matrix/client/unstable/registration/email/submit_token"
    for query, errcode in [
        (f"sid=unknown&client_secret=s3cret&token={params['token']}", "M_FORBIDDEN"),
        (f"sid={params['sid']}&client_secret=s3cret&token=" + "t" * 300, "M_INVALID_PARAM"),
        (f"sid={params['sid']}&client_secret=s3cret", "M_MISSING_PARAM"),
    ]:
        status, answer = await server.request("GET", f"{submit}?{query}")
        assert status == 400 and answer["errcode"] == errcode, query
    # The link of a registration session does not validate on another kind's path.
    other = "/_matrix/client/unstable/add_threepid/email/submit_token"
    await server.db.execute("UPDATE threepid_sessions SET token_expires_ts = 9e15")
    status, answer = await server.request(
        "GET", f"{other}?{urlparse(inbox.last_link('late@example.org')).query}"
    )
    assert status == 400 and answer["errcode"] == "M_FORBIDDEN"
    assert await server.db.fetchval("SELECT validated_ts FROM threepid_sessions") is None

    # Deleting: wrong medium, malformed address.
    client = await server.client()
    for body, errcode in [
        ({"medium": "msisdn", "address": "33600000000"}, "M_INVALID_PARAM"),
        ({"medium": "email", "address": "nope"}, "M_INVALID_PARAM"),
        ({"medium": "email"}, "M_MISSING_PARAM"),
    ]:
        status, answer = await server.request(
            "POST", f"{V3}/account/3pid/delete", token=client.access_token, json=body
        )
        assert status == 400 and answer["errcode"] == errcode, body


async def test_rate_limits_per_address_and_per_ip(make_server, inbox):
    server = await make_server(
        rate_limits={"enabled": True},
        email=inbox.config(
            rate_limits={
                "per_address": {"per_second": 0.001, "burst": 2},
                # The refused third request for one address counts against its IP too.
                "per_ip": {"per_second": 0.001, "burst": 5},
            }
        ),
    )
    for attempt in (1, 2):
        status, _ = await request_token(server, "register", "r@example.org", attempt=attempt)
        assert status == 200
    status, body = await request_token(server, "register", "r@example.org", attempt=3)
    assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0
    assert len(inbox.to("r@example.org")) == 2
    # Another address still passes, until the IP's bucket is empty too.
    assert (await request_token(server, "register", "s@example.org"))[0] == 200
    assert (await request_token(server, "register", "t@example.org"))[0] == 200
    status, body = await request_token(server, "register", "u@example.org")
    assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED"
    assert not inbox.to("u@example.org")


async def test_smtp_failure_lets_the_same_attempt_retry(make_server, inbox):
    server = await email_server(make_server, inbox)
    inbox.refuse = True
    status, body = await request_token(server, "register", "f@example.org")
    assert status == 500 and body["errcode"] == "M_UNKNOWN"
    inbox.refuse = False
    status, body = await request_token(server, "register", "f@example.org")
    assert status == 200 and len(inbox.to("f@example.org")) == 1
