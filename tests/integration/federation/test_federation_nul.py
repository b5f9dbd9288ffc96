"""U+0000 in federation input (issue 10, item 5): PostgreSQL text cannot hold it.

Event content may carry it (the event's JSON is stored as canonical text, where it is
escaped), so a PDU with it in content is accepted unchanged and its hashes still verify.
A PDU with it in a field stored in its own column is refused under its event id, the rest
of the transaction going on; anywhere else in a federation request it is a 400, never a
5xx, and changes nothing.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.events.hashing import check_content_hash, compute_event_id
from homeserver.events.signing import hash_and_sign_event
from tests.federation_rooms import shared_room
from tests.integration.federation.helpers import new_txn_id, signed_request, transaction
from tests.integration.federation.test_federation_route_auth import (
    PUBLIC,
    mounted_federation_routes,
)

NUL = "\x00"


@pytest.fixture
async def room(make_server, ca):
    return await shared_room(make_server, ca)


async def _send(room, ca, pdus=(), edus=()) -> tuple[int, Any]:
    """hs2 sends hs1 a signed transaction."""
    path = f"/_matrix/federation/v1/send/{new_txn_id()}"
    body = transaction(room.hs2.server_name, pdus, edus)
    return await signed_request(room.hs2, room.hs1, ca, "PUT", path, body)


async def _altered(room, event: dict[str, Any], **changes) -> tuple[str, dict[str, Any]]:
    """`event` with `changes`, hashed and signed again by hs2: a well-signed PDU."""
    unsigned = {k: v for k, v in event.items() if k not in ("hashes", "signatures")}
    unsigned.update(changes)
    version = (await room.hs1.hs.events.room_head(room.room_id)).version
    signed = hash_and_sign_event(unsigned, room.hs2.server_name, room.hs2.hs.signing_key, version)
    return compute_event_id(signed, version), signed


async def test_nul_in_event_content_is_stored_and_verifies(room, ca):
    content = {"msgtype": "m.text", "body": f"before{NUL}after", f"k{NUL}": [NUL]}
    event_id, event = await room.bad_event(room.bob.user_id, "m.room.message", content)
    status, answer = await _send(room, ca, [event])
    assert status == 200, answer
    assert answer == {"pdus": {event_id: {}}}
    stored = await room.hs1.hs.event_store.get_event(event_id)
    assert stored is not None and stored.status in (None, "timeline")
    # Not redacted (a failed hash check would have pruned the content): stored as sent.
    assert stored.content == content
    assert check_content_hash(stored.event)


async def test_pdus_with_nul_in_stored_fields_are_refused_one_by_one(room, ca):
    before = await room.state(room.hs1)
    bob = room.bob.user_id
    _, topic = await room.bad_event(bob, "m.room.topic", {"topic": "fine"}, "")
    _, member = await room.bad_event(bob, "m.room.member", {"membership": "join"}, bob)
    _, message = await room.bad_event(bob, "m.room.message", {"body": "x"})
    forged = [
        await _altered(room, topic, type=f"m.room.to{NUL}pic"),
        await _altered(room, topic, state_key=NUL),
        await _altered(room, topic, sender=f"@bob{NUL}:{room.hs2.server_name}"),
        await _altered(room, member, content={"membership": f"jo{NUL}in"}),
        await _altered(room, message, prev_events=[f"$a{NUL}b"]),
        await _altered(room, message, auth_events=[*message["auth_events"], f"$c{NUL}"]),
        await _altered(room, message, type="m.room.redaction", redacts=f"$r{NUL}"),
        await _altered(room, message, origin=f"hs2{NUL}"),
    ]
    # And one whose room_id cannot be a room of ours: no id to answer under, no 5xx.
    _, elsewhere = await _altered(room, message, room_id=f"!r{NUL}:{room.hs2.server_name}")
    good_id, good = await room.bad_event(bob, "m.room.message", {"body": "still delivered"})
    status, answer = await _send(room, ca, [pdu for _, pdu in forged] + [elsewhere, good])
    assert status == 200, answer
    for event_id, _ in forged:
        assert "U+0000" in answer["pdus"][event_id]["error"], answer["pdus"][event_id]
        assert await room.status(room.hs1, event_id) == "missing"
    assert answer["pdus"][good_id] == {}
    assert set(answer["pdus"]) == {good_id, *(event_id for event_id, _ in forged)}
    assert await room.state(room.hs1) == before
    assert await room.extremities(room.hs1) == [good_id]  # only the good one went in


async def test_edu_with_nul_is_refused_without_a_5xx(room, ca):
    edus = [
        {
            "edu_type": "m.typing",
            "content": {"room_id": room.room_id, "user_id": room.bob.user_id + NUL},
        },
        {"edu_type": "m.presence", "content": {"push": [{"user_id": NUL, "presence": NUL}]}},
        {
            "edu_type": "m.direct_to_device",
            "content": {
                "sender": room.bob.user_id,
                "type": f"m.x{NUL}",
                "message_id": NUL,
                "messages": {room.alice.user_id: {"*": {"k": NUL}}},
            },
        },
    ]
    for edu in edus:
        status, answer = await _send(room, ca, edus=[edu])
        assert status == 400, (edu["edu_type"], status, answer)
        assert answer["errcode"] == "M_BAD_JSON"


def _nul_event(room, membership: str, sender_server: str) -> dict[str, Any]:
    """An event-shaped body with U+0000 in every field that goes to a column."""
    return {
        "type": "m.room.member",
        "room_id": room.room_id,
        "sender": f"@u{NUL}:{sender_server}",
        "state_key": f"@u{NUL}:{room.hs1.server_name}",
        "origin": sender_server,
        "origin_server_ts": 1,
        "depth": 1,
        "prev_events": [f"${NUL}"],
        "auth_events": [f"${NUL}"],
        "content": {"membership": membership},
        "hashes": {"sha256": "x"},
        "signatures": {},
    }


async def test_no_federation_route_answers_nul_with_a_5xx(room, ca):
    """Every authenticated route, signed by hs2: U+0000 in each path parameter, in a query
    parameter, and (for routes with a body) in bodies shaped for each kind of route."""
    hs1, hs2 = room.hs1, room.hs2
    routes = [r for r in mounted_federation_routes(hs1) if (r[0], r[1]) not in PUBLIC]
    assert len(routes) >= 23, routes
    message = await room.bob_says("an event to name")
    real = {
        "room_id": room.room_id,
        "event_id": message,
        "user_id": room.bob.user_id,
        "txn_id": new_txn_id(),
        "server_name": hs2.server_name,
        "media_id": "abcdef",
    }
    event = _nul_event(room, "join", hs2.server_name)
    bodies = [
        {f"k{NUL}": NUL, "origin": hs2.server_name},
        transaction(hs2.server_name, [event, {**event, "room_id": f"!{NUL}:x"}]),
        event,
        {**event, "content": {"membership": "leave"}},
        {**event, "content": {"membership": "knock"}},
        {"room_version": "12", "event": {**event, "content": {"membership": "invite"}}},
        {"room_version": "12", "event": event, "invite_room_state": [{"type": NUL}]},
        {"earliest_events": [f"${NUL}"], "latest_events": [message], "limit": 10},
        {"device_keys": {f"@u{NUL}:{hs1.server_name}": []}},
        {"one_time_keys": {room.alice.user_id: {NUL: "signed_curve25519"}}},
        {"filter": {"generic_search_term": NUL}, "limit": 5},
    ]
    wrong = []

    async def check(method: str, path: str, body: Any = None) -> None:
        status, answer = await signed_request(hs2, hs1, ca, method, path, body)
        if status >= 500:
            wrong.append((method, path, body, status, answer))

    for method, template, _ in routes:
        names = re.findall(r"{(\w+)}", template)

        def fill(values: dict[str, str], template: str = template) -> str:
            for name, value in values.items():
                template = template.replace("{" + name + "}", quote(value, safe=""))
            return template

        params = {name: real.get(name, "placeholder") for name in names}
        for name in names:
            await check(method, fill({**params, name: params[name] + NUL}))
        await check(method, fill(params) + "?ver=12&limit=5&v=" + quote(message + NUL))
        if method in ("PUT", "POST"):
            for body in bodies:
                params["txn_id"] = new_txn_id()
                await check(method, fill(params), body)
    assert not wrong, wrong
    assert await room.state(hs1) == await room.state(hs2)
