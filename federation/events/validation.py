"""Checks 1-3 of "Checks performed on receipt of a PDU": format, signatures, hashes.

    event_id, event = await validate_pdu(keys, pdu, room_version)

`parse_pdu` checks the shape a room version's event format requires and works out the
event ID (sender-chosen in v1/v2, the reference hash from v3 on); it is pure and cheap,
so callers can drop duplicates before `verify_pdu` fetches keys and checks signatures.
A PDU whose content hash does not match is replaced by its redacted copy, as the spec
says, rather than refused. Authorisation (checks 4-6) is the caller's (federation.inbound).

The returned event never carries `unsigned`: it is not covered by hashes or signatures,
so a remote server could put anything there (callers needing `invite_room_state` read
the request body themselves).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from canonicaljson import encode_canonical_json

from homeserver.events.hashing import check_content_hash, compute_event_id
from homeserver.events.redaction import prune_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import verify_event_signature
from homeserver.events.storable import (
    CANONICAL_INT_MAX,
    canonical_json_problem,
    nul_column_problem,
)

MAX_PDU_BYTES = 65536
MAX_ID_BYTES = 255  # sender, room_id, event_id, type, state_key (spec: "Size limits")
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
_INT64_MAX = 2**63 - 1
_CANONICAL_MAX = CANONICAL_INT_MAX

# server_name = hostname / IPv4 / [IPv6], optional :port (appendices, "Server Name").
_SERVER_NAME = re.compile(
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9.-]{1,255})"
    r"(?::[0-9]{1,5})?"
)
_V12_ROOM_ID = re.compile(r"![A-Za-z0-9_-]{43}")


class InvalidPdu(ValueError):
    """The PDU is dropped (checks 1 and 2). The message is safe to send back to the origin:
    it names what is wrong, never event content."""


class NonCanonicalPdu(InvalidPdu):
    """The PDU is not canonical JSON its room version accepts (from v6: a float, or an
    integer out of range); a membership handshake refuses it with M_BAD_JSON (as Synapse)."""


class UnsignedPdu(InvalidPdu):
    """The PDU lacks a valid signature of a server that must sign it (one without a
    content hash cannot have one: servers sign the hashed event). A server handing us
    such an event for a membership handshake is refused with 403, as Synapse does."""


class VerifyKeys(Protocol):
    async def verify_key(self, server_name: str, key_id: str, at_ts: int): ...


def as_room_version(room_version: RoomVersion | str) -> RoomVersion:
    if isinstance(room_version, RoomVersion):
        return room_version
    try:
        return KNOWN_ROOM_VERSIONS[room_version]
    except KeyError:
        raise InvalidPdu(f"unknown room version {room_version!r}") from None


def server_of(identifier: str) -> str:
    """The server name part of a user ID, pre-v12 room ID or v1/v2 event ID."""
    return identifier.split(":", 1)[1]


def valid_server_name(name: str) -> bool:
    return bool(_SERVER_NAME.fullmatch(name))


def _valid_id(value: Any, sigil: str) -> bool:
    if not isinstance(value, str) or not value.startswith(sigil):
        return False
    if len(value.encode()) > MAX_ID_BYTES:
        return False
    localpart, sep, server = value[1:].partition(":")
    return bool(localpart and sep and _SERVER_NAME.fullmatch(server))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_strict_json(value: Any) -> None:
    """v6+ canonical JSON: no floats, integers within [-(2**53)+1, 2**53-1]."""
    problem = canonical_json_problem(value)
    if problem is not None:
        raise NonCanonicalPdu(problem)


def _check_reference_list(pdu: dict, key: str, rv: RoomVersion, limit: int | None) -> None:
    refs = pdu.get(key)
    if not isinstance(refs, list):
        raise InvalidPdu(f"{key} must be a list")
    if limit is not None and len(refs) > limit:
        raise InvalidPdu(f"more than {limit} {key}")
    for ref in refs:
        if rv.event_ids_carry_domain:
            # v1/v2: [event_id, {algorithm: hash}] pairs.
            ok = (
                isinstance(ref, list)
                and len(ref) == 2
                and _valid_id(ref[0], "$")
                and isinstance(ref[1], dict)
            )
        else:
            ok = isinstance(ref, str) and ref.startswith("$") and len(ref) <= MAX_ID_BYTES
        if not ok:
            raise InvalidPdu(f"malformed entry in {key}")


def _check_room_id(pdu: dict, rv: RoomVersion) -> None:
    room_id = pdu.get("room_id")
    if rv.room_id_is_create_event_hash:
        if pdu.get("type") == "m.room.create":
            if "room_id" in pdu:
                raise InvalidPdu("m.room.create must not have a room_id in this room version")
            return
        if not isinstance(room_id, str) or not _V12_ROOM_ID.fullmatch(room_id):
            raise InvalidPdu("malformed room_id")
    elif not _valid_id(room_id, "!"):
        raise InvalidPdu("malformed room_id")


def refuse_nul_in_columns(event: dict[str, Any]) -> None:
    """PostgreSQL text cannot hold U+0000: such a PDU is refused, as malformed, rather
    than failing its request or transaction when a value is bound to a query."""
    problem = nul_column_problem(event)
    if problem is not None:
        raise InvalidPdu(problem)


def parse_pdu(
    pdu: Any, room_version: RoomVersion | str, *, limit_references: bool = True
) -> tuple[str, dict[str, Any]]:
    """Check 1: the event format of `room_version`. Returns (event_id, event without
    `unsigned`). `limit_references=False` for /backfill answers, which the spec says
    must not be held to the prev_events/auth_events counts."""
    rv = as_room_version(room_version)
    if not isinstance(pdu, dict):
        raise InvalidPdu("PDU is not a JSON object")
    event = {k: v for k, v in pdu.items() if k != "unsigned"}
    try:
        size = len(encode_canonical_json(event))
    except (TypeError, ValueError):
        raise InvalidPdu("PDU cannot be encoded as canonical JSON") from None
    if size > MAX_PDU_BYTES:
        raise InvalidPdu(f"PDU is larger than {MAX_PDU_BYTES} bytes")
    if rv.strict_canonical_json:
        _check_strict_json(event)

    for key in ("type", "sender"):
        if not isinstance(event.get(key), str):
            raise InvalidPdu(f"{key} must be a string")
    if len(event["type"].encode()) > MAX_ID_BYTES:
        raise InvalidPdu("type is too long")
    if not _valid_id(event["sender"], "@"):
        raise InvalidPdu("malformed sender")
    if "state_key" in event and (
        not isinstance(event["state_key"], str) or len(event["state_key"].encode()) > MAX_ID_BYTES
    ):
        raise InvalidPdu("malformed state_key")
    if not isinstance(event.get("content"), dict):
        raise InvalidPdu("content must be an object")
    max_int = _CANONICAL_MAX if rv.strict_canonical_json else _INT64_MAX
    for key in ("depth", "origin_server_ts"):
        if not _is_int(event.get(key)) or not 0 <= event[key] <= max_int:
            raise InvalidPdu(f"{key} must be a non-negative integer in range")
    hashes = event.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        raise UnsignedPdu("hashes.sha256 is missing")
    signatures = event.get("signatures")
    if not isinstance(signatures, dict) or not all(
        isinstance(sigs, dict) and all(isinstance(s, str) for s in sigs.values())
        for sigs in signatures.values()
    ):
        raise InvalidPdu("malformed signatures")
    _check_room_id(event, rv)
    _check_reference_list(event, "prev_events", rv, MAX_PREV_EVENTS if limit_references else None)
    _check_reference_list(event, "auth_events", rv, MAX_AUTH_EVENTS if limit_references else None)
    if "redacts" in event and not isinstance(event["redacts"], str):
        raise InvalidPdu("redacts must be a string")
    refuse_nul_in_columns(event)

    if rv.event_ids_carry_domain:
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not _valid_id(event_id, "$"):
            raise InvalidPdu("malformed event_id")
    else:
        # A v3+ PDU has no event_id; one sent anyway does not change the reference hash.
        event.pop("event_id", None)
        event_id = compute_event_id(event, rv)
    return event_id, event


def _is_third_party_invite(event: dict[str, Any]) -> bool:
    content = event["content"]
    return (
        event["type"] == "m.room.member"
        and content.get("membership") == "invite"
        and "third_party_invite" in content
    )


def required_signers(event: dict[str, Any], event_id: str, rv: RoomVersion) -> set[str]:
    """The servers whose signatures the event must carry ("Validating hashes and
    signatures on received events", and the restricted-join rule)."""
    servers: set[str] = set()
    # A third-party invite's sender matched the original invite; the event itself may
    # come from another server, which is why the sender's signature is not required.
    if not _is_third_party_invite(event):
        servers.add(server_of(event["sender"]))
    if rv.event_ids_carry_domain:
        servers.add(server_of(event_id))
    authoriser = event["content"].get("join_authorised_via_users_server")
    if (
        rv.restricted_join_rule
        and event["type"] == "m.room.member"
        and event["content"].get("membership") == "join"
        and authoriser is not None
    ):
        if not _valid_id(authoriser, "@"):
            raise InvalidPdu("malformed join_authorised_via_users_server")
        servers.add(server_of(authoriser))
    return servers


async def check_signatures(
    keys: VerifyKeys, event: dict[str, Any], event_id: str, rv: RoomVersion
) -> None:
    """Check 2. Signatures by keys we cannot find (or, from v5, keys not valid at the
    event's origin_server_ts) are skipped; at least one must remain per server."""
    at_ts = event["origin_server_ts"] if rv.enforce_key_validity else 0
    for server in sorted(required_signers(event, event_id, rv)):
        sigs = event["signatures"].get(server) or {}
        verify_keys = {}
        for key_id in sigs:
            if key_id.startswith("ed25519:"):
                key = await keys.verify_key(server, key_id, at_ts)
                if key is not None:
                    verify_keys[key_id] = key
        if not verify_keys:
            raise UnsignedPdu(f"no signature of {server} with a key we can verify")
        if not verify_event_signature(event, rv, server, verify_keys):
            raise UnsignedPdu(f"bad signature of {server}")


def check_hash(event: dict[str, Any], rv: RoomVersion) -> dict[str, Any]:
    """Check 3: the event if its content hash matches, else its redacted copy."""
    return event if check_content_hash(event) else prune_event(event, rv)


async def verify_pdu(
    keys: VerifyKeys, event_id: str, event: dict[str, Any], room_version: RoomVersion | str
) -> dict[str, Any]:
    rv = as_room_version(room_version)
    await check_signatures(keys, event, event_id, rv)
    return check_hash(event, rv)


async def validate_pdu(
    keys: VerifyKeys,
    pdu: Any,
    room_version: RoomVersion | str,
    *,
    limit_references: bool = True,
) -> tuple[str, dict[str, Any]]:
    """Checks 1-3: (event_id, event) or InvalidPdu."""
    event_id, event = parse_pdu(pdu, room_version, limit_references=limit_references)
    return event_id, await verify_pdu(keys, event_id, event, room_version)
