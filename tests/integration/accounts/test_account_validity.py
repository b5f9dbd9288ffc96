"""Account validity: expiry set at registration, 403 ORG_MATRIX_EXPIRED_ACCOUNT on every
request but renewal and logout, the renewal mail (through a real SMTP server) and its
one-time link, the admin validity API with its audit row, and the housekeeping task that
mails before expiry and deactivates after `deactivate_expired_after`."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from nio import LogoutResponse, SyncResponse, WhoamiError, WhoamiResponse

from tests.integration.accounts.smtp import Inbox
from tests.integration.admin.helpers import admin_server

V3 = "/_matrix/client/v3"
VALIDITY = "/v1/account_validity/validity"
DAY_MS = 86_400_000
EXPIRED = "ORG_MATRIX_EXPIRED_ACCOUNT"


@pytest.fixture
async def inbox():
    box = await Inbox().start()
    yield box
    await box.stop()


async def validity_server(make_server, inbox):
    return await admin_server(
        make_server,
        email=inbox.config(notif_from="Notices <notices@test.local>"),
        account_validity={
            "enabled": True,
            "period": "30d",
            "renew_at": "7d",
            "deactivate_expired_after": "2d",
        },
    )


async def bind(server, user_id: str, address: str) -> None:
    # The e-mail flows that bind an address are tested in test_email_identity.py.
    await server.db.execute(
        "INSERT INTO user_threepids VALUES ('email', $1, $2, 0, 0)", address, user_id
    )


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_expiry_renewal_and_admin_api(make_server, inbox):
    server, admin = await validity_server(make_server, inbox)
    alice = await server.client("alice")

    # Registration set an expiry a period away.
    status, body = await admin("GET", f"{VALIDITY}?user_id=@alice:test.local")
    assert status == 200 and body["renewal_email_sent"] is False
    assert 29 * DAY_MS < body["expiration_ts"] - now_ms() <= 30 * DAY_MS

    # The admin expires her: every request is refused, with Synapse's errcode.
    status, body = await admin(
        "POST", VALIDITY, {"user_id": "@alice:test.local", "expiration_ts": now_ms() - 1000}
    )
    assert status == 200 and body["expiration_ts"] < now_ms()
    entry = (await admin.audit("set_validity"))[0]
    assert entry["target"] == "@alice:test.local"
    whoami = await alice.whoami()
    assert isinstance(whoami, WhoamiError) and whoami.status_code == EXPIRED
    status, body = await server.request("GET", f"{V3}/sync?timeout=0", token=alice.access_token)
    assert status == 403 and body["errcode"] == EXPIRED
    status, body = await server.request(
        "POST", f"{V3}/createRoom", token=alice.access_token, json={}
    )
    assert status == 403 and body["errcode"] == EXPIRED
    assert await server.db.fetchval("SELECT count(*) FROM rooms") == 0

    # She may still ask for a renewal mail; it goes to her address, from notif_from.
    await bind(server, "@alice:test.local", "alice@example.org")
    status, body = await server.request(
        "POST", "/_matrix/client/unstable/account_validity/send_mail", token=alice.access_token
    )
    assert status == 200, body
    mail = inbox.to("alice@example.org")[-1]
    assert mail["From"] == "Notices <notices@test.local>"
    assert mail["Subject"] == "Renew your TestHS account"
    link = urlparse(inbox.last_link("alice@example.org"))
    assert link.path == "/_matrix/client/unstable/account_validity/renew"

    status, _ = await server.request("GET", f"{link.path}?{link.query}")
    assert status == 200
    assert isinstance(await alice.whoami(), WhoamiResponse)
    assert isinstance(await alice.sync(timeout=0), SyncResponse)
    status, body = await admin("GET", f"{VALIDITY}?user_id=@alice:test.local")
    assert 29 * DAY_MS < body["expiration_ts"] - now_ms() <= 30 * DAY_MS
    renewed_until = body["expiration_ts"]

    # The link works once.
    status, body = await server.request("GET", f"{link.path}?{link.query}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.request("GET", f"{link.path}?token=made-up")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.request("GET", link.path)
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    assert (await admin("GET", f"{VALIDITY}?user_id=@alice:test.local"))[1][
        "expiration_ts"
    ] == renewed_until

    # Expired again, she may still log out.
    await admin("POST", VALIDITY, {"user_id": "@alice:test.local", "expiration_ts": 0})
    assert isinstance(await alice.logout(), LogoutResponse)


async def test_admin_validity_api_bad_input(make_server, inbox):
    server, admin = await validity_server(make_server, inbox)
    bob = await server.client("bob")
    before = await server.db.fetch("SELECT * FROM account_validity ORDER BY user_id")
    cases = [
        ({"expiration_ts": 5}, 400, "M_MISSING_PARAM"),
        ({"user_id": "@bob:test.local", "expiration_ts": "soon"}, 400, "M_BAD_JSON"),
        ({"user_id": "@bob:test.local", "expiration_ts": -5}, 400, "M_INVALID_PARAM"),
        ({"user_id": "@bob:test.local", "enable_renewal_emails": "yes"}, 400, "M_BAD_JSON"),
        ({"user_id": "@nobody:test.local"}, 404, "M_NOT_FOUND"),
        ({"user_id": "@bob:elsewhere.org"}, 400, "M_UNKNOWN"),
        ({"user_id": "not-a-user"}, 400, "M_INVALID_PARAM"),
    ]
    for body, status_code, errcode in cases:
        status, answer = await admin("POST", VALIDITY, body)
        assert status == status_code and answer["errcode"] == errcode, body
    # Not an admin.
    status, answer = await admin(
        "POST", VALIDITY, {"user_id": "@bob:test.local", "expiration_ts": 0}, token=bob.access_token
    )
    assert status == 403 and answer["errcode"] == "M_FORBIDDEN"
    assert await server.db.fetch("SELECT * FROM account_validity ORDER BY user_id") == before
    assert await admin.audit("set_validity") == []


async def test_housekeeping_mails_before_expiry_and_deactivates_after(make_server, inbox):
    server, admin = await validity_server(make_server, inbox)
    await server.client("carol")
    await bind(server, "@carol:test.local", "carol@example.org")
    runner = server.hs.housekeeping.runner
    now = now_ms()

    # Far from expiry: no mail.
    await runner.run_task("account_validity", now)
    assert inbox.to("carol@example.org") == []

    # Within renew_at of expiry: one mail, and only one however often the task runs.
    await admin("POST", VALIDITY, {"user_id": "@carol:test.local", "expiration_ts": now + DAY_MS})
    await runner.run_task("account_validity", now)
    await runner.run_task("account_validity", now)
    assert len(inbox.to("carol@example.org")) == 1
    assert "/account_validity/renew?token=" in inbox.body(inbox.to("carol@example.org")[0])

    # An SMTP failure leaves the mail due: the next run sends it.
    await admin("POST", VALIDITY, {"user_id": "@carol:test.local", "expiration_ts": now + DAY_MS})
    inbox.refuse = True
    await runner.run_task("account_validity", now)
    inbox.refuse = False
    assert len(inbox.to("carol@example.org")) == 1
    await runner.run_task("account_validity", now)
    assert len(inbox.to("carol@example.org")) == 2

    # Expired, but not yet deactivate_expired_after (2 days) ago: still an account.
    await runner.run_task("account_validity", now + 2 * DAY_MS)
    assert await server.hs.accounts.users.is_active("@carol:test.local")
    # Past it: deactivated, its address freed.
    await runner.run_task("account_validity", now + 3 * DAY_MS + 1)
    assert not await server.hs.accounts.users.is_active("@carol:test.local")
    assert await server.db.fetchval("SELECT count(*) FROM user_threepids") == 0


async def test_existing_accounts_get_an_expiry_and_disabled_feature_refuses(make_server, inbox):
    # Accounts from before the feature was on get one at the task's first run.
    server, admin = await validity_server(make_server, inbox)
    await server.db.execute(
        "INSERT INTO users (user_id, password_hash, created_ts) VALUES ('@old:test.local', NULL, 0)"
    )
    await server.hs.housekeeping.runner.run_task("account_validity", now_ms())
    status, body = await admin("GET", f"{VALIDITY}?user_id=@old:test.local")
    assert status == 200 and body["expiration_ts"] > now_ms()

    plain, plain_admin = await admin_server(make_server)
    status, body = await plain_admin("POST", VALIDITY, {"user_id": "@boss:test.local"})
    assert status == 400 and body["errcode"] == "M_UNKNOWN"
    status, body = await plain.request(
        "GET", "/_matrix/client/unstable/account_validity/renew?token=x"
    )
    assert status == 404 and body["errcode"] == "M_UNRECOGNIZED"
