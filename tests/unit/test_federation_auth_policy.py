"""X-Matrix header parsing and signing, key response checks, and the allow-list."""

from __future__ import annotations

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from federation.key_fetcher import KeyResponseError, key_usable, parse_server_keys
from federation.policy import ServerPolicy, split_server_name
from federation.request_auth import (
    authorization_header,
    parse_authorization,
    verify_request_signature,
)
from homeserver.http.errors import MatrixError
from storage.federation import RemoteKey

KEY = generate_signing_key("k1")


def test_header_round_trip_and_verification():
    header = authorization_header(KEY, "a.org", "b.org:8448", "POST", "/p?x=1", {"c": 1})
    parsed = parse_authorization(header)
    assert (parsed.origin, parsed.destination, parsed.key) == ("a.org", "b.org:8448", "ed25519:k1")
    verify_request_signature(parsed, "POST", "/p?x=1", "b.org:8448", {"c": 1}, get_verify_key(KEY))
    for method, uri, dest, content in (
        ("GET", "/p?x=1", "b.org:8448", {"c": 1}),
        ("POST", "/p?x=2", "b.org:8448", {"c": 1}),
        ("POST", "/p?x=1", "c.org", {"c": 1}),
        ("POST", "/p?x=1", "b.org:8448", {"c": 2}),
    ):
        with pytest.raises(MatrixError) as err:
            verify_request_signature(parsed, method, uri, dest, content, get_verify_key(KEY))
        assert err.value.errcode == "M_UNAUTHORIZED"


def test_header_parsing_is_lenient_as_the_spec_asks():
    parsed = parse_authorization(
        'X-Matrix  Origin=a.org:8448 , key="ed25519:k1",\tsig="ab\\"c", destination=b.org, x=y'
    )
    assert parsed.origin == "a.org:8448"
    assert parsed.sig == 'ab"c'
    assert parsed.destination == "b.org"
    assert parse_authorization('X-Matrix origin="a",key="k",sig="s"').destination is None


@pytest.mark.parametrize(
    "value",
    ["Bearer abc", 'X-Matrix origin="a",key="k"', "X-Matrix origin", 'X-Matrix origin="a'],
)
def test_bad_headers_are_unauthorized(value):
    with pytest.raises(MatrixError) as err:
        parse_authorization(value)
    assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")


def _response(server="a.org", valid_until=2_000, key=KEY, **extra):
    body = {
        "server_name": server,
        "valid_until_ts": valid_until,
        "verify_keys": {"ed25519:k1": {"key": encode_verify_key_base64(get_verify_key(KEY))}},
        "old_verify_keys": {},
        **extra,
    }
    return sign_json(body, server, key)


def test_key_responses_are_checked():
    keys = parse_server_keys(_response(), "a.org")
    assert [(k.key_id, k.valid_until_ts) for k in keys] == [("ed25519:k1", 2_000)]
    with pytest.raises(KeyResponseError):
        parse_server_keys(_response(), "b.org")  # for another server
    # Expired, still parsed: its key verifies what was signed before it expired.
    [old] = parse_server_keys(_response(valid_until=500), "a.org")
    assert key_usable(old, 400) and not key_usable(old, 1_000)
    with pytest.raises(KeyResponseError):  # signed by a key it does not publish
        parse_server_keys(_response(key=generate_signing_key("k2")), "a.org")
    forged = sign_json(
        {**_response(), "signatures": {}}, "a.org", generate_signing_key("k1")
    )  # same key id, different key
    with pytest.raises(KeyResponseError):
        parse_server_keys(forged, "a.org")
    tampered = _response()
    tampered["valid_until_ts"] = 9_999
    with pytest.raises(KeyResponseError):
        parse_server_keys(tampered, "a.org")


def test_old_keys_are_usable_only_before_they_expired():
    old = RemoteKey("a.org", "ed25519:old", "x", 500, 500)
    assert key_usable(old, 400) and not key_usable(old, 600)
    current = RemoteKey("a.org", "ed25519:k1", "x", 2_000, None)
    assert key_usable(current, 1_999) and not key_usable(current, 2_001)


def test_policy_exact_names_wildcards_and_ports():
    policy = ServerPolicy(("hs.example.org", "other.org:8448", "*.example.gouv.fr"))
    assert policy.is_allowed("hs.example.org")
    assert policy.is_allowed("HS.example.org:1234")  # no port in the entry: any port
    assert policy.is_allowed("other.org:8448")
    assert not policy.is_allowed("other.org:8449")
    assert policy.is_allowed("a.example.gouv.fr") and policy.is_allowed("b.a.example.gouv.fr:8448")
    assert not policy.is_allowed("example.gouv.fr")
    assert not policy.is_allowed("evil-example.gouv.fr")
    assert not policy.is_allowed("example.gouv.fr.evil.org")
    assert not ServerPolicy(()).is_allowed("hs.example.org")
    assert not ServerPolicy(()).federates


def test_split_server_name():
    assert split_server_name("a.org") == ("a.org", None)
    assert split_server_name("a.org:1") == ("a.org", 1)
    assert split_server_name("[::1]:8448") == ("[::1]", 8448)
    assert split_server_name("[::1]") == ("[::1]", None)
