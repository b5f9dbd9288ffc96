"""U+0000 in every string the Client-Server API takes, operation by operation from the spec.

PostgreSQL text cannot hold U+0000, so a NUL that reaches a text column is an internal
error. The server refuses it at the boundary: in JSON bodies (M_BAD_JSON), path and query
parameters (M_INVALID_PARAM). The one exception is event content, which is stored as
canonical JSON text where the character is escaped; Synapse accepts it there too.

The requests are generated from the OpenAPI files by tests/hostile_sweep.py, which the
sweep of other hostile values (tests/integration/hostile/test_hostile_edge_fuzz.py)
shares: here U+0000 goes into every slot (string field, object key, path and query
parameter) of every operation.
"""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

import pytest

from tests.hostile_sweep import (
    NUL,
    NUL_PAYLOAD,
    Operation,
    Payload,
    Slot,
    Variant,
    make_context,
    sweep,
)

# The operations whose body is event content: U+0000 there is stored escaped and accepted.
CONTENT_BODIES = {
    ("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}"),
    ("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey}"),
}


def _every_slot(op: Operation, slots: list[Slot]) -> list[tuple[Slot, tuple[Payload, ...]]]:
    return [(slot, (NUL_PAYLOAD,)) for slot in slots]


def _refused(op: Operation, variant: Variant, status: int, body: Any) -> str | None:
    """Why this answer to a NUL input is wrong, or None."""
    if status >= 500:
        return "server error"
    legit = op.key in CONTENT_BODIES and variant.slot.where in ("string", "key")
    if 200 <= status < 300:
        return None if legit else "accepted"
    if not (400 <= status < 500):
        return f"status {status}"
    if not (isinstance(body, dict) and str(body.get("errcode", "")).startswith("M_")):
        return "no Matrix errcode"
    return None


async def test_nul_in_every_string_of_every_client_operation(server):
    result = await sweep(server, _every_slot, _refused)
    print(f"\nU+0000 sweep: {dict(result.stats)}")
    print("Operations not served:", *sorted(result.unserved), sep="\n  ")
    failures = result.failures
    assert not failures, f"{len(failures)} wrong answers:\n" + "\n".join(failures)


@pytest.mark.parametrize("field", ["pushkey", "app_id", "lang", "app_display_name"])
async def test_pusher_fields_refuse_nul_and_store_nothing(server, field):
    ctx = await make_context(server)
    body = {
        "pushkey": "key",
        "kind": "http",
        "app_id": "org.example.app",
        "app_display_name": "App",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"},
    }
    body[field] += NUL
    status, answer = await server.request(
        "POST", "/_matrix/client/v3/pushers/set", token=ctx.token, json=body
    )
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    status, answer = await server.request("GET", "/_matrix/client/v3/pushers", token=ctx.token)
    assert (status, answer) == (200, {"pushers": []})


async def test_nul_in_event_content_is_stored_and_returned(server):
    ctx = await make_context(server)
    status, sent = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{ctx.room_id}/send/m.room.message/nul1",
        token=ctx.token,
        json={"msgtype": "m.text", "body": "a" + NUL + "b"},
    )
    assert status == 200
    status, event = await server.request(
        "GET",
        f"/_matrix/client/v3/rooms/{ctx.room_id}/event/{sent['event_id']}",
        token=ctx.token,
    )
    assert status == 200 and event["content"]["body"] == "a" + NUL + "b"


async def test_nul_membership_in_member_state_is_refused(server):
    """A member event's membership goes to its own column: the content exception ends there."""
    ctx = await make_context(server)
    user = urllib.parse.quote(ctx.user_id, safe="")
    before = await server.db.fetchval("SELECT count(*) FROM events")
    status, answer = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{ctx.room_id}/state/m.room.member/{user}",
        token=ctx.token,
        json={"membership": "join" + NUL},
    )
    assert 400 <= status < 500 and answer["errcode"].startswith("M_")
    assert await server.db.fetchval("SELECT count(*) FROM events") == before


async def test_nul_in_access_token_and_unknown_query(server):
    status, answer = await server.request(
        "GET", "/_matrix/client/v3/account/whoami?access_token=abc%00"
    )
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
    ctx = await make_context(server)
    status, answer = await server.request(
        "GET", "/_matrix/client/v3/account/whoami?x%00=1", token=ctx.token
    )
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")


def _x(text: str) -> str:
    return text.replace("0", NUL)


# Event content our server reads back as IDs and looks up (aliases, rooms, events, users).
LOOKED_UP_CONTENT = [
    ("send", "m.room.redaction", {"redacts": _x("$0")}),
    (
        "send",
        "m.room.message",
        {"body": "r", "m.relates_to": {"rel_type": "m.thread", "event_id": _x("$0")}},
    ),
    (
        "send",
        "m.room.message",
        {"body": "r", "m.relates_to": {"m.in_reply_to": {"event_id": _x("$0")}}},
    ),
    (
        "send",
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": _x("$0"), "key": "k"}},
    ),
    ("state", "m.room.canonical_alias", {"alias": _x("#a0:test.local")}),
    ("state", "m.room.canonical_alias", {"alt_aliases": [_x("#a0:test.local")]}),
    (
        "state",
        "m.room.join_rules",
        {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": _x("!0:test.local")}],
        },
    ),
    ("state", "m.room.join_rules", {"join_rule": _x("public0")}),
    ("state", "m.room.history_visibility", {"history_visibility": _x("shared0")}),
    ("state", "m.room.power_levels", {"users": {_x("@0:test.local"): 100}}),
    ("state", "m.room.tombstone", {"body": "moved", "replacement_room": _x("!0:test.local")}),
    ("state", "m.room.pinned_events", {"pinned": [_x("$0")]}),
    ("state", "m.room.server_acl", {"allow": [_x("*0")], "deny": []}),
    ("state", "m.room.encryption", {"algorithm": _x("m.megolm.v1.aes-sha20")}),
    ("state", "m.room.avatar", {"url": _x("mxc://test.local/0")}),
]


@pytest.mark.parametrize("kind,event_type,content", LOOKED_UP_CONTENT)
async def test_nul_in_event_content_that_is_looked_up(server, kind, event_type, content):
    ctx = await make_context(server)
    if kind == "send":
        path = f"/rooms/{ctx.room_id}/send/{event_type}/nul-{secrets.token_hex(4)}"
    else:
        path = f"/rooms/{ctx.room_id}/state/{event_type}/"
    status, answer = await server.request(
        "PUT", "/_matrix/client/v3" + path, token=ctx.token, json=content
    )
    assert status < 500, (status, answer)
    if status >= 400:
        assert answer["errcode"].startswith("M_")
    # The room still works for its creator.
    status, _ = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{ctx.room_id}/state", token=ctx.token
    )
    assert status == 200
    status, _ = await server.request("GET", "/_matrix/client/v3/sync?timeout=0", token=ctx.token)
    assert status == 200
    status, _ = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{ctx.room_id}/messages?dir=b", token=ctx.token
    )
    assert status == 200
    # Another user's join runs the join rules and reads the room's state.
    other = await server.client()
    status, answer = await server.request(
        "POST", f"/_matrix/client/v3/join/{ctx.room_id}", token=other.access_token, json={}
    )
    assert status < 500, (status, answer)


@pytest.mark.parametrize(
    "path",
    [
        "/sync?timeout=0&filter=",
        "/rooms/{room}/messages?dir=b&filter=",
        "/rooms/{room}/context/{event}?filter=",
    ],
)
async def test_nul_in_inline_json_filters(server, path):
    """Filters given inline as JSON in the query: U+0000 as the JSON escape, not as %00."""
    ctx = await make_context(server)
    inline = '{"room": {"rooms": ["!a\\u0000"], "timeline": {"types": ["b\\u0000"]}}, '
    inline += '"types": ["c\\u0000"], "senders": ["@d\\u0000:x"]}'
    url = path.format(room=ctx.room_id, event=ctx.event_id) + urllib.parse.quote(inline)
    status, answer = await server.request("GET", "/_matrix/client/v3" + url, token=ctx.token)
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
