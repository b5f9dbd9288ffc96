"""What the membership handshakes need from PDUs: validation of received ones (through the
inbound pipeline's check_pdu), signature checks by a given server, auth chains and stripped
state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from homeserver.events.hashing import (
    check_content_hash,
    compute_event_id,
    room_id_from_create_event,
)
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import verify_event_signature
from homeserver.events.state_res import auth_event_ids
from homeserver.jsonutil import canonical
from homeserver.rooms.events_service import MAX_EVENT_BYTES, STRIPPED_STATE_TYPES
from storage.events import StateMap, StoredEvent

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

# Bounds walking an auth chain level by level (one query per level).
MAX_AUTH_CHAIN_LEVELS = 10_000


class InvalidPdu(ValueError):
    """A PDU that fails the format, hash or signature checks."""


def server_of(identifier: str) -> str:
    return identifier.split(":", 1)[1] if ":" in identifier else ""


async def check_pdu(
    hs: Homeserver, origin: str, pdu: Any, room_version: RoomVersion
) -> tuple[str, dict[str, Any]]:
    """(event_id, event without `unsigned`) for a PDU that passes the spec's format, hash
    and signature checks; raises InvalidPdu otherwise.

    The inbound PDU pipeline owns these checks; until it is wired in as
    `hs.federation.inbound`, the interim below checks size, hashes and the sender's
    signature only.
    """
    inbound = getattr(hs.federation, "inbound", None)
    if inbound is not None:
        return await inbound.check_pdu(origin, pdu, room_version)
    return await _interim_check(hs, pdu, room_version)


_REQUIRED = {
    "type": str,
    "sender": str,
    "content": dict,
    "origin_server_ts": int,
    "depth": int,
    "prev_events": list,
    "auth_events": list,
    "hashes": dict,
    "signatures": dict,
}


async def _interim_check(
    hs: Homeserver, pdu: Any, version: RoomVersion
) -> tuple[str, dict[str, Any]]:
    if not isinstance(pdu, dict):
        raise InvalidPdu("PDU is not an object")
    event = {k: v for k, v in pdu.items() if k != "unsigned"}
    for key, kind in _REQUIRED.items():
        if not isinstance(event.get(key), kind):
            raise InvalidPdu(f"PDU lacks a valid {key!r}")
    if len(canonical(event)) > MAX_EVENT_BYTES:
        raise InvalidPdu("PDU is too large")
    if not check_content_hash(event):
        raise InvalidPdu("content hash does not match")
    if version.event_ids_carry_domain:
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not server_of(event_id):
            raise InvalidPdu("PDU lacks a valid event_id")
        servers = {server_of(event["sender"]), server_of(event_id)}
    else:
        event_id = compute_event_id(event, version)
        servers = {server_of(event["sender"])}
    for server in servers:
        if not await signed_by(hs, event, version, server):
            raise InvalidPdu(f"PDU is not signed by {server}")
    return event_id, event


async def signed_by(
    hs: Homeserver, event: dict[str, Any], version: RoomVersion, server: str
) -> bool:
    """True if `server` signed the event with a key valid for it (from v5: at the event's
    origin_server_ts)."""
    sigs = event.get("signatures")
    sigs = sigs.get(server) if isinstance(sigs, dict) else None
    if not isinstance(sigs, dict) or not server:
        return False
    at = event.get("origin_server_ts", 0) if version.enforce_key_validity else 0
    keys = {}
    for key_id in sigs:
        if isinstance(key_id, str) and key_id.startswith("ed25519:"):
            key = await hs.federation.keys.verify_key(server, key_id, at)
            if key is not None:
                keys[key_id] = key
    return verify_event_signature(event, version, server, keys)


async def signature_checker(
    hs: Homeserver, event: dict[str, Any], version: RoomVersion
) -> Callable[[dict[str, Any], str], bool]:
    """check_auth's synchronous `verify_signature` for a restricted join: the authorising
    user's server's signature, checked (keys fetched) before the auth rules run."""
    authoriser = event.get("content", {}).get("join_authorised_via_users_server")
    server = server_of(authoriser) if isinstance(authoriser, str) else ""
    valid = bool(server) and await signed_by(hs, event, version, server)
    return lambda _event, name: valid and name == server


async def auth_chain(hs: Homeserver, events: Iterable[dict[str, Any]]) -> dict[str, StoredEvent]:
    """Every event the given events cite as auth events, transitively; one lookup per
    level of the chain."""
    found: dict[str, StoredEvent] = {}
    frontier = {a for event in events for a in auth_event_ids(event)}
    for _ in range(MAX_AUTH_CHAIN_LEVELS):
        if not frontier:
            break
        loaded = await hs.event_store.get_events(frontier)
        found.update(loaded)
        frontier = {a for ev in loaded.values() for a in auth_event_ids(ev.event)} - found.keys()
    return found


def stripped(event: dict[str, Any]) -> dict[str, Any]:
    """The client-server API's stripped state event."""
    return {k: event[k] for k in ("type", "state_key", "sender", "content") if k in event}


async def stripped_state_pdus(hs: Homeserver, state: StateMap, user_id: str) -> list[dict]:
    """The full PDUs a remote invitee or knocker is given to identify the room (invite and
    knock room state must be formatted as PDUs from spec v1.16): the stripped state types
    and `user_id`'s membership."""
    keys = [(t, "") for t in STRIPPED_STATE_TYPES] + [("m.room.member", user_id)]
    ids = [state[k] for k in keys if k in state]
    events = await hs.event_store.get_events(ids)
    return [events[i].event for i in ids if i in events]


async def valid_stripped_state(
    hs: Homeserver, origin: str, pdus: Any, room_id: str, version: RoomVersion
) -> list[dict[str, Any]] | None:
    """The stripped state clients are shown for invite_room_state / knock_room_state: each
    entry validated as a PDU of this room; invalid entries dropped. None when the list is
    malformed or, from room version 12 on, lacks the room's create event."""
    if pdus is None:
        pdus = []
    if not isinstance(pdus, list):
        return None
    result = []
    have_create = False
    for pdu in pdus:
        try:
            _event_id, event = await check_pdu(hs, origin, pdu, version)
        except InvalidPdu as e:
            if not version.room_id_is_create_event_hash and _is_stripped(pdu):
                # Before v12 senders may still send stripped events (spec v1.16 note).
                result.append(stripped(pdu))
            else:
                logger.info("dropping invalid stripped state entry from %s: %s", origin, e)
            continue
        if event.get("type") == "m.room.create" and event.get("state_key") == "":
            have_create = _create_matches_room(event, room_id, version)
            if not have_create:
                return None
        elif event.get("room_id") != room_id:
            continue
        if isinstance(event.get("state_key"), str):
            result.append(stripped(event))
    if version.room_id_is_create_event_hash and not have_create:
        return None
    return result


def _create_matches_room(create: dict[str, Any], room_id: str, version: RoomVersion) -> bool:
    if version.room_id_is_create_event_hash:
        return room_id_from_create_event(create, version) == room_id
    return create.get("room_id") == room_id


def _is_stripped(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and all(isinstance(entry.get(k), str) for k in ("type", "state_key", "sender"))
        and isinstance(entry.get("content"), dict)
    )
