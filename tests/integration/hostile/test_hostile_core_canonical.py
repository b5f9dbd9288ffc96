"""Canonical JSON in event content (issue 17, item 7).

Room versions 6 and later require canonical JSON: integers within ±(2**53 - 1) and no
floats. Such content is refused with 400 M_BAD_JSON, as Synapse does, wherever it would
become an event; and no JSON body may have 2**64 silently read as a float.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson
import pytest

V3 = "/_matrix/client/v3"

NOT_CANONICAL = [
    b'{"msgtype": "m.text", "body": "x", "n": 18446744073709551616}',  # 2**64
    b'{"msgtype": "m.text", "body": "x", "n": 9223372036854775808}',  # 2**63
    b'{"msgtype": "m.text", "body": "x", "n": 9007199254740992}',  # 2**53
    b'{"msgtype": "m.text", "body": "x", "n": -9007199254740992}',
    b'{"msgtype": "m.text", "body": "x", "n": 1.5}',
    b'{"msgtype": "m.text", "body": "x", "n": 1.0}',
    b'{"msgtype": "m.text", "body": "x", "deep": {"a": [1, 2, {"b": 2e3}]}}',
]


async def _put(server, token: str, path: str, raw: bytes):
    return await server.request(
        "PUT", V3 + path, token=token, data=raw, headers={"Content-Type": "application/json"}
    )


@pytest.fixture
async def room(server):
    alice = await server.client("alice")
    status, body = await server.request(
        "POST", f"{V3}/createRoom", token=alice.access_token, json={}
    )
    assert status == 200
    return alice, body["room_id"]


async def test_event_content_must_be_canonical_json(server, room):
    alice, room_id = room
    r = quote(room_id, safe="")
    before = await server.db.fetchval("SELECT count(*) FROM events")
    for i, raw in enumerate(NOT_CANONICAL):
        status, body = await _put(
            server, alice.access_token, f"/rooms/{r}/send/m.room.message/t{i}", raw
        )
        assert (status, body.get("errcode")) == (400, "M_BAD_JSON"), raw
        status, body = await _put(
            server, alice.access_token, f"/rooms/{r}/state/org.example.s/k{i}", raw
        )
        assert (status, body.get("errcode")) == (400, "M_BAD_JSON"), raw
    assert await server.db.fetchval("SELECT count(*) FROM events") == before

    # The edges of the range are fine, and come back exactly.
    raw = b'{"msgtype": "m.text", "body": "x", "max": 9007199254740991, "min": -9007199254740991}'
    status, sent = await _put(server, alice.access_token, f"/rooms/{r}/send/m.room.message/ok", raw)
    assert status == 200, sent
    status, event = await server.request(
        "GET", f"{V3}/rooms/{r}/event/{quote(sent['event_id'])}", token=alice.access_token
    )
    assert (event["content"]["max"], event["content"]["min"]) == (2**53 - 1, -(2**53 - 1))


async def test_room_creation_refuses_non_canonical_content_and_leaves_no_room(server):
    alice = await server.client("alice")
    bodies = [
        {"initial_state": [{"type": "org.example.s", "state_key": "", "content": {"n": 0.5}}]},
        {"power_level_content_override": {"users_default": 2**53}},
        {"creation_content": {"org.example.n": 1.5}},
    ]
    for body in bodies:
        status, answer = await server.request(
            "POST", f"{V3}/createRoom", token=alice.access_token, json=body
        )
        assert (status, answer.get("errcode")) == (400, "M_BAD_JSON"), body
    assert await server.db.fetchval("SELECT count(*) FROM rooms") == 0


async def test_floats_stay_allowed_in_room_versions_before_6(server):
    """As Synapse: v1-v5 do not require canonical JSON of events."""
    alice = await server.client("alice")
    status, body = await server.request(
        "POST", f"{V3}/createRoom", token=alice.access_token, json={"room_version": "5"}
    )
    assert status == 200, body
    r = quote(body["room_id"], safe="")
    status, body = await _put(
        server, alice.access_token, f"/rooms/{r}/send/m.room.message/f", NOT_CANONICAL[4]
    )
    assert status == 200, body
    # Beyond 64 bits is refused in every body: it cannot be kept exactly.
    status, body = await _put(
        server, alice.access_token, f"/rooms/{r}/send/m.room.message/g", NOT_CANONICAL[0]
    )
    assert (status, body.get("errcode")) == (400, "M_BAD_JSON")


async def test_no_body_stores_2_64_as_a_float(server):
    alice = await server.client("alice")
    path = f"/user/{quote(alice.user_id, safe='')}/account_data/org.example.big"
    for raw in (
        b'{"n": 18446744073709551616}',
        b'{"n": -9223372036854775809}',
        b'{"n": [1, 1' + b"0" * 30 + b"]}",
    ):
        status, body = await _put(server, alice.access_token, path, raw)
        assert (status, body.get("errcode")) == (400, "M_BAD_JSON"), raw
    # int64 and a run of digits in a string are fine, and come back exactly.
    raw = b'{"n": 9223372036854775807, "s": "12345678901234567890123"}'
    status, body = await _put(server, alice.access_token, path, raw)
    assert status == 200, body
    status, body = await server.request("GET", V3 + path, token=alice.access_token)
    assert body == orjson.loads(raw)
