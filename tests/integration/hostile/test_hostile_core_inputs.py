"""Inputs that once answered 500 (issue 17, item 3): U+0000 in IDs, numbers beyond int64
in tokens and IDs, a negative limit in an inline filter, a bearer token that is not
ASCII. Each must get a 4xx Matrix error and change nothing."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from urllib.parse import quote

import orjson
import pytest

BIG = "99999999999999999999"  # > 2**64
INT64_PLUS_1 = str(2**63)
V3 = "/_matrix/client/v3"


async def _setup(server):
    alice = await server.client("alice")
    status, room = await server.request(
        "POST", f"{V3}/createRoom", token=alice.access_token, json={"room_alias_name": "hostile"}
    )
    assert status == 200, room
    status, sent = await server.request(
        "PUT",
        f"{V3}/rooms/{room['room_id']}/send/m.room.message/t1",
        token=alice.access_token,
        json={"msgtype": "m.text", "body": "hi"},
    )
    assert status == 200, sent
    return alice, room["room_id"], sent["event_id"]


def _cases(user_id: str, room_id: str, event_id: str, server_name: str):
    """(method, path, json body): every one must answer 4xx."""
    u = quote(user_id, safe="")
    r = quote(room_id, safe="")
    e = quote(event_id, safe="")
    filt = lambda spec: quote(json.dumps(spec), safe="")  # noqa: E731
    return [
        # U+0000 in aliases, room IDs, user IDs, txn IDs, account data types, searches
        ("GET", f"/directory/room/%23a%00b%3A{server_name}", None),
        ("PUT", f"/directory/room/%23a%00b%3A{server_name}", {"room_id": room_id}),
        ("GET", f"/rooms/%21a%00b%3A{server_name}/messages", None),
        ("POST", f"/join/%21a%00b%3A{server_name}", {}),
        ("GET", f"/profile/%40a%00b%3A{server_name}", None),
        ("POST", f"/rooms/{r}/invite", {"user_id": f"@a\u0000b:{server_name}"}),
        (
            "POST",
            "/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "a\u0000b"},
                "password": "x",
            },
        ),
        ("PUT", f"/rooms/{r}/send/m.room.message/t%00x", {"body": "x", "msgtype": "m.text"}),
        ("PUT", f"/rooms/{r}/send/m.room%00message/t2", {"body": "x", "msgtype": "m.text"}),
        ("PUT", f"/rooms/{r}/state/m.room.topic/a%00b", {"topic": "x"}),
        ("PUT", f"/user/{u}/account_data/a%00b", {}),
        ("PUT", f"/user/{u}/rooms/{r}/account_data/a%00b", {}),
        ("POST", "/publicRooms", {"filter": {"generic_search_term": "a\u0000"}}),
        ("POST", "/user_directory/search", {"search_term": "a\u0000"}),
        # numbers beyond int64 in tokens and IDs
        ("GET", f"/rooms/{r}/messages?from=t{BIG}", None),
        ("GET", f"/rooms/{r}/messages?dir=b&to=t{BIG}", None),
        ("GET", f"/rooms/{r}/messages?from=t{INT64_PLUS_1}", None),
        ("GET", f"/rooms/{r}/messages?from=s{BIG}_0_0_0_0_0_0", None),
        ("GET", f"/rooms/{r}/messages?from=t-{BIG}", None),
        ("GET", f"/rooms/{r}/members?at=t{BIG}", None),
        ("GET", f"/rooms/{r}/members?at=s{INT64_PLUS_1}", None),
        ("GET", f"/sync?filter={BIG}", None),
        ("GET", f"/sync?since=s{BIG}_0_0_0_0_0_0", None),
        ("GET", f"/user/{u}/filter/{BIG}", None),
        ("GET", f"/rooms/{r}/context/{e}?limit={BIG}0", None),
        ("GET", f"/publicRooms?since=o{BIG}", None),
        ("GET", f"/notifications?from={BIG}", None),
        ("GET", f"/keys/changes?from=s{BIG}_0&to=s0", None),
        ("GET", f"/room_keys/version/{BIG}", None),
        # filters: negative and absurd limits, wrong types
        ("GET", f"/sync?filter={filt({'room': {'timeline': {'limit': -1}}})}", None),
        ("GET", f"/sync?filter={filt({'room': {'timeline': {'limit': int(BIG)}}})}", None),
        ("GET", f"/sync?filter={filt({'room': {'state': {'lazy_load_members': 'yes'}}})}", None),
        ("GET", f"/rooms/{r}/messages?filter={filt({'limit': -5})}", None),
        ("GET", f"/rooms/{r}/messages?filter={filt({'types': 'm.room.message'})}", None),
    ]


async def test_hostile_inputs_answer_4xx_and_change_nothing(server):
    alice, room_id, event_id = await _setup(server)
    events_before = await server.db.fetchval("SELECT count(*) FROM events")
    failures = []
    for method, path, body in _cases(alice.user_id, room_id, event_id, server.server_name):
        status, answer = await server.request(
            method, V3 + path, token=alice.access_token, json=body
        )
        if not (400 <= status < 500 and answer.get("errcode")):
            failures.append((method, path, status, answer))
    assert failures == []
    assert await server.db.fetchval("SELECT count(*) FROM events") == events_before


async def _raw_request(base_url: str, request: bytes) -> bytes:
    parts = urllib.parse.urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("token", [b"\xe9t\xe9", "hs_\u00e9t\u00e9".encode(), b"\xed\xa0\x80"])
async def test_non_ascii_bearer_token_is_unknown(server, token):
    raw = (
        b"GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n"
    )
    answer = await _raw_request(server.base_url, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"401", answer
    assert orjson.loads(body)["errcode"] == "M_UNKNOWN_TOKEN"


async def test_filters_are_checked_against_the_spec_schema(server):
    """Uploaded and inline /sync filters: each known field has its type (M_BAD_JSON);
    huge limits within int64 are clamped, not passed to PostgreSQL."""
    alice, room_id, _ = await _setup(server)
    upload = f"{V3}/user/{quote(alice.user_id, safe='')}/filter"
    bad = [
        {"room": {"state": {"lazy_load_members": "true"}}},
        {"room": {"timeline": {"include_redundant_members": 1}}},
        {"room": {"timeline": {"contains_url": None, "limit": 1.5}}},
        {"room": {"include_leave": "yes"}},
        {"room": {"timeline": {"limit": 2**63}}},
        {"event_fields": ["content.body", 7]},
        {"account_data": {"not_types": "m.push_rules"}},
    ]
    for spec in bad:
        status, body = await server.request("POST", upload, token=alice.access_token, json=spec)
        assert (status, body.get("errcode")) == (400, "M_BAD_JSON"), spec
        status, body = await server.request(
            "GET",
            f"{V3}/sync?filter={quote(json.dumps(spec), safe='')}",
            token=alice.access_token,
        )
        assert (status, body.get("errcode")) == (400, "M_BAD_JSON"), spec
    assert await server.db.fetchval("SELECT count(*) FROM filters") == 0

    # The largest limit there is: answered, with the room's one message.
    spec = {"room": {"timeline": {"limit": 2**63 - 1}, "state": {"lazy_load_members": True}}}
    status, made = await server.request("POST", upload, token=alice.access_token, json=spec)
    assert status == 200, made
    for value in (made["filter_id"], json.dumps(spec)):
        status, body = await server.request(
            "GET", f"{V3}/sync?filter={quote(value, safe='')}", token=alice.access_token
        )
        assert status == 200, body
        timeline = body["rooms"]["join"][room_id]["timeline"]
        assert [
            e["content"].get("body") for e in timeline["events"] if e["type"] == "m.room.message"
        ] == ["hi"]
    status, body = await server.request(
        "GET",
        f"{V3}/rooms/{quote(room_id, safe='')}/messages?dir=b&filter="
        + quote(json.dumps({"limit": 2**63 - 1, "lazy_load_members": True}), safe=""),
        token=alice.access_token,
    )
    assert status == 200 and len(body["chunk"]) >= 2, body


async def test_upload_with_a_content_type_that_is_not_utf8(server):
    """Header bytes that are not UTF-8 become lone surrogates in aiohttp; the media type
    is stored in PostgreSQL, which cannot hold them."""
    alice = await server.client("alice")
    raw = (
        b"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + alice.access_token.encode() + b"\r\n"
        b'Content-Type: text/plain; charset="\xe9"\r\nContent-Length: 5\r\n'
        b"Connection: close\r\n\r\nhello"
    )
    answer = await _raw_request(server.base_url, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200", answer
    assert orjson.loads(body)["content_uri"].startswith("mxc://")


async def test_registration_token_uses_beyond_the_integer_column(make_server):
    from tests.integration.accounts.test_accounts_registration_tokens import (
        ADMIN_API,
        admin_token,
        token_server,
    )

    server = await token_server(make_server)
    admin = await admin_token(server)
    for uses in (2**31, 2**63 - 1, 2**64):
        status, body = await server.request(
            "POST", ADMIN_API + "/new", token=admin, json={"token": "t", "uses_allowed": uses}
        )
        assert 400 <= status < 500 and body["errcode"], (uses, status, body)
    status, body = await server.request(
        "POST", ADMIN_API + "/new", token=admin, json={"token": "t", "uses_allowed": 2**31 - 1}
    )
    assert status == 200, body
