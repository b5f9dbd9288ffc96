"""Content hashes, reference hashes and hash-derived identifiers (event and room ids)."""

from __future__ import annotations

import hashlib
from typing import Any

from canonicaljson import encode_canonical_json
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.redaction import prune_event
from homeserver.events.room_versions import EVENT_ID_FORMAT_V2, EVENT_ID_FORMAT_V3, RoomVersion

# Keys that are never covered by the content hash: `hashes` would be self-referential,
# signatures are added after hashing, and `unsigned` is rewritten in transit.
_NOT_IN_CONTENT_HASH = ("unsigned", "signatures", "hashes")


def _content_hash_bytes(event: dict[str, Any]) -> bytes:
    hashed = {k: v for k, v in event.items() if k not in _NOT_IN_CONTENT_HASH}
    return hashlib.sha256(encode_canonical_json(hashed)).digest()


def compute_content_hash(event: dict[str, Any]) -> str:
    """Unpadded base64 SHA-256 of the event's canonical JSON, as stored in hashes.sha256."""
    return encode_base64(_content_hash_bytes(event))


def add_content_hash(event: dict[str, Any]) -> dict[str, Any]:
    """Return a shallow copy of ``event`` with ``hashes.sha256`` set."""
    hashes = dict(event.get("hashes") or {})
    hashes["sha256"] = compute_content_hash(event)
    return {**event, "hashes": hashes}


def check_content_hash(event: dict[str, Any]) -> bool:
    """True if ``hashes.sha256`` matches the event. False means it was redacted in transit
    (or tampered with): callers then use the pruned copy, as the spec requires."""
    hashes = event.get("hashes")
    claimed = hashes.get("sha256") if isinstance(hashes, dict) else None
    if not isinstance(claimed, str):
        return False
    try:
        # Compare bytes, not strings, so padding or url-safe alphabets don't matter.
        return decode_base64(claimed) == _content_hash_bytes(event)
    except (ValueError, UnicodeEncodeError):
        return False


def compute_reference_hash(event: dict[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 of the pruned event without ``signatures`` and ``unsigned``."""
    pruned = prune_event(event, room_version)
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)
    if not room_version.event_ids_carry_domain:
        # From v3 on, the event id is derived from this hash, so a PDU has no event_id;
        # our own dicts may carry one for convenience and it must not change the hash.
        pruned.pop("event_id", None)
    return hashlib.sha256(encode_canonical_json(pruned)).digest()


def compute_event_id(event: dict[str, Any], room_version: RoomVersion) -> str:
    """The event id of a v3+ event. v1/v2 ids are random and chosen by the sender."""
    if room_version.event_id_format == EVENT_ID_FORMAT_V2:
        return "$" + encode_base64(compute_reference_hash(event, room_version))
    if room_version.event_id_format == EVENT_ID_FORMAT_V3:
        return "$" + encode_base64(compute_reference_hash(event, room_version), urlsafe=True)
    raise ValueError(
        f"room version {room_version.identifier} uses sender-chosen event ids, not hashes"
    )


def room_id_from_create_event(create_event: dict[str, Any], room_version: RoomVersion) -> str:
    """The v12 room id: the create event's id with the "!" sigil instead of "$"."""
    if not room_version.room_id_is_create_event_hash:
        raise ValueError(f"room version {room_version.identifier} does not derive room ids")
    return "!" + compute_event_id(create_event, room_version)[1:]
