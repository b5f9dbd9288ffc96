"""State resolution over stored events: load what homeserver.events.state_res needs.

`resolve(hs, room_id, room_version, state_sets)` loads the events of the state sets and
their auth chains (breadth first over auth_events, one query per level, bounded) and
calls the pure `resolve_state`. Sets that do not conflict are merged without loading
anything, which is the common case (a message on a fork changes no state).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from homeserver.events.room_versions import RoomVersion
from homeserver.events.state_res import auth_chain_from_event_map, auth_event_ids, resolve_state
from storage.events import StateMap, StoredEvent

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

# Auth chains of real rooms run to thousands of events (every membership change); beyond
# this many we stop walking and resolve with what we have rather than load without end.
MAX_AUTH_CHAIN_EVENTS = 50_000
MAX_AUTH_CHAIN_LEVELS = 10_000


async def load_auth_closure(
    hs: Homeserver, event_ids: Iterable[str], *, limit: int = MAX_AUTH_CHAIN_EVENTS
) -> dict[str, StoredEvent]:
    """The given events and their auth chains, as far as we have them."""
    found: dict[str, StoredEvent] = {}
    frontier = set(event_ids)
    for _ in range(MAX_AUTH_CHAIN_LEVELS):
        frontier -= found.keys()
        if not frontier or len(found) >= limit:
            break
        loaded = await hs.event_store.get_events(frontier)
        found.update(loaded)
        frontier = {a for ev in loaded.values() for a in auth_event_ids(ev.event)}
    else:
        logger.warning("auth chain walk stopped after %d levels", MAX_AUTH_CHAIN_LEVELS)
    return found


async def auth_chain_ids(hs: Homeserver, event_ids: Iterable[str]) -> set[str]:
    """The auth chain of `event_ids`: their auth events, recursively, not themselves
    (unless one is in another's chain)."""
    event_ids = list(event_ids)
    starts = await hs.event_store.get_events(event_ids)
    roots = {a for ev in starts.values() for a in auth_event_ids(ev.event)}
    return set(await load_auth_closure(hs, roots))


def conflicts(state_sets: list[StateMap]) -> bool:
    first = state_sets[0]
    return any(s != first for s in state_sets[1:])


async def resolve(
    hs: Homeserver,
    room_id: str,
    room_version: RoomVersion,
    state_sets: list[StateMap],
    pending: dict[str, dict] | None = None,
) -> StateMap:
    """The resolved state of `state_sets` (room_id is for logging only). `pending` holds
    events not stored yet that the sets may name: the event being received."""
    if not state_sets:
        return {}
    if not conflicts(state_sets):
        return dict(state_sets[0])
    pending = pending or {}
    ids = {event_id for s in state_sets for event_id in s.values()}
    roots = (ids - pending.keys()) | {a for ev in pending.values() for a in auth_event_ids(ev)}
    stored = await load_auth_closure(hs, roots)
    event_map = {event_id: ev.event for event_id, ev in stored.items()}
    event_map.update(pending)
    rejected = {event_id for event_id, ev in stored.items() if ev.status == "rejected"}
    missing = ids - event_map.keys()
    if missing:
        # resolve_state skips what it cannot see; say so, this should not happen.
        logger.warning("resolving state of %s without %d events", room_id, len(missing))
    return resolve_state(
        room_version,
        state_sets,
        event_map,
        auth_chain_from_event_map(event_map),
        rejected=rejected,
    )
