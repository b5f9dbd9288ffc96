"""Signing events and checking event signatures (server-server API, "Signing Events").

Signatures cover the *pruned* event, so a redacted copy still verifies; the content
hash (see hashing.py) is what covers the full content.
"""

from __future__ import annotations

import binascii
from typing import Any

from canonicaljson import encode_canonical_json
from nacl.exceptions import BadSignatureError
from signedjson.sign import sign_json
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64

from homeserver.events.hashing import add_content_hash
from homeserver.events.redaction import prune_event
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS, RoomVersion


def sign_event(
    event: dict[str, Any],
    server_name: str,
    signing_key: SigningKey,
    room_version: RoomVersion | None = None,
) -> dict[str, Any]:
    """Return a copy of ``event`` whose ``signatures`` include ``server_name``'s signature.

    What gets signed is the pruned event, which depends on the room version: pass the
    room's ``room_version``. Without it the default room version's rules are used.
    The content hash must already be present (see :func:`hash_and_sign_event`).
    """
    room_version = room_version or KNOWN_ROOM_VERSIONS[DEFAULT_ROOM_VERSION]
    signed = sign_json(prune_event(event, room_version), server_name, signing_key)
    signatures = {name: dict(sigs) for name, sigs in (event.get("signatures") or {}).items()}
    for name, sigs in signed["signatures"].items():
        signatures.setdefault(name, {}).update(sigs)
    return {**event, "signatures": signatures}


def hash_and_sign_event(
    event: dict[str, Any],
    server_name: str,
    signing_key: SigningKey,
    room_version: RoomVersion,
) -> dict[str, Any]:
    """Add the content hash, then sign: what a server does to every event it creates."""
    return sign_event(add_content_hash(event), server_name, signing_key, room_version)


def verify_event_signature(
    event: dict[str, Any],
    room_version: RoomVersion,
    server_name: str,
    verify_keys: dict[str, VerifyKey],
) -> bool:
    """True if ``server_name`` signed the event with at least one of ``verify_keys``
    (key id -> key) and every signature made with one of those keys is valid.

    Signatures by keys not in ``verify_keys`` are ignored, as the spec says for unknown
    or expired keys; callers filter keys by validity (``enforce_key_validity``).
    """
    signatures = event.get("signatures")
    server_sigs = signatures.get(server_name) if isinstance(signatures, dict) else None
    if not isinstance(server_sigs, dict):
        return False
    known = [key_id for key_id in server_sigs if key_id in verify_keys]
    if not known:
        return False
    # signedjson's verify_signed_json derives the key id from attributes on the key
    # object; here the caller's mapping names the key id, so verify the bytes directly.
    pruned = prune_event(event, room_version)
    pruned.pop("signatures", None)
    message = encode_canonical_json(pruned)
    for key_id in known:
        try:
            verify_keys[key_id].verify(message, decode_base64(server_sigs[key_id]))
        except (BadSignatureError, ValueError, TypeError, binascii.Error, AttributeError):
            return False
    return True
