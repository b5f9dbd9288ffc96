"""State resolution v1 (room version 1), v2 (room versions 2-11) and v2's v12 variant, as
a pure function.

    resolve_state(
        room_version: RoomVersion,
        state_sets: list[dict[tuple[str, str], str]],   # (type, state_key) -> event id
        event_map: dict[str, dict],                      # event id -> event
        auth_chain_fn: Callable[[Iterable[str]], set[str]],
        *,
        rejected: Collection[str] = (),
    ) -> dict[tuple[str, str], str]

``event_map`` must hold every event of the state sets and of their auth chains (at
least those in the full conflicted set and the power levels mainlines).
``auth_chain_fn(event_ids)`` returns the union of the auth chains of ``event_ids``
(their auth events, recursively, excluding the events themselves); storage answers it
from an index, tests use :func:`auth_chain_from_event_map`. ``rejected`` names events
that must not be used as auth events in the iterative auth checks.

State resolution v1 (rooms/v1.md, "State resolution") needs only the conflicted events
and the unconflicted state's auth events in ``event_map``; ``auth_chain_fn`` is unused.
Where the spec's prose leaves details open it follows Synapse (synapse/state/v1.py), whose
behaviour the rooms of that version were built with: a key that some states lack is not
a conflict, and the events are checked against the unconflicted state's auth events plus
what was resolved before them.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Collection, Iterable
from typing import Any

from homeserver.events.auth import (
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    AuthError,
    auth_types_for_event,
    check_auth,
    get_power_level,
)
from homeserver.events.room_versions import STATE_RES_V1, STATE_RES_V2_1, RoomVersion

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]
Event = dict[str, Any]
AuthChainFn = Callable[[Iterable[str]], set[str]]


def auth_event_ids(event: Event) -> list[str]:
    # v1/v2 auth_events are [event_id, hashes] pairs; v3+ are bare ids.
    return [a[0] if isinstance(a, list | tuple) else a for a in event.get("auth_events") or []]


def auth_chain_from_event_map(event_map: dict[str, Event]) -> AuthChainFn:
    """An ``auth_chain_fn`` that walks ``auth_events`` through ``event_map``."""

    def auth_chain(event_ids: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = [a for e in event_ids if e in event_map for a in auth_event_ids(event_map[e])]
        while stack:
            event_id = stack.pop()
            if event_id in seen or event_id not in event_map:
                continue
            seen.add(event_id)
            stack.extend(auth_event_ids(event_map[event_id]))
        return seen

    return auth_chain


def _key(event: Event) -> StateKey:
    return (event["type"], event["state_key"])


def _is_power_event(event: Event) -> bool:
    if event.get("state_key") is None:
        return False
    if event["type"] == POWER_LEVELS or event["type"] == "m.room.join_rules":
        return event["state_key"] == ""
    if event["type"] == MEMBER:
        membership = (event.get("content") or {}).get("membership")
        return membership in ("leave", "ban") and event["sender"] != event["state_key"]
    return False


def _split(state_sets: list[StateMap]) -> tuple[StateMap, set[str]]:
    unconflicted: StateMap = {}
    conflicted: set[str] = set()
    for key in set().union(*state_sets):
        values = {s.get(key) for s in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = str(values.pop())
        else:
            conflicted.update(v for v in values if v is not None)
    return unconflicted, conflicted


def _conflicted_subgraph(conflicted: set[str], event_map: dict[str, Event]) -> set[str]:
    """v12: events on auth_events paths between two conflicted events."""
    reaches_conflicted: dict[str, bool] = {}

    def reaches(event_id: str) -> bool:
        # Iterative post-order DFS: does any auth path from event_id hit the conflicted set?
        stack = [(event_id, False)]
        while stack:
            node, expanded = stack.pop()
            if node in reaches_conflicted:
                continue
            parents = [a for a in auth_event_ids(event_map.get(node, {})) if a in event_map]
            if expanded:
                reaches_conflicted[node] = node in conflicted or any(
                    reaches_conflicted.get(p, False) for p in parents
                )
                continue
            stack.append((node, True))
            stack.extend((p, False) for p in parents if p not in reaches_conflicted)
        return reaches_conflicted[event_id]

    subgraph: set[str] = set()
    for start in conflicted:
        for parent in auth_event_ids(event_map.get(start, {})):
            if parent in event_map and reaches(parent):
                subgraph.add(parent)
    # Everything between those parents and the conflicted events they reach also counts.
    stack = list(subgraph)
    while stack:
        node = stack.pop()
        for parent in auth_event_ids(event_map[node]):
            if parent in event_map and parent not in subgraph and reaches(parent):
                subgraph.add(parent)
                stack.append(parent)
    return subgraph


class _Resolver:
    def __init__(
        self,
        room_version: RoomVersion,
        event_map: dict[str, Event],
        auth_chain_fn: AuthChainFn,
        rejected: Collection[str],
    ):
        self.rv = room_version
        self.events = event_map
        self.auth_chain = auth_chain_fn
        self.rejected = set(rejected)

    def create_event(self, event: Event) -> Event | None:
        if self.rv.room_id_is_create_event_hash:
            return self.events.get("$" + str(event.get("room_id", ""))[1:])
        return None

    def auth_state(self, event: Event) -> dict[StateKey, Event]:
        state = {}
        for auth_id in auth_event_ids(event):
            auth_event = self.events.get(auth_id)
            if auth_event is not None and auth_id not in self.rejected:
                state[_key(auth_event)] = auth_event
        return state

    def sender_power(self, event_id: str) -> int | float:
        event = self.events[event_id]
        create = self.create_event(event)
        return get_power_level(self.rv, event["sender"], self.auth_state(event), create)

    def reverse_topological_power_order(self, event_ids: set[str]) -> list[str]:
        """Kahn's algorithm over auth edges, smallest (most powerful, oldest) first."""
        pending = {e: 0 for e in event_ids}
        children: dict[str, list[str]] = {e: [] for e in event_ids}
        for event_id in event_ids:
            for parent in set(auth_event_ids(self.events[event_id])) & event_ids:
                pending[event_id] += 1
                children[parent].append(event_id)

        def sort_key(event_id: str) -> tuple:
            event = self.events[event_id]
            return (-self.sender_power(event_id), event.get("origin_server_ts", 0), event_id)

        ready = [(sort_key(e), e) for e, count in pending.items() if count == 0]
        heapq.heapify(ready)
        ordered = []
        while ready:
            _, event_id = heapq.heappop(ready)
            ordered.append(event_id)
            for child in children[event_id]:
                pending[child] -= 1
                if pending[child] == 0:
                    heapq.heappush(ready, (sort_key(child), child))
        return ordered

    def _power_levels_parent(self, event_id: str) -> str | None:
        for auth_id in auth_event_ids(self.events[event_id]):
            auth_event = self.events.get(auth_id)
            if auth_event is not None and _key(auth_event) == (POWER_LEVELS, ""):
                return auth_id
        return None

    def mainline_order(self, event_ids: Iterable[str], power_levels_id: str | None) -> list[str]:
        mainline: dict[str, int] = {}
        current = power_levels_id
        while current is not None and current in self.events and current not in mainline:
            mainline[current] = len(mainline)
            current = self._power_levels_parent(current)

        def position(event_id: str) -> float:
            current = self._power_levels_parent(event_id)
            seen = set()
            while current is not None and current in self.events and current not in seen:
                if current in mainline:
                    return mainline[current]
                seen.add(current)
                current = self._power_levels_parent(current)
            return math.inf

        def sort_key(event_id: str) -> tuple:
            event = self.events[event_id]
            return (-position(event_id), event.get("origin_server_ts", 0), event_id)

        return sorted(event_ids, key=sort_key)

    def iterative_auth_checks(self, state: StateMap, event_ids: list[str]) -> StateMap:
        state = dict(state)
        for event_id in event_ids:
            event = self.events[event_id]
            auth_state = self.auth_state(event)
            for key in auth_types_for_event(self.rv, event):
                if key in state and state[key] in self.events:
                    auth_state[key] = self.events[state[key]]
            if not self.rv.room_id_is_create_event_hash and (CREATE, "") in state:
                auth_state[(CREATE, "")] = self.events[state[(CREATE, "")]]
            try:
                check_auth(self.rv, event, auth_state, self.create_event(event))
            except AuthError:
                continue
            state[_key(event)] = event_id
        return state


def resolve_state(
    room_version: RoomVersion,
    state_sets: list[StateMap],
    event_map: dict[str, Event],
    auth_chain_fn: AuthChainFn,
    *,
    rejected: Collection[str] = (),
) -> StateMap:
    """Resolve ``state_sets`` into one state map (see the module docstring)."""
    if not state_sets:
        return {}
    if room_version.state_res == STATE_RES_V1:
        return _resolve_v1(room_version, state_sets, event_map, set(rejected))
    unconflicted, conflicted = _split(state_sets)
    if not conflicted:
        return unconflicted
    resolver = _Resolver(room_version, event_map, auth_chain_fn, rejected)

    chains = [auth_chain_fn(s.values()) for s in state_sets]
    full_conflicted = conflicted | (set[str]().union(*chains) - set[str].intersection(*chains))
    if room_version.state_res == STATE_RES_V2_1:
        full_conflicted |= _conflicted_subgraph(conflicted, event_map)
    full_conflicted &= event_map.keys()

    # Step 1: power events and the parts of their auth chains that are in conflict.
    power = {e for e in full_conflicted if _is_power_event(event_map[e])}
    for event_id in list(power):
        power |= auth_chain_fn([event_id]) & full_conflicted
    power_order = resolver.reverse_topological_power_order(power)

    # Step 2: v12 starts from nothing so that unconflicted state cannot vouch for
    # conflicted power events; v2 starts from the unconflicted state.
    start = {} if room_version.state_res == STATE_RES_V2_1 else unconflicted
    partial = resolver.iterative_auth_checks(start, power_order)

    # Steps 3 and 4: everything else, ordered along the resolved power levels' mainline.
    others = resolver.mainline_order(full_conflicted - power, partial.get((POWER_LEVELS, "")))
    resolved = resolver.iterative_auth_checks(partial, others)

    # Step 5: the unconflicted state always wins.
    resolved.update(unconflicted)
    return resolved


# ---- state resolution v1 ---------------------------------------------------------------


def _split_v1(state_sets: list[StateMap]) -> tuple[StateMap, dict[StateKey, set[str]]]:
    """Unconflicted state and the conflicts: a key conflicts when two states name different
    events for it (a state without the key does not make it a conflict in v1)."""
    unconflicted: StateMap = {}
    conflicted: dict[StateKey, set[str]] = {}
    for state in state_sets:
        for key, event_id in state.items():
            if key in conflicted:
                conflicted[key].add(event_id)
            elif key not in unconflicted:
                unconflicted[key] = event_id
            elif unconflicted[key] != event_id:
                conflicted[key] = {unconflicted.pop(key), event_id}
    return unconflicted, conflicted


def _v1_order(events: list[Event]) -> list[Event]:
    """Highest depth first, then lowest sha1(event_id): the order "other" conflicts are
    tried in; power levels, join rules and members are resolved in its reverse."""

    def key(event: Event) -> tuple:
        depth = event.get("depth")
        digest = hashlib.sha1(str(event["event_id"]).encode()).hexdigest()
        return (-(depth if isinstance(depth, int) else 0), digest)

    return sorted(events, key=key)


def _v1_allowed(room_version: RoomVersion, event: Event, auth: dict[StateKey, Event]) -> bool:
    try:
        check_auth(room_version, event, auth)
    except AuthError:
        return False
    return True


def _resolve_v1(
    room_version: RoomVersion,
    state_sets: list[StateMap],
    event_map: dict[str, Event],
    rejected: set[str],
) -> StateMap:
    unconflicted, conflicted_ids = _split_v1(state_sets)
    if not conflicted_ids:
        return unconflicted

    def with_id(event_id: str) -> Event:
        return {**event_map[event_id], "event_id": event_id}

    conflicted: dict[StateKey, list[Event]] = {}
    unseen: StateMap = {}
    for key, ids in conflicted_ids.items():
        events = [with_id(i) for i in sorted(ids) if i in event_map]
        if events:
            conflicted[key] = events
        else:  # none of them could be loaded: still one answer, the same everywhere
            unseen[key] = min(ids)
    # The auth events the conflicted events are checked against come from the
    # unconflicted state only.
    auth: dict[StateKey, Event] = {}
    for events in conflicted.values():
        for event in events:
            for key in auth_types_for_event(room_version, event):
                event_id = unconflicted.get(key)
                if key not in auth and event_id in event_map and event_id not in rejected:
                    auth[key] = with_id(event_id)

    def resolve_auth_conflict(events: list[Event]) -> Event:
        # Ascending depth, descending sha1: the first one is taken, each next one replaces
        # it while the auth rules allow it against the state so far.
        ordered = list(reversed(_v1_order(events)))
        keys = {k for e in events for k in auth_types_for_event(room_version, e)}
        state = {k: v for k, v in auth.items() if k in keys}
        chosen = ordered[0]
        for event in ordered[1:]:
            state[_key(chosen)] = chosen
            if not _v1_allowed(room_version, event, state):
                break
            chosen = event
        return chosen

    resolved: dict[StateKey, Event] = {}
    for selects in (
        lambda k: k == (POWER_LEVELS, ""),
        lambda k: k[0] == JOIN_RULES,
        lambda k: k[0] == MEMBER,
    ):
        for key, events in conflicted.items():
            if key not in resolved and selects(key):
                resolved[key] = resolve_auth_conflict(events)
        auth.update(resolved)
    for key, events in conflicted.items():
        if key in resolved:
            continue
        ordered = _v1_order(events)
        # The first that the auth rules allow; the lowest if none is.
        resolved[key] = next(
            (e for e in ordered if _v1_allowed(room_version, e, auth)), ordered[-1]
        )
    result = {**unconflicted, **unseen}
    result.update({key: event["event_id"] for key, event in resolved.items()})
    return result
