"""Authorising received events (checks 4-6) and storing the events fetched to do so.

Shared by the inbound pipeline (federation.inbound) and client-side backfill
(federation.backfill). Every check returns a reason string when the event fails, None
when it passes; the reason is recorded with a rejected or soft-failed event and never
contains event content.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from federation.events.remote import Fetched, RemoteEvents, Room
from homeserver.events.auth import (
    AuthError,
    auth_types_for_event,
    check_auth,
    check_auth_events_list,
    get_named_level,
    get_power_level,
)
from homeserver.events.state_res import auth_event_ids
from storage.events import StateMap, StoredEvent

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

Event = dict[str, Any]


def state_key_of(event: Event) -> tuple[str, str]:
    return (event["type"], event["state_key"])


def prev_event_ids(event: Event) -> list[str]:
    # Room versions 1 and 2 list [event_id, hashes] pairs.
    return [p[0] if isinstance(p, list) else p for p in event.get("prev_events") or []]


def _signed_by(event: Event, server_name: str) -> bool:
    # validate_pdu verified the signature of every server the event needs, the
    # authorising server of a restricted join included; here we only ask whether it is
    # among them.
    return server_name in (event.get("signatures") or {})


def _create_event_id(room: Room) -> str | None:
    """v12: the create event's id is the room id with the "$" sigil, and the create
    event is never among auth events, so the auth checks need it passed in."""
    if room.version.room_id_is_create_event_hash:
        return "$" + room.room_id[1:]
    return None


def auth_order(events: Fetched) -> list[str]:
    """`events` ordered so that each comes after those of its auth events that are among
    them (Kahn's algorithm, shallowest first); events on an auth cycle are left out."""
    pending = {
        e: {a for a in auth_event_ids(ev) if a in events and a != e} for e, ev in events.items()
    }
    children: dict[str, list[str]] = {e: [] for e in events}
    for event_id, parents in pending.items():
        for parent in parents:
            children[parent].append(event_id)
    ready = sorted((e for e, p in pending.items() if not p), key=lambda e: events[e]["depth"])
    ordered: list[str] = []
    while ready:
        event_id = ready.pop(0)
        ordered.append(event_id)
        for child in children[event_id]:
            pending[child].discard(event_id)
            if not pending[child]:
                ready.append(child)
    return ordered


class EventChecks:
    def __init__(self, hs: Homeserver, remote: RemoteEvents):
        self.hs = hs
        self.remote = remote

    async def _create_event(self, room: Room, extra: Fetched | None = None) -> Event | None:
        create_id = _create_event_id(room)
        if create_id is None:
            return None
        if extra and create_id in extra:
            return extra[create_id]
        stored = await self.hs.event_store.get_event(create_id)
        return stored.event if stored is not None else None

    def _check(
        self, room: Room, event: Event, auth_state: dict, create: Event | None
    ) -> str | None:
        try:
            check_auth(room.version, event, auth_state, create, verify_signature=_signed_by)
        except AuthError as e:
            return str(e)
        return None

    # ---- check 4: the event's own auth events --------------------------------------------

    async def auth_events(
        self, dest: str | None, room: Room, event_id: str, event: Event
    ) -> dict[str, StoredEvent] | None:
        """The event's auth events, fetched from `dest` (the whole auth chain, checked and
        stored as outliers) when we lack some. None if some are still missing."""
        ids = auth_event_ids(event)
        found = await self.hs.event_store.get_events(ids)
        if len(found) < len(set(ids)) and dest is not None:
            await self.store_outliers(room, await self.remote.auth_chain(dest, room, event_id))
            found = await self.hs.event_store.get_events(ids)
        if len(found) < len(set(ids)):
            return None
        return found

    def _check_own_auth(
        self, room: Room, event: Event, auth_list: list[Event], create: Event | None
    ) -> str | None:
        if event["type"] != "m.room.create":
            try:
                check_auth_events_list(room.version, event, auth_list)
            except AuthError as e:
                return str(e)
        return self._check(room, event, {state_key_of(a): a for a in auth_list}, create)

    async def against_auth_events(
        self, room: Room, event: Event, auth: dict[str, StoredEvent]
    ) -> str | None:
        if any(a.status == "rejected" for a in auth.values()):
            return "an auth event was rejected"
        # In the order cited, repeats included: the list check refuses duplicates.
        auth_list = [auth[a].event for a in auth_event_ids(event)]
        return self._check_own_auth(room, event, auth_list, await self._create_event(room))

    # ---- checks 5 and 6: a state map (before the event, or the room's current state) ----

    async def against_state(self, room: Room, event: Event, state: StateMap) -> str | None:
        keys = [k for k in auth_types_for_event(room.version, event) if k in state]
        # The create event too: check_auth finds it in the state before v12.
        keys.append(("m.room.create", ""))
        ids = {state[k] for k in keys if k in state}
        loaded = await self.hs.event_store.get_events(ids)
        auth_state = {k: loaded[state[k]].event for k in keys if state.get(k) in loaded}
        reason = self._check(room, event, auth_state, await self._create_event(room))
        if reason is None:
            # The room policies (access rules, external users) at the same state: a
            # remote server cannot bring in what our own users could not.
            try:
                await self.hs.policy.check(event, state)
            except AuthError as e:
                return str(e)
        return reason

    # ---- redactions ----------------------------------------------------------------------

    async def _redaction_target(self, room: Room, event: Event) -> StoredEvent | None:
        """The stored event a redaction names (in any room), None if not a redaction."""
        if event["type"] != "m.room.redaction":
            return None
        rv = room.version
        target_id = event["content"].get("redacts") if rv.v11_redactions_and_creator else None
        target_id = target_id if target_id is not None else event.get("redacts")
        if not isinstance(target_id, str):
            return None
        return await self.hs.event_store.get_event(target_id)

    async def redaction_elsewhere(self, room: Room, event: Event) -> str | None:
        """A reason to keep a redaction out of the timeline: it names an event of another
        room. The auth rules accept it (v3+ do not look at the target), but it is no
        redaction clients should see, Synapse withholds it the same way."""
        target = await self._redaction_target(room, event)
        if target is not None and target.room_id != room.room_id:
            return "redacts an event of another room"
        return None

    async def allowed_redaction(
        self, room: Room, event: Event, state_before: StateMap
    ) -> str | None:
        """The event a received redaction may redact: one we hold in the room, sent from
        the same server as the redaction or by someone the redaction's sender outranks
        (v3+ "Handling redactions"; v1/v2 check this in the auth rules)."""
        target = await self._redaction_target(room, event)
        if target is None or target.room_id != room.room_id:
            return None
        rv = room.version
        target_id = target.event_id
        if rv.redaction_checked_by_auth_rules:
            return target_id
        if target.sender.split(":", 1)[1] == event["sender"].split(":", 1)[1]:
            return target_id
        keys = [
            ("m.room.power_levels", ""),
            ("m.room.create", ""),
            ("m.room.member", event["sender"]),
        ]
        loaded = await self.hs.event_store.get_events(
            state_before[k] for k in keys if k in state_before
        )
        auth_state = {
            k: loaded[state_before[k]].event for k in keys if state_before.get(k) in loaded
        }
        power_levels = auth_state.get(("m.room.power_levels", ""))
        needed = get_named_level(rv, "redact", power_levels["content"] if power_levels else None)
        create = auth_state.get(("m.room.create", ""))
        if get_power_level(rv, event["sender"], auth_state, create) >= needed:
            return target_id
        return None

    # ---- events fetched to fill in auth chains and state ---------------------------------

    async def store_outliers(self, room: Room, fetched: Fetched) -> set[str]:
        """Checks fetched events against their own auth events, in auth order, and stores
        them out of the timeline: 'outlier' when they pass, 'rejected' when not. Events
        whose auth events cannot be found are dropped. Returns the ids now stored."""
        if not fetched:
            return set()
        stored = await self.hs.event_store.get_events(fetched.keys())
        new = {e: ev for e, ev in fetched.items() if e not in stored}
        referenced = {a for ev in new.values() for a in auth_event_ids(ev)} - new.keys()
        loaded = await self.hs.event_store.get_events(referenced)
        known = {e: s.event for e, s in loaded.items()}
        rejected_ids = {e for e, s in loaded.items() if s.status == "rejected"}
        create = await self._create_event(room, new)
        accepted: list[tuple[str, Event]] = []
        rejected: list[tuple[str, Event, str]] = []
        for event_id in auth_order(new):
            event = new[event_id]
            auth_ids = auth_event_ids(event)
            if any(a not in known for a in auth_ids):
                logger.info("dropping fetched event %s: auth events missing", event_id)
                continue
            reason = None
            if any(a in rejected_ids for a in auth_ids):
                reason = "an auth event was rejected"
            else:
                reason = self._check_own_auth(room, event, [known[a] for a in auth_ids], create)
            known[event_id] = event
            if reason is None:
                accepted.append((event_id, event))
            else:
                rejected_ids.add(event_id)
                rejected.append((event_id, event, reason))
        if accepted:
            await self.hs.events.persist_outliers(room.room_id, accepted)
        for event_id, event, reason in rejected:
            logger.info("fetched event %s rejected: %s", event_id, reason)
            await self.hs.event_store.persist_out_of_timeline(
                room.room_id,
                [(event_id, event)],
                "rejected",
                reason=reason,
                now_ms=int(time.time() * 1000),
            )
        return {e for e, _ in accepted} | {e for e, _, _ in rejected} | set(stored)

    async def remote_state(
        self, dest: str, room: Room, event_id: str, *, after: bool
    ) -> StateMap | None:
        """The state before (or after) `event_id` as `dest` sees it: /state_ids, then the
        events we lack, checked and stored as outliers. The state after an event adds the
        event itself when it is an accepted state event. None if `dest` cannot say."""
        answer = await self.remote.state_before(dest, room, event_id)
        if answer is None:
            return None
        state_ids, fetched = answer
        if after and event_id not in fetched and not await self.hs.event_store.get_event(event_id):
            event = await self.remote.event(dest, room, event_id)
            if event is not None:
                fetched[event_id] = event
        await self.store_outliers(room, fetched)
        stored = await self.hs.event_store.get_events([*state_ids, event_id])
        state: StateMap = {}
        for sid in state_ids:
            ev = stored.get(sid)
            if ev is not None and ev.status != "rejected" and ev.state_key is not None:
                state[(ev.type, ev.state_key)] = sid
        if after:
            this = stored.get(event_id)
            if this is None:
                return None
            if this.state_key is not None and this.status != "rejected":
                state[(this.type, this.state_key)] = event_id
        return state
