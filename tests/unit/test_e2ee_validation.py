"""Pure checks of e2ee input: key IDs, public keys, signatures, backup key data."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from e2ee.backup import check_key_data, parse_version
from e2ee.signatures import check_public_key, split_key_id, verify_signature
from homeserver.http.errors import MatrixError


def test_split_key_id():
    assert split_key_id("signed_curve25519:AAAAHg", "x") == ("signed_curve25519", "AAAAHg")
    for bad in ("nocolon", ":x", "alg:", 5, None):
        with pytest.raises(MatrixError) as err:
            split_key_id(bad, "x")
        assert err.value.errcode == "M_INVALID_PARAM"


def test_public_key_must_be_32_bytes_of_unpadded_base64():
    check_public_key(encode_base64(bytes(32)), "x")
    for bad in (encode_base64(bytes(31)), "!!!", 7, None):
        with pytest.raises(MatrixError):
            check_public_key(bad, "x")


def test_verify_signature_accepts_only_the_signing_key():
    key = generate_signing_key("DEV")
    public = encode_base64(get_verify_key(key).encode())
    signed = sign_json({"a": 1}, "@u:x", key)
    assert verify_signature(signed, "@u:x", "ed25519:DEV", public)
    assert not verify_signature(signed, "@v:x", "ed25519:DEV", public)
    assert not verify_signature({**signed, "a": 2}, "@u:x", "ed25519:DEV", public)
    other = encode_base64(get_verify_key(generate_signing_key("o")).encode())
    assert not verify_signature(signed, "@u:x", "ed25519:DEV", other)
    assert not verify_signature(signed, "@u:x", "ed25519:DEV", "short")


def test_backup_key_data_shape():
    good = {
        "first_message_index": 0,
        "forwarded_count": 1,
        "is_verified": False,
        "session_data": {"ciphertext": "c"},
    }
    assert check_key_data(good) is good
    for name, value in (
        ("first_message_index", -1),
        ("forwarded_count", True),
        ("is_verified", 1),
        ("session_data", None),  # opaque: any JSON value but absent
    ):
        with pytest.raises(MatrixError) as err:
            check_key_data({**good, name: value})
        assert err.value.errcode == "M_BAD_JSON"


def test_backup_version_parameter():
    assert parse_version("12") == 12
    with pytest.raises(MatrixError) as err:
        parse_version(None)
    assert err.value.errcode == "M_MISSING_PARAM"
    with pytest.raises(MatrixError) as err:
        parse_version("abc")
    assert err.value.status == 404
