"""The inbound PDU pipeline: what happens to each event another server sends us.

    results = await hs.federation.inbound.handle_pdus(origin, pdus)   # /send's "pdus"

For each PDU, following "Checks performed on receipt of a PDU":
  0. the room must be known and joined by us, and the origin allowed by its server ACL;
  1-3. format, signatures, content hash (federation.events.validation);
  the state before it, first: the resolved state of its prev_events' states. Missing
     prev events are asked for with get_missing_events (bounded) and processed first; if
     the event's own prev events are still missing it is refused, while a gap before the
     oldest fetched event is bridged with /state_ids at the missing event;
  4. auth against its own auth events (fetching the missing ones from the origin with
     /event_auth, checked and stored as outliers) -> rejected;
  5. auth against the state before it -> rejected;
  6. auth against the room's current state -> soft-failed (kept out of the timeline).
Then the room's new current state: the state after the event when it extends every
forward extremity, else state resolution of [current state, state after the event].
An accepted m.room.guest_access makes our guests leave when guests may no longer join.

PDUs of one room are handled one at a time in depth order, under a per-room lock that
client-side backfill shares; events already stored are skipped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from federation.events.checks import EventChecks, prev_event_ids, state_key_of
from federation.events.remote import RemoteEvents, Room
from federation.events.validation import InvalidPdu, parse_pdu, validate_pdu, verify_pdu
from federation.locks import KeyedLocks
from federation.state import resolve
from homeserver.events.hashing import compute_event_id
from homeserver.events.room_versions import RoomVersion
from homeserver.http.errors import MatrixError
from homeserver.rooms.membership import remove_guests
from storage.events import StateMap

if TYPE_CHECKING:
    from homeserver.app import Homeserver
    from homeserver.rooms.events_service import RoomHead

logger = logging.getLogger(__name__)

GET_MISSING_EVENTS_LIMIT = 10
# Prev events we may bridge with a remote state request, per received event.
MAX_STATE_REQUESTS = 3


class InboundPdus:
    def __init__(self, hs: Homeserver):
        self.hs = hs
        self.remote = RemoteEvents(hs)
        self.checks = EventChecks(hs, self.remote)
        self.room_locks = KeyedLocks()

    async def check_pdu(
        self, origin: str, pdu: Any, room_version: RoomVersion | str
    ) -> tuple[str, dict[str, Any]]:
        """Checks 1-3 on one PDU; raises InvalidPdu. (`origin` is the server that sent it;
        the checks themselves depend only on the event.)"""
        return await validate_pdu(self.hs.federation.keys, pdu, room_version)

    async def joined_room(self, room_id: str) -> Room | None:
        """The room if we know it and one of our users is joined."""
        try:
            version = await self.hs.events.room_version(room_id)
        except MatrixError:
            return None
        if self.hs.server_name not in await self.hs.events.servers_in_room(room_id):
            return None
        return Room(room_id, version)

    async def handle_pdus(self, origin: str, pdus: list[Any]) -> dict[str, dict[str, str]]:
        by_room: dict[str, list[Any]] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
            # U+0000 cannot be looked up in PostgreSQL text: no room of ours has it.
            if isinstance(room_id, str) and "\x00" not in room_id:
                by_room.setdefault(room_id, []).append(pdu)
            else:
                logger.info("PDU from %s without a usable room_id ignored", origin)
        results: dict[str, dict[str, str]] = {}
        for room_id, room_pdus in by_room.items():
            results.update(await self._handle_room(origin, room_id, room_pdus))
        return results

    async def _handle_room(self, origin: str, room_id: str, pdus: list[Any]) -> dict:
        results: dict[str, dict[str, str]] = {}
        room = await self.joined_room(room_id)
        if room is None or not await self.hs.federation.acl_allows(room_id, origin):
            refusal = "not in this room" if room is None else "origin denied by the room's ACL"
            for pdu in pdus:
                event_id = _best_effort_event_id(pdu, room)
                if event_id is not None:
                    results[event_id] = {"error": refusal}
            return results
        parsed: list[tuple[str, dict[str, Any]]] = []
        for pdu in pdus:
            try:
                parsed.append(parse_pdu(pdu, room.version))
            except InvalidPdu as e:
                event_id = _best_effort_event_id(pdu, room)
                if event_id is not None:
                    results[event_id] = {"error": f"invalid PDU: {e}"}
        parsed.sort(key=lambda item: item[1]["depth"])
        async with self.room_locks.hold(room_id):
            for event_id, event in parsed:
                try:
                    error = await self._receive(origin, room, event_id, event)
                except Exception:
                    logger.exception("processing PDU %s failed", event_id)
                    error = "internal error"
                results[event_id] = {"error": error} if error else {}
        return results

    async def _receive(
        self, origin: str, room: Room, event_id: str, event: dict[str, Any]
    ) -> str | None:
        if await self._handled(event_id):
            return None
        try:
            event = await verify_pdu(self.hs.federation.keys, event_id, event, room.version)
        except InvalidPdu as e:
            return f"invalid PDU: {e}"
        return await self.process(origin, room, event_id, event, fill_gaps=True)

    async def _handled(self, event_id: str) -> bool:
        """Stored already, in the timeline or judged (an outlier is not judged yet)."""
        stored = await self.hs.event_store.get_event(event_id)
        return stored is not None and stored.status != "outlier"

    async def process(
        self, origin: str, room: Room, event_id: str, event: dict[str, Any], *, fill_gaps: bool
    ) -> str | None:
        """Checks 4-6 and persistence of a validated event; an error string when the event
        is not stored, None when it is stored (accepted, soft-failed or rejected)."""
        if event["type"] == "m.room.create":
            return "the room already has a create event"
        if not prev_event_ids(event):
            return "an event other than m.room.create needs prev_events"
        # The gap first: the events it brings (and the outliers that place them) are
        # often the auth events this one cites, which then need no /event_auth.
        state_before = await self._state_before(origin, room, event_id, event, fill_gaps)
        if state_before is None and fill_gaps:
            return "prev_events are missing and the origin did not provide them"
        if state_before is None:
            return "the state before the event could not be determined"
        auth = await self.checks.auth_events(origin, room, event_id, event)
        if auth is None:
            return "auth events are missing and the origin could not provide them"
        reason = await self.checks.against_auth_events(room, event, auth)
        if reason is None:
            reason = await self.checks.against_state(room, event, state_before)
        events = self.hs.events
        if reason is not None:
            logger.info("rejected %s from %s: %s", event_id, origin, reason)
            await events.persist_federated(
                room.room_id,
                event,
                event_id,
                state_before=state_before,
                outcome="rejected",
                reason=reason,
            )
            # Like a soft failure, a rejection is the receiver's judgement, not an error
            # processing the PDU: the answer is {} (as Synapse's), the event is kept
            # (rejected) so that events built on it can be placed.
            return None
        current = (await events.room_head(room.room_id)).state
        soft = await self.checks.against_state(room, event, current)
        if soft is None:
            soft = await self.checks.redaction_elsewhere(room, event)
        if soft is not None:
            # Silent by design: the sender learns nothing, clients see nothing.
            logger.info("soft-failed %s from %s: %s", event_id, origin, soft)
            await events.persist_federated(
                room.room_id,
                event,
                event_id,
                state_before=state_before,
                outcome="soft_failed",
                reason=soft,
            )
            return None

        async def current_state(head: RoomHead) -> StateMap | None:
            if set(prev_event_ids(event)) >= set(head.extremities):
                return None  # it extends every fork: the state after it
            after = dict(state_before)
            if event.get("state_key") is not None:
                after[state_key_of(event)] = event_id
            return await resolve(
                self.hs, room.room_id, room.version, [head.state, after], {event_id: event}
            )

        await events.persist_federated(
            room.room_id,
            event,
            event_id,
            state_before=state_before,
            current_state=current_state,
            redacts=await self.checks.allowed_redaction(room, event, state_before),
        )
        if event["type"] == "m.room.guest_access" and event.get("state_key") == "":
            await self._guest_access_changed(room.room_id, event_id)
        return None

    async def _guest_access_changed(self, room_id: str, event_id: str) -> None:
        """Guest access withdrawn by another server: our guests leave the room, each by
        their own leave event, as when one of our users withdraws it (Synapse does so)."""
        try:
            await remove_guests(self.hs, room_id)
        except Exception:  # the event is stored; a guest left behind is no reason to fail it
            logger.exception("removing guests after %s failed", event_id)

    async def _state_before(
        self, origin: str, room: Room, event_id: str, event: dict[str, Any], fill_gaps: bool
    ) -> StateMap | None:
        prevs = prev_event_ids(event)
        known = await self.hs.events.state_after_events(prevs)
        if fill_gaps and any(p not in known for p in prevs):
            await self._fill_gap(origin, room, event_id)
            known = await self.hs.events.state_after_events(prevs)
            if any(p not in known for p in prevs):
                # An event sent to us whose sender will not show what it follows is
                # refused (as Synapse does); only the events get_missing_events brought
                # are placed on a remote server's word (/state_ids).
                return None
        missing = [p for p in prevs if p not in known]
        if len(missing) > MAX_STATE_REQUESTS:
            logger.info("%s has %d prev events we cannot place", event_id, len(missing))
            return None
        state_sets = [known[p] for p in prevs if p in known]
        for prev in missing:
            state = await self.checks.remote_state(origin, room, prev, after=True)
            if state is None:
                return None
            state_sets.append(state)
        return await resolve(self.hs, room.room_id, room.version, state_sets)

    async def _fill_gap(self, origin: str, room: Room, event_id: str) -> None:
        """get_missing_events from the origin, between our forward extremities and the
        event; what comes back is processed oldest first, without asking again."""
        head = await self.hs.events.room_head(room.room_id)
        fetched = await self.remote.missing_events(
            origin, room, list(head.extremities), [event_id], GET_MISSING_EVENTS_LIMIT
        )
        fetched.pop(event_id, None)
        for missing_id, missing in sorted(fetched.items(), key=lambda kv: kv[1]["depth"]):
            if await self._handled(missing_id):
                continue
            error = await self.process(origin, room, missing_id, missing, fill_gaps=False)
            if error:
                logger.info("missing event %s not stored: %s", missing_id, error)


def _best_effort_event_id(pdu: Any, room: Room | None) -> str | None:
    """An id to report an error under, for a PDU we will not process."""
    if not isinstance(pdu, dict):
        return None
    if isinstance(pdu.get("event_id"), str) and (
        room is None or room.version.event_ids_carry_domain
    ):
        return pdu["event_id"]
    if room is None:
        return None
    try:
        return compute_event_id({k: v for k, v in pdu.items() if k != "unsigned"}, room.version)
    except Exception:  # a PDU too malformed to hash has no id to answer under
        return None
