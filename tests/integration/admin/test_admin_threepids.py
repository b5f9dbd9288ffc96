"""The admin API's `threepids` (PUT and GET /_synapse/admin/v2/users/{id}): an admin sets
an account's e-mail addresses without validation mails; an address bound to another
account is refused, changing nothing."""

from tests.integration.admin.helpers import admin_server

V3 = "/_matrix/client/v3"


async def test_admin_sets_and_reads_addresses(make_server):
    server, admin = await admin_server(make_server)
    await server.client("alice")
    status, user = await admin(
        "PUT",
        "/v2/users/@alice:test.local",
        {"threepids": [{"medium": "email", "address": "Alice@Example.org"}]},
    )
    assert status == 200
    assert [(t["medium"], t["address"]) for t in user["threepids"]] == [
        ("email", "alice@example.org")
    ]
    status, user = await admin("GET", "/v2/users/@alice:test.local")
    assert [t["address"] for t in user["threepids"]] == ["alice@example.org"]
    entry = (await admin.audit("put_user"))[0]
    assert entry["details"]["threepids"] == 1 and "alice@example.org" not in str(entry)

    # Another account cannot be given it; a new account is not created for the attempt.
    status, body = await admin(
        "PUT",
        "/v2/users/@bob:test.local",
        {
            "password": "a long enough password",
            "threepids": [{"medium": "email", "address": "alice@example.org"}],
        },
    )
    assert status == 400 and body["errcode"] == "M_THREEPID_IN_USE"
    assert (await admin("GET", "/v2/users/@bob:test.local"))[0] == 404

    # Replacing the list replaces the addresses; an empty list removes them.
    status, user = await admin(
        "PUT",
        "/v2/users/@alice:test.local",
        {"threepids": [{"medium": "email", "address": "a2@example.org"}]},
    )
    assert [t["address"] for t in user["threepids"]] == ["a2@example.org"]
    status, user = await admin("PUT", "/v2/users/@alice:test.local", {"threepids": []})
    assert user["threepids"] == []
