"""Checking the ed25519 signatures on key objects, and the shape of key identifiers."""

from __future__ import annotations

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.http.errors import MatrixError, bad_json, invalid_param


def verify_signature(obj: dict, signer_user_id: str, key_id: str, public_key: str) -> bool:
    """True when `obj` carries a valid signature by `signer_user_id`'s `key_id`."""
    if not isinstance(public_key, str):
        return False
    try:
        verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key))
        verify_signed_json(obj, signer_user_id, verify_key)
    except (SignatureVerifyException, ValueError, TypeError, KeyError):
        return False
    except Exception:  # nacl raises its own errors for keys of the wrong length
        return False
    return True


def require_signature(obj: dict, signer_user_id: str, key_id: str, public_key: str, what: str):
    if not verify_signature(obj, signer_user_id, key_id, public_key):
        raise invalid_signature(f"Invalid signature on {what}")


def invalid_signature(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_SIGNATURE", error)


def split_key_id(key_id: object, what: str) -> tuple[str, str]:
    """'algorithm:identifier' -> (algorithm, identifier); anything else is bad input."""
    if not isinstance(key_id, str) or ":" not in key_id:
        raise invalid_param(f"Malformed key ID in {what}")
    algorithm, _, ident = key_id.partition(":")
    if not algorithm or not ident or len(key_id) > 255:
        raise invalid_param(f"Malformed key ID in {what}")
    return algorithm, ident


def require_dict(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise bad_json(f"'{what}' must be an object")
    return value


def check_public_key(value: object, what: str) -> str:
    """An unpadded base64 32-byte curve25519 or ed25519 public key."""
    try:
        ok = isinstance(value, str) and len(decode_base64(value)) == 32
    except Exception:
        ok = False
    if not ok or not isinstance(value, str):
        raise invalid_param(f"Malformed public key in {what}")
    return value
