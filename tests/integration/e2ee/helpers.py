"""Helpers for the e2ee tests: device keys made with nacl/signedjson for raw wire tests."""

from __future__ import annotations

import copy

from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64


def public(signing_key) -> str:
    return encode_base64(get_verify_key(signing_key).encode())


def new_key(name: str = "k"):
    return generate_signing_key(name)


def device_keys(user_id: str, device_id: str, signing_key=None) -> tuple[dict, object]:
    """A signed device-keys object, and the ed25519 key that signed it."""
    signing_key = signing_key or new_key(device_id)
    signing_key.version = device_id
    curve = encode_base64(bytes(range(32)))
    keys = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": curve, f"ed25519:{device_id}": public(signing_key)},
    }
    return sign_json(keys, user_id, signing_key), signing_key


def signed_otks(user_id: str, signing_key, count: int, start: int = 0) -> dict:
    out = {}
    for i in range(start, start + count):
        key = {"key": encode_base64(i.to_bytes(32, "big"))}
        out[f"signed_curve25519:AAAA{i:04d}"] = sign_json(key, user_id, signing_key)
    return out


def cross_signing_key(user_id: str, usage: str, signing_key, signer=None) -> dict:
    """A cross-signing key object; signed by `signer` (the master key) when given."""
    signing_key.version = public(signing_key)
    key = {
        "user_id": user_id,
        "usage": [usage],
        "keys": {f"ed25519:{public(signing_key)}": public(signing_key)},
    }
    if signer is not None:
        signer.version = public(signer)
        key = sign_json(key, user_id, signer)
    return key


def sign(obj: dict, user_id: str, signing_key, key_version: str) -> dict:
    signing_key.version = key_version
    obj = copy.deepcopy(obj)
    obj.pop("unsigned", None)
    return sign_json(obj, user_id, signing_key)
