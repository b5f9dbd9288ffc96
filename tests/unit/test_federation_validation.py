"""Checks 1-3 on received PDUs: format, signatures, content hashes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from federation.events.validation import (
    InvalidPdu,
    parse_pdu,
    required_signers,
    validate_pdu,
)
from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import sign_event

NOW = 1_700_000_000_000
A, B, C = "a.test", "b.test:8448", "c.test"
KEYS = {name: generate_signing_key("k1") for name in (A, B, C)}


class Keys:
    """Stands in for the key fetcher: each server's key, valid until `valid_until`."""

    def __init__(self, valid_until: int = NOW * 2, known=(A, B, C)):
        self.valid_until = valid_until
        self.known = known
        self.asked: list[tuple[str, str, int]] = []

    async def verify_key(self, server_name: str, key_id: str, at_ts: int):
        self.asked.append((server_name, key_id, at_ts))
        if server_name not in self.known or key_id != "ed25519:k1" or self.valid_until < at_ts:
            return None
        return get_verify_key(KEYS[server_name])


def _room_id(version: str) -> str:
    return (
        "!" + "r" * 43 if KNOWN_ROOM_VERSIONS[version].room_id_is_create_event_hash else f"!r:{A}"
    )


def make_event(version: str = "12", *, sign_as=(A,), **fields) -> dict[str, Any]:
    rv = KNOWN_ROOM_VERSIONS[version]
    ref = "$" + "e" * 43 if not rv.event_ids_carry_domain else [f"$e:{A}", {"sha256": "x"}]
    event: dict[str, Any] = {
        "room_id": _room_id(version),
        "type": "m.room.message",
        "sender": f"@alice:{A}",
        "content": {"msgtype": "m.text", "body": "hello"},
        "origin_server_ts": NOW,
        "depth": 5,
        "prev_events": [ref],
        "auth_events": [ref],
    }
    if rv.event_ids_carry_domain:
        event["event_id"] = f"$ev1:{A}"
    event.update(fields)
    event = add_content_hash(event)
    for server in sign_as:
        event = sign_event(event, server, KEYS[server], rv)
    return event


async def validate(event, version="12", keys=None, **kw):
    return await validate_pdu(keys or Keys(), event, version, **kw)


async def test_valid_v12_event_gets_its_reference_hash_id():
    event = make_event(unsigned={"age": 3})
    event_id, checked = await validate(event)
    rv = KNOWN_ROOM_VERSIONS["12"]
    assert event_id == compute_event_id(event, rv)
    assert "unsigned" not in checked
    assert checked["content"] == event["content"]


async def test_v1_event_keeps_its_own_id_and_needs_its_domain_signature():
    event = make_event("1", event_id=f"$ev1:{B}", sign_as=(A,))
    with pytest.raises(InvalidPdu, match="b.test"):
        await validate(event, "1")
    event = make_event("1", event_id=f"$ev1:{B}", sign_as=(A, B))
    event_id, _ = await validate(event, "1")
    assert event_id == f"$ev1:{B}"


def _without(key):
    def mutate(event):
        del event[key]

    return mutate


def _set(key, value):
    def mutate(event):
        event[key] = value

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        _without("type"),
        _without("sender"),
        _without("content"),
        _without("depth"),
        _without("origin_server_ts"),
        _without("hashes"),
        _without("signatures"),
        _without("prev_events"),
        _without("auth_events"),
        _without("room_id"),
        _set("type", 5),
        _set("type", "t" * 256),
        _set("sender", "alice"),
        _set("sender", "@alice:bad host"),
        _set("content", ["not", "an", "object"]),
        _set("depth", 1.5),
        _set("depth", True),
        _set("depth", -1),
        _set("depth", 2**53),
        _set("origin_server_ts", "now"),
        _set("state_key", 7),
        _set("hashes", {"sha256": 1}),
        _set("signatures", {A: "sig"}),
        _set("prev_events", "$x"),
        _set("prev_events", [5]),
        _set("prev_events", ["$" + str(i) for i in range(21)]),
        _set("auth_events", ["$" + str(i) for i in range(11)]),
        _set("room_id", "!short"),
        _set("redacts", ["$x"]),
    ],
)
async def test_malformed_pdus_are_dropped(mutate):
    event = make_event()
    mutate(event)
    with pytest.raises(InvalidPdu):
        await validate(event)


async def test_non_object_pdu_is_dropped():
    for pdu in (None, [], "event", 5):
        with pytest.raises(InvalidPdu):
            await validate(pdu)


async def test_v1_reference_pairs_are_checked():
    event = make_event("1", sign_as=(A,))
    event["prev_events"] = ["$bare:a.test"]
    with pytest.raises(InvalidPdu, match="prev_events"):
        parse_pdu(event, "1")


async def test_backfill_answers_are_not_held_to_reference_counts():
    many = ["$" + "p" * 42 + chr(65 + i) for i in range(25)]
    event = make_event(prev_events=many)
    with pytest.raises(InvalidPdu, match="prev_events"):
        await validate(event)
    event_id, _ = await validate(event, limit_references=False)
    assert event_id.startswith("$")


async def test_oversized_pdu_is_dropped():
    event = make_event(content={"body": "x" * 66_000, "msgtype": "m.text"})
    with pytest.raises(InvalidPdu, match="larger"):
        await validate(event)


@pytest.mark.parametrize("value", [1.5, 2**53, -(2**53)])
async def test_strict_canonical_json_from_v6(value):
    content = {"msgtype": "m.text", "body": "n", "n": value}
    with pytest.raises(InvalidPdu):
        await validate(make_event("6", content=content), "6")
    await validate(make_event("5", content=content), "5")  # accepted before v6


async def test_v12_create_event_must_not_carry_a_room_id():
    create = make_event(
        type="m.room.create", state_key="", prev_events=[], auth_events=[], content={}
    )
    with pytest.raises(InvalidPdu, match="room_id"):
        parse_pdu(create, "12")
    del create["room_id"]
    parse_pdu(create, "12")


async def test_signature_by_the_sender_server_is_required():
    with pytest.raises(InvalidPdu, match="a.test"):
        await validate(make_event(sign_as=(B,)))
    with pytest.raises(InvalidPdu):
        await validate(make_event(sign_as=()))


async def test_unknown_keys_are_skipped_and_then_nothing_verifies():
    with pytest.raises(InvalidPdu, match="no signature"):
        await validate(make_event(), keys=Keys(known=(B,)))


async def test_forged_signature_is_dropped():
    event = make_event()
    event["origin_server_ts"] += 1  # covered by the signature (and by the hash)
    with pytest.raises(InvalidPdu, match="bad signature"):
        await validate(event)
    event = make_event()
    other = make_event(content={"msgtype": "m.text", "body": "other"}, origin_server_ts=NOW + 5)
    event["signatures"] = other["signatures"]
    with pytest.raises(InvalidPdu, match="bad signature"):
        await validate(event)


async def test_key_must_be_valid_at_origin_server_ts_from_v5():
    keys = Keys(valid_until=NOW - 1)
    with pytest.raises(InvalidPdu):
        await validate(make_event("5"), "5", keys=keys)
    assert keys.asked[-1][2] == NOW
    # v4 and earlier accept any key the server ever published.
    await validate(make_event("4"), "4", keys=Keys(valid_until=NOW - 1))


async def test_wrong_content_hash_means_the_redacted_event_is_used():
    event = make_event()
    event["content"] = {"msgtype": "m.text", "body": "changed in transit"}
    event_id, checked = await validate(event)
    assert checked["content"] == {}
    assert event_id == compute_event_id(make_event(), KNOWN_ROOM_VERSIONS["12"])
    # A state event keeps what redaction keeps.
    member = make_event(
        type="m.room.member", state_key=f"@alice:{A}", content={"membership": "join"}
    )
    member["content"]["displayname"] = "injected"
    _, checked = await validate(member)
    assert checked["content"] == {"membership": "join"}


async def test_restricted_join_needs_the_authorising_server_signature():
    content = {"membership": "join", "join_authorised_via_users_server": f"@bob:{B}"}
    join = dict(type="m.room.member", state_key=f"@alice:{A}", content=content)
    with pytest.raises(InvalidPdu, match="b.test"):
        await validate(make_event("10", sign_as=(A,), **join), "10")
    await validate(make_event("10", sign_as=(A, B), **join), "10")
    # Before restricted rooms (v7) the key means nothing and needs no signature.
    await validate(make_event("7", sign_as=(A,), **join), "7")


def test_third_party_invite_does_not_need_the_sender_server():
    rv = KNOWN_ROOM_VERSIONS["12"]
    invite = make_event(
        type="m.room.member",
        state_key=f"@carol:{C}",
        content={"membership": "invite", "third_party_invite": {"signed": {}}},
    )
    assert required_signers(invite, "$x", rv) == set()
    plain = copy.deepcopy(invite)
    del plain["content"]["third_party_invite"]
    assert required_signers(plain, "$x", rv) == {A}


NUL = "\x00"


@pytest.mark.parametrize(
    ("version", "fields"),
    [
        ("12", {"type": f"m.room.t{NUL}"}),
        ("12", {"state_key": NUL}),
        ("12", {"sender": f"@al{NUL}ice:{A}"}),
        ("12", {"origin": f"{A}{NUL}"}),
        ("12", {"redacts": f"${NUL}"}),
        ("12", {"content": {"redacts": f"${NUL}"}}),
        ("12", {"type": "m.room.member", "state_key": "@b:a.test", "content": {"membership": NUL}}),
        ("12", {"prev_events": [f"$p{NUL}"]}),
        ("12", {"auth_events": [f"$a{NUL}"]}),
        ("1", {"event_id": f"$e{NUL}v:{A}"}),
        ("1", {"room_id": f"!r{NUL}:{A}"}),
        ("1", {"prev_events": [[f"$p{NUL}:{A}", {"sha256": "x"}]]}),
    ],
)
async def test_nul_in_a_field_stored_in_a_column_drops_the_pdu(version, fields):
    with pytest.raises(InvalidPdu, match="U\\+0000"):
        parse_pdu(make_event(version, **fields), version)


async def test_nul_in_content_is_kept_and_verifies():
    content = {"body": f"a{NUL}b", f"k{NUL}": [NUL], "membership": ["not a string"]}
    event_id, checked = await validate(make_event(content=content))
    assert checked["content"] == content
