"""What the membership handshakes need from PDUs: validation of received ones (the inbound
pipeline's check_pdu), signature checks by a given server, auth chains and stripped state.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from federation.events.validation import InvalidPdu
from federation.state import load_auth_closure
from homeserver.events.hashing import room_id_from_create_event
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import verify_event_signature
from homeserver.events.state_res import auth_event_ids
from homeserver.rooms.events_service import STRIPPED_STATE_TYPES
from storage.events import StateMap, StoredEvent

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

MAX_STRIPPED_STATE = 50


def server_of(identifier: str) -> str:
    return identifier.split(":", 1)[1] if ":" in identifier else ""


async def check_pdu(
    hs: Homeserver, origin: str, pdu: Any, room_version: RoomVersion
) -> tuple[str, dict[str, Any]]:
    """(event_id, event) for a PDU that passes the format, signature and hash checks of
    the inbound pipeline; raises InvalidPdu. A PDU whose content hash does not match
    comes back redacted, as the spec says."""
    return await hs.federation.inbound.check_pdu(origin, pdu, room_version)


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
    """Every event the given events cite as auth events, transitively, each after the
    auth events it cites (a receiver that applies the chain in order, as SyTest's does,
    must not end with an older power levels event over a newer one)."""
    found = await load_auth_closure(hs, {a for event in events for a in auth_event_ids(event)})
    return {event_id: found[event_id] for event_id in auth_order(found)}


def auth_order(events: dict[str, StoredEvent]) -> list[str]:
    """The events' ids, each after those of its auth events (Kahn's algorithm over the
    auth edges among them; lower depth, then id, first among the ready ones)."""
    pending: dict[str, int] = {}
    cited_by: dict[str, list[str]] = {event_id: [] for event_id in events}
    for event_id, stored in events.items():
        cites = {a for a in auth_event_ids(stored.event) if a in events and a != event_id}
        pending[event_id] = len(cites)
        for auth_id in cites:
            cited_by[auth_id].append(event_id)

    def key(event_id: str) -> tuple[int, str]:
        depth = events[event_id].event.get("depth")
        return (depth if isinstance(depth, int) else 0, event_id)

    ready = [(key(e), e) for e, count in pending.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(event_id)
        for child in cited_by[event_id]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, (key(child), child))
    # A cycle (only a forged chain has one) leaves events behind: they go last.
    placed = set(ordered)
    ordered += sorted((e for e in events if e not in placed), key=key)
    return ordered


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
    # A handful of state types are meant: a longer list is not checked entry by entry.
    pdus = pdus[:MAX_STRIPPED_STATE]
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
