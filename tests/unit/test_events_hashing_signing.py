"""Hashes, event ids and signatures, checked against the spec's test vectors
(appendices, "Cryptographic Test Vectors")."""

import copy

import pytest
from signedjson.key import decode_signing_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.events.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    room_id_from_create_event,
)
from homeserver.events.redaction import prune_event
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS
from homeserver.events.signing import hash_and_sign_event, sign_event, verify_event_signature

V = KNOWN_ROOM_VERSIONS
SPEC_KEY = decode_signing_key_base64("ed25519", "1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")

MINIMAL_EVENT = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MINIMAL_EVENT_SIGNED = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}
MESSAGE_EVENT = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
MESSAGE_EVENT_SIGNED = {
    **MESSAGE_EVENT,
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    },
}


def test_spec_json_signing_vectors_with_spec_key():
    # Guards the key seed decoding used by the event vectors below.
    assert sign_json({}, "domain", SPEC_KEY)["signatures"]["domain"]["ed25519:1"] == (
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    )
    signed = sign_json({"one": 1, "two": "Two"}, "domain", SPEC_KEY)
    assert signed["signatures"]["domain"]["ed25519:1"] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
    )


@pytest.mark.parametrize(
    ("event", "expected"),
    [(MINIMAL_EVENT, MINIMAL_EVENT_SIGNED), (MESSAGE_EVENT, MESSAGE_EVENT_SIGNED)],
)
def test_spec_event_signing_vectors(event, expected):
    # The spec's vectors keep `origin` and `event_id`, i.e. the v1 redaction rules.
    original = copy.deepcopy(event)
    assert hash_and_sign_event(event, "domain", SPEC_KEY, V["1"]) == expected
    assert event == original  # the input is not mutated


def test_content_hash_matches_spec_and_ignores_unsigned_and_signatures():
    assert compute_content_hash(MINIMAL_EVENT) == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
    noisy = {**MINIMAL_EVENT, "unsigned": {"age": 5}, "signatures": {"x": {"ed25519:a": "b"}}}
    assert compute_content_hash(noisy) == compute_content_hash(MINIMAL_EVENT)


def test_check_content_hash_detects_changed_content():
    hashed = add_content_hash(MESSAGE_EVENT)
    assert "hashes" not in MESSAGE_EVENT
    assert check_content_hash(hashed)
    tampered = {**hashed, "content": {"body": "something else"}}
    assert not check_content_hash(tampered)
    assert not check_content_hash(MESSAGE_EVENT)  # no hash at all
    assert not check_content_hash({**hashed, "hashes": {"sha256": "!!not base64!!"}})


def _event_with_special_base64_chars():
    # Find an event whose reference hash has '+' or '/' in standard base64, so the v3
    # and v4 id alphabets visibly differ.
    for ts in range(1000):
        event = {**MINIMAL_EVENT, "origin_server_ts": ts}
        event_id = compute_event_id(event, V["3"])
        if "+" in event_id or "/" in event_id:
            return event, event_id
    raise AssertionError("no suitable event found")


def test_event_id_alphabets_v3_vs_v4():
    event, v3_id = _event_with_special_base64_chars()
    v4_id = compute_event_id(event, V["4"])
    assert v3_id.startswith("$") and v4_id.startswith("$")
    assert v4_id == v3_id.replace("+", "-").replace("/", "_")
    assert len(v4_id) == 44  # "$" + 43 chars of unpadded base64 of 32 bytes


def test_event_id_is_stable_under_redaction_signing_and_unsigned():
    rv = V["10"]
    event = add_content_hash({**MINIMAL_EVENT, "content": {"body": "hi"}})
    event_id = compute_event_id(event, rv)
    assert compute_event_id(prune_event(event, rv), rv) == event_id
    assert compute_event_id(sign_event(event, "domain", SPEC_KEY, rv), rv) == event_id
    assert compute_event_id({**event, "unsigned": {"age": 1}}, rv) == event_id
    # Our dicts may carry the computed id; it must not feed back into the hash.
    assert compute_event_id({**event, "event_id": event_id}, rv) == event_id
    # But essential fields do change it.
    assert compute_event_id({**event, "depth": 4}, rv) != event_id
    assert len(compute_reference_hash(event, rv)) == 32


def test_event_id_depends_on_redaction_rules_of_the_version():
    event = add_content_hash(
        {**MINIMAL_EVENT, "type": "m.room.power_levels", "state_key": "", "content": {"invite": 5}}
    )
    # v11 keeps `invite` and drops `origin`; v10 the opposite, so the ids differ.
    assert compute_event_id(event, V["10"]) != compute_event_id(event, V["11"])


def test_v1_v2_event_ids_are_not_hashes():
    for version in ("1", "2"):
        with pytest.raises(ValueError):
            compute_event_id(MINIMAL_EVENT, V[version])


def test_v12_room_id_from_create_event():
    rv = V["12"]
    create = add_content_hash(
        {
            "type": "m.room.create",
            "state_key": "",
            "sender": "@a:domain",
            "content": {"room_version": "12"},
            "origin_server_ts": 1,
            "depth": 1,
            "prev_events": [],
            "auth_events": [],
        }
    )
    room_id = room_id_from_create_event(create, rv)
    assert room_id == "!" + compute_event_id(create, rv)[1:]
    assert ":" not in room_id
    with pytest.raises(ValueError):
        room_id_from_create_event(create, V["11"])


@pytest.mark.parametrize("version", sorted(KNOWN_ROOM_VERSIONS, key=int))
def test_sign_then_verify_roundtrip_per_version(version):
    rv = V[version]
    key = generate_signing_key("k1")
    verify_key = get_verify_key(key)
    event = hash_and_sign_event({**MESSAGE_EVENT, "room_id": "!r:domain"}, "domain", key, rv)
    keys = {"ed25519:k1": verify_key}
    assert verify_event_signature(event, rv, "domain", keys)
    # A redacted copy still verifies: signatures cover only the pruned event.
    assert verify_event_signature(prune_event(event, rv), rv, "domain", keys)
    # Changing an essential field breaks it.
    assert not verify_event_signature({**event, "sender": "@v:domain"}, rv, "domain", keys)
    # No signature from that server, or no known key: not verified.
    assert not verify_event_signature(event, rv, "other", keys)
    other_key = get_verify_key(generate_signing_key("k2"))
    assert not verify_event_signature(event, rv, "domain", {"ed25519:k2": other_key})
    # The wrong key under the right key id fails.
    assert not verify_event_signature(event, rv, "domain", {"ed25519:k1": other_key})


def test_sign_event_merges_with_existing_signatures_and_default_version():
    key = generate_signing_key("k1")
    event = add_content_hash({**MESSAGE_EVENT, "signatures": {"other": {"ed25519:x": "sig"}}})
    signed = sign_event(event, "domain", key)
    assert signed["signatures"]["other"] == {"ed25519:x": "sig"}
    assert set(signed["signatures"]["domain"]) == {"ed25519:k1"}
    default_rv = V[DEFAULT_ROOM_VERSION]
    assert verify_event_signature(signed, default_rv, "domain", {"ed25519:k1": get_verify_key(key)})
    assert event["signatures"] == {"other": {"ed25519:x": "sig"}}  # input untouched
