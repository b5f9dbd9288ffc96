"""CAS single sign-on and the registration captcha, against a fake CAS server on loopback
(tests/integration/accounts/cas_server.py), over raw HTTP as a browser and a client make
the requests: login through /login/sso/redirect, the ticket, and m.login.token; bad
tickets; replayed and expired login tokens; a CAS user whose name is a password account;
the m.login.sso stage of user-interactive auth; and everything off by default."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest_asyncio

from homeserver.accounts.deactivation import deactivate_account
from tests.integration.accounts.cas_server import FakeCas, success_xml

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"
CLIENT = "https://client.example/app?p=1"
TOKEN = re.compile(r"loginToken=([A-Za-z0-9_-]+)")


@pytest_asyncio.fixture(loop_scope="session")
async def cas():
    fake = FakeCas()
    await fake.start()
    yield fake
    await fake.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser():
    async with aiohttp.ClientSession() as http:
        yield http


def cas_config(cas: FakeCas, **extra) -> dict:
    return {"cas": {"enabled": True, "server_url": cas.url + "/cas", **extra}}


async def _start(browser, server, redirect_url=CLIENT, path=f"{V3}/login/sso/redirect") -> str:
    """The browser's first hop: the service URL the CAS server is asked to return to."""
    url = server.base_url.rstrip("/") + path
    async with browser.get(url, params={"redirectUrl": redirect_url}, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        location = r.headers["Location"]
    return location


async def _come_back(browser, server, service: str, ticket: str):
    """The browser back from the CAS server: our ticket URL (as the service URL names it,
    on the test listener) with the ticket."""
    parts = urlsplit(service)
    url = f"{server.base_url.rstrip('/')}{parts.path}?{parts.query}&ticket={ticket}"
    async with browser.get(url, allow_redirects=False) as r:
        return r.status, dict(r.headers), await r.text()


async def cas_login(browser, server, cas, cas_user, *, ticket="ST-1", attributes=None):
    location = await _start(browser, server)
    service = parse_qs(urlsplit(location).query)["service"][0]
    cas.issue(ticket, service, success_xml(cas_user, attributes))
    return await _come_back(browser, server, service, ticket)


async def token_login(server, token: str, **extra) -> tuple[int, dict]:
    return await server.request(
        "POST", f"{V3}/login", json={"type": "m.login.token", "token": token, **extra}
    )


async def test_cas_login_creates_the_user_and_the_login_token_is_single_use(
    make_server, cas, browser
):
    server = await make_server(**cas_config(cas))
    status, body = await server.request("GET", f"{V3}/login")
    types = [f["type"] for f in body["flows"]]
    assert types[:4] == ["m.login.password", "m.login.sso", "m.login.cas", "m.login.token"]
    assert body["flows"][1]["identity_providers"] == [{"id": "cas", "name": "CAS"}]

    # The redirect: to the CAS server's /login, with our ticket URL carrying redirectUrl.
    location = await _start(browser, server)
    assert location.startswith(cas.url + "/cas/login?service=")
    service = parse_qs(urlsplit(location).query)["service"][0]
    assert urlsplit(service).path == f"{R0}/login/cas/ticket"
    assert parse_qs(urlsplit(service).query) == {"redirectUrl": [CLIENT]}

    cas.issue("ST-1", service, success_xml("Jean.Dupont!", {"mail": ["jd@example.gouv.fr"]}))
    status, headers, page = await _come_back(browser, server, service, "ST-1")
    # Validated at /proxyValidate with the same service URL; the client is not trusted,
    # so the user confirms on a page naming it.
    assert cas.validations[-1] == {"ticket": "ST-1", "service": service}
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "client.example" in page
    [token] = TOKEN.findall(page)
    assert "p=1&amp;loginToken=" in page  # the client's own query kept
    # The link's attribute ends where the token does (clients and SyTest read it so).
    assert re.search(r'loginToken=([^"&]+)', page).group(1) == token  # type: ignore[union-attr]

    status, body = await token_login(server, token, device_id="CASDEV")
    assert status == 200, body
    assert body["user_id"] == "@jean.dupont=21:test.local"
    assert body["device_id"] == "CASDEV"
    # The token logs in once.
    status, body = await token_login(server, token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # A created account has no password.
    status, body = await server.request(
        "POST",
        f"{V3}/login",
        json={"type": "m.login.password", "user": "jean.dupont=21", "password": ""},
    )
    assert status in (400, 403)

    # Signing in again lands on the same account (the CAS identity is linked to it).
    status, _, page = await cas_login(browser, server, cas, "Jean.Dupont!", ticket="ST-2")
    assert status == 200
    status, body = await token_login(server, TOKEN.findall(page)[0])
    assert (status, body["user_id"]) == (200, "@jean.dupont=21:test.local")


async def test_legacy_cas_redirect_and_trusted_clients_get_the_token_by_redirect(
    make_server, cas, browser
):
    server = await make_server(**cas_config(cas, trusted_client_urls=["https://client.example/"]))
    location = await _start(browser, server, path=f"{V3}/login/cas/redirect")
    assert location.startswith(cas.url + "/cas/login?")
    location = await _start(browser, server, path=f"{V3}/login/sso/redirect/cas")
    service = parse_qs(urlsplit(location).query)["service"][0]
    cas.issue("ST-9", service, success_xml("marie"))
    status, headers, _ = await _come_back(browser, server, service, "ST-9")
    assert status == 302
    target = headers["Location"]
    assert target.startswith("https://client.example/app?p=1&loginToken=")
    status, body = await token_login(server, TOKEN.findall(target)[0])
    assert (status, body["user_id"]) == (200, "@marie:test.local")

    # An unknown identity provider, a missing or dangerous redirectUrl: Matrix errors.
    status, body = await server.request("GET", f"{V3}/login/sso/redirect/oidc?redirectUrl=x:y")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await server.request("GET", f"{V3}/login/sso/redirect")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await server.request(
        "GET", f"{V3}/login/sso/redirect?redirectUrl=javascript:alert(1)"
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_bad_tickets_create_nothing(make_server, cas, browser):
    server = await make_server(**cas_config(cas, required_attributes={"affiliation": "staff"}))
    location = await _start(browser, server)
    service = parse_qs(urlsplit(location).query)["service"][0]

    # A ticket the CAS server does not know.
    status, _, page = await _come_back(browser, server, service, "ST-forged")
    assert status == 401 and "loginToken" not in page
    # A ticket issued for another service.
    cas.issue("ST-other", "https://elsewhere.example/", success_xml("paul"))
    status, _, page = await _come_back(browser, server, service, "ST-other")
    assert status == 401 and "loginToken" not in page
    # A CAS user without the required attribute value.
    cas.issue("ST-3", service, success_xml("paul", {"affiliation": ["student"]}))
    status, _, page = await _come_back(browser, server, service, "ST-3")
    assert status == 403 and "loginToken" not in page
    # Not a CAS answer at all (and no entity expansion is attempted).
    cas.issue("ST-4", service, "<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
    status, _, page = await _come_back(browser, server, service, "ST-4")
    assert status == 502 and "loginToken" not in page
    assert not await server.hs.accounts.users.user_exists("@paul:test.local")

    # A missing ticket is the client's error.
    status, body = await server.request("GET", f"{R0}/login/cas/ticket?redirectUrl=x:y")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    # A made-up login token.
    status, body = await token_login(server, "not-a-token")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")

    # With the attribute, the user gets in.
    cas.issue("ST-5", service, success_xml("paul", {"affiliation": ["staff", "x"]}))
    status, _, page = await _come_back(browser, server, service, "ST-5")
    assert status == 200
    status, body = await token_login(server, TOKEN.findall(page)[0])
    assert (status, body["user_id"]) == (200, "@paul:test.local")


async def test_expired_login_token_is_refused(make_server, cas, browser):
    server = await make_server(**cas_config(cas, login_token_lifetime_s=1))
    status, _, page = await cas_login(browser, server, cas, "lea")
    assert status == 200
    await asyncio.sleep(1.2)
    status, body = await token_login(server, TOKEN.findall(page)[0])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_a_password_account_of_the_same_name_is_refused_unless_configured(
    make_server, cas, browser
):
    server = await make_server(**cas_config(cas))
    alice = await server.client("alice")
    status, _, page = await cas_login(browser, server, cas, "Alice")
    assert status == 403 and "loginToken" not in page
    assert await server.hs.accounts.sso.providers_for_user(alice.user_id) == []

    other = await make_server(**cas_config(cas, allow_existing_users=True))
    bob = await other.client("bob")
    status, _, page = await cas_login(browser, other, cas, "bob", ticket="ST-b")
    assert status == 200
    status, body = await token_login(other, TOKEN.findall(page)[0])
    assert (status, body["user_id"]) == (200, bob.user_id)


async def _delete_device(server, token: str, device_id: str, auth=None) -> tuple[int, dict]:
    return await server.request(
        "DELETE",
        f"{V3}/devices/{device_id}",
        token=token,
        json={} if auth is None else {"auth": auth},
    )


async def _sso_stage(browser, server, cas, session: str, cas_user: str, ticket: str):
    """The fallback page, its link to the CAS server, and the way back with a ticket."""
    url = f"{server.base_url.rstrip('/')}{V3}/auth/m.login.sso/fallback/web"
    async with browser.get(url, params={"session": session}) as r:
        assert r.status == 200
        page = await r.text()
    assert "remove a device" in page
    [link] = re.findall(r'href="([^"]+)"', page)
    service = parse_qs(urlsplit(link.replace("&amp;", "&")).query)["service"][0]
    assert link.startswith(cas.url + "/cas/login?")
    cas.issue(ticket, service, success_xml(cas_user))
    return await _come_back(browser, server, service, ticket)


async def test_user_interactive_auth_by_sso(make_server, cas, browser):
    server = await make_server(**cas_config(cas))
    _, _, page = await cas_login(browser, server, cas, "claire")
    status, login = await token_login(server, TOKEN.findall(page)[0], device_id="ONE")
    assert status == 200
    _, page = None, (await cas_login(browser, server, cas, "claire", ticket="ST-2"))[2]
    status, second = await token_login(server, TOKEN.findall(page)[0], device_id="TWO")
    assert status == 200
    token = login["access_token"]

    # An account with no password is offered single sign-on only.
    status, body = await _delete_device(server, token, "TWO")
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.sso"]}]
    session = body["session"]
    # Naming the stage before the fallback is done completes nothing.
    status, body = await _delete_device(
        server, token, "TWO", {"type": "m.login.sso", "session": session}
    )
    assert (status, body["errcode"]) == (401, "M_FORBIDDEN")
    # The session alone, before the fallback: still 401.
    status, body = await _delete_device(server, token, "TWO", {"session": session})
    assert status == 401 and body["completed"] == []

    status, _, page = await _sso_stage(browser, server, cas, session, "claire", "ST-3")
    assert status == 200 and "authDone" in page
    status, body = await _delete_device(server, token, "TWO", {"session": session})
    assert (status, body) == (200, {})
    status, _ = await server.request("GET", f"{V3}/devices/TWO", token=token)
    assert status == 404

    # Another CAS user completing the stage: the operation is refused, the device stays.
    _, _, page = await cas_login(browser, server, cas, "mallory", ticket="ST-4")
    assert (await token_login(server, TOKEN.findall(page)[0]))[0] == 200
    status, body = await _delete_device(server, token, "ONE")
    session = body["session"]
    status, _, page = await _sso_stage(browser, server, cas, session, "mallory", "ST-5")
    assert status == 200 and "refused" in page and "authDone" in page
    status, body = await _delete_device(server, token, "ONE", {"session": session})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, _ = await server.request("GET", f"{V3}/devices/ONE", token=token)
    assert status == 200

    # A password account that signs in by CAS too (allowed) is offered both.
    other = await make_server(**cas_config(cas, allow_existing_users=True))
    dan = await other.client("dan")
    _, _, page = await cas_login(browser, other, cas, "dan", ticket="ST-6")
    assert (await token_login(other, TOKEN.findall(page)[0]))[0] == 200
    status, body = await _delete_device(other, dan.access_token, dan.device_id)
    assert body["flows"] == [{"stages": ["m.login.password"]}, {"stages": ["m.login.sso"]}]


async def test_recaptcha_stage(make_server, cas):
    server = await make_server(
        recaptcha={
            "enabled": True,
            "public_key": "pub",
            "private_key": "priv",
            "siteverify_api": cas.url + "/siteverify",
        }
    )
    body = {"username": "newcomer", "password": "a long password"}
    status, answer = await server.request("POST", f"{V3}/register", json=body)
    assert status == 401
    assert answer["flows"] == [{"stages": ["m.login.recaptcha", "m.login.dummy"]}]
    assert answer["params"] == {"m.login.recaptcha": {"public_key": "pub"}}
    session = answer["session"]

    wrong = {"type": "m.login.recaptcha", "response": "bad", "session": session}
    status, answer = await server.request("POST", f"{V3}/register", json={**body, "auth": wrong})
    assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED")
    assert cas.captcha_requests[-1]["secret"] == "priv"
    # The dummy stage alone does not finish the flow.
    dummy = {"type": "m.login.dummy", "session": session}
    status, answer = await server.request("POST", f"{V3}/register", json={**body, "auth": dummy})
    assert status == 401 and answer["completed"] == ["m.login.dummy"]

    right = {"type": "m.login.recaptcha", "response": "good-answer", "session": session}
    status, answer = await server.request("POST", f"{V3}/register", json={**body, "auth": right})
    assert status == 200, answer
    assert answer["user_id"] == "@newcomer:test.local"

    # Not required: flows with and without the captcha.
    optional = await make_server(
        recaptcha={
            "enabled": True,
            "public_key": "pub",
            "private_key": "priv",
            "siteverify_api": cas.url + "/siteverify",
            "required": False,
        }
    )
    status, answer = await optional.request("POST", f"{V3}/register", json=body)
    assert answer["flows"] == [
        {"stages": ["m.login.dummy"]},
        {"stages": ["m.login.recaptcha", "m.login.dummy"]},
    ]


async def test_everything_off_by_default(server, cas, browser):
    status, body = await server.request("GET", f"{V3}/login")
    assert body["flows"] == [{"type": "m.login.password"}]
    for path in (
        f"{V3}/login/sso/redirect?redirectUrl=https://c/",
        f"{V3}/login/sso/redirect/cas?redirectUrl=https://c/",
        f"{V3}/login/cas/redirect?redirectUrl=https://c/",
        f"{R0}/login/cas/ticket?ticket=ST-1&redirectUrl=https://c/",
        f"{V3}/auth/m.login.sso/fallback/web?session=x",
    ):
        status, body = await server.request("GET", path)
        assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED"), path
    status, body = await token_login(server, "anything")
    assert (status, body["errcode"]) == (400, "M_UNKNOWN")

    # No captcha stage, and nothing is asked of any verifier.
    reg = {"username": "x1", "password": "a long password"}
    status, body = await server.request("POST", f"{V3}/register", json=reg)
    assert all("m.login.recaptcha" not in f["stages"] for f in body["flows"])
    assert "m.login.recaptcha" not in body["params"]
    captcha = {"type": "m.login.recaptcha", "response": "good-answer", "session": body["session"]}
    status, body = await server.request("POST", f"{V3}/register", json={**reg, "auth": captcha})
    assert (status, body["errcode"]) == (401, "M_UNRECOGNIZED")
    assert cas.captcha_requests == [] and cas.logins == [] and cas.validations == []

    # A UIA session offers the password only.
    alice = await server.client("alice")
    status, body = await _delete_device(server, alice.access_token, alice.device_id)
    assert body["flows"] == [{"stages": ["m.login.password"]}]


async def test_deactivation_unlinks_the_identity_and_voids_unspent_tokens(
    make_server, cas, browser
):
    server = await make_server(**cas_config(cas))
    _, _, page = await cas_login(browser, server, cas, "nina")
    status, login = await token_login(server, TOKEN.findall(page)[0])
    assert status == 200
    _, _, page = await cas_login(browser, server, cas, "nina", ticket="ST-2")
    unspent = TOKEN.findall(page)[0]
    await deactivate_account(server.hs, login["user_id"], erase=False)
    assert await server.hs.accounts.sso.providers_for_user(login["user_id"]) == []
    status, body = await token_login(server, unspent)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # The identity now meets the deactivated account of its name: refused, nothing created.
    status, _, page = await cas_login(browser, server, cas, "nina", ticket="ST-3")
    assert status == 403 and "loginToken" not in page
