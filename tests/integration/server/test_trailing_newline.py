"""Identifiers with a trailing newline: Python's `$` matches before a final "\\n", so a
`^...$` regex accepted "@bob:test.local\\n" as a user ID. Every validation pattern is now
whole-string (fullmatch); each route answers its usual error and stores nothing."""

from __future__ import annotations

import pytest

from homeserver.http.errors import MatrixError
from homeserver.media.ids import check_media_id, check_server_name
from homeserver.push.evaluator import glob_matches
from tests.integration.admin.helpers import admin_server, create_room

V3 = "/_matrix/client/v3"


async def test_identifiers_with_a_trailing_newline_are_refused(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    await server.client("bob")
    room_id = await create_room(alice)
    bob_nl = f"@bob:{server.server_name}\n"

    # User ID (invite): M_INVALID_PARAM, no membership event for anyone named bob.
    status, body = await server.request(
        "POST", f"{V3}/rooms/{room_id}/invite", token=alice.access_token, json={"user_id": bob_nl}
    )
    assert (status, body.get("errcode")) == (400, "M_INVALID_PARAM"), body
    members = await server.db.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND type = 'm.room.member'", room_id
    )
    assert members == 1  # alice's own join only

    # User ID (createRoom invite list): M_BAD_JSON, no room made.
    rooms_before = await server.db.fetchval("SELECT count(*) FROM rooms")
    status, body = await server.request(
        "POST", f"{V3}/createRoom", token=alice.access_token, json={"invite": [bob_nl]}
    )
    assert (status, body.get("errcode")) == (400, "M_BAD_JSON"), body
    assert await server.db.fetchval("SELECT count(*) FROM rooms") == rooms_before

    # Username at registration: M_INVALID_USERNAME, no account.
    status, body = await server.request(
        "POST",
        f"{V3}/register",
        json={"username": "carol\n", "password": "pw-123456789", "auth": {"type": "m.login.dummy"}},
    )
    assert (status, body.get("errcode")) == (400, "M_INVALID_USERNAME"), body
    assert not await server.db.fetchval("SELECT count(*) FROM users WHERE user_id LIKE '@carol%'")

    # Registration token (admin API): M_INVALID_PARAM, no token.
    status, body = await admin("POST", "/v1/registration_tokens/new", {"token": "welcome\n"})
    assert (status, body.get("errcode")) == (400, "M_INVALID_PARAM"), body
    assert not await server.db.fetchval("SELECT count(*) FROM registration_tokens")

    # Media ID (path): M_INVALID_PARAM rather than a lookup.
    status, body = await server.request(
        "GET",
        f"/_matrix/client/v1/media/download/{server.server_name}/abcdef%0A",
        token=alice.access_token,
    )
    assert (status, body.get("errcode")) == (400, "M_INVALID_PARAM"), body


def test_patterns_match_the_whole_string():
    assert glob_matches("foo", "foo") and not glob_matches("foo", "foo\n")
    assert check_media_id("abc") == "abc" and check_server_name("test.local") == "test.local"
    for check, value in ((check_media_id, "abc\n"), (check_server_name, "test.local\n")):
        with pytest.raises(MatrixError):
            check(value)
