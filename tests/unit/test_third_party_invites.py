"""Pure parts of third-party invites: the identity service's lookup hash (the spec's own
examples) and the signing key found for a signed block (auth rules)."""

from __future__ import annotations

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.accounts.identity_servers import lookup_hash
from homeserver.events.auth import third_party_signing_key


def test_lookup_hash_matches_the_spec_examples():
    assert lookup_hash("email", "alice@example.com", "matrixrocks") == (
        "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"
    )
    assert lookup_hash("email", "bob@example.com", "matrixrocks") == (
        "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8"
    )
    assert lookup_hash("msisdn", "18005552067", "matrixrocks") == (
        "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"
    )


def _public(key) -> str:
    return encode_verify_key_base64(get_verify_key(key))


def test_signing_key_is_the_invite_key_that_signed():
    first, second, other = (generate_signing_key("0") for _ in range(3))
    content = {
        "display_name": "Bob",
        "public_key": _public(first),
        "key_validity_url": "https://id.example/_matrix/identity/v2/pubkey/isvalid",
        "public_keys": [{"public_key": _public(first)}, {"public_key": _public(second)}],
    }
    signed = sign_json({"mxid": "@bob:hs.example", "token": "t"}, "id.example", second)
    assert third_party_signing_key(signed, content) == _public(second)
    forged = sign_json({"mxid": "@bob:hs.example", "token": "t"}, "id.example", other)
    assert third_party_signing_key(forged, content) is None
    tampered = {**signed, "mxid": "@eve:hs.example"}
    assert third_party_signing_key(tampered, content) is None
    assert third_party_signing_key({"mxid": "@bob:hs.example", "token": "t"}, content) is None
