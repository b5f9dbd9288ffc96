"""Client-side backfill: history older than anything we hold, fetched from a server in
the room when a local client's /messages pages back past our oldest event.

    stored = await hs.federation.backfiller.backfill(room_id, limit)

The events we lack just before our oldest ones (their prev_events that are not in our
timeline: the backward extremities) go to GET /backfill on a server in the room. What
comes back is validated, checked against its auth events and the state before it, and
stored with negative stream orderings (EventService.persist_backfilled), oldest last.
The state before the oldest fetched event comes from the same server's /state_ids.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from federation.events.checks import prev_event_ids, state_key_of
from federation.events.remote import Fetched, Room
from federation.state import resolve
from homeserver.http.errors import MatrixError
from storage.events import StateMap
from storage.federation_events import FederationEventStore

if TYPE_CHECKING:
    from federation.inbound import InboundPdus
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

MAX_BACKFILL = 100  # events per request
MIN_REQUEST = 50  # asked for even when the client wants fewer
MAX_SERVERS_TRIED = 3
OLDEST_SCANNED = 20  # our oldest events whose prev_events we look for
MAX_STATE_REQUESTS = 2  # /state_ids requests per backfill, to place events with no known prev


class Backfiller:
    def __init__(self, hs: Homeserver, inbound: InboundPdus):
        self.hs = hs
        self.inbound = inbound
        self.store = FederationEventStore(hs.db)

    async def backward_extremities(self, room_id: str) -> list[str]:
        oldest = await self.store.oldest_timeline_events(room_id, OLDEST_SCANNED)
        events = await self.hs.event_store.get_events(oldest)
        prevs = {p for ev in events.values() for p in prev_event_ids(ev.event)}
        prevs -= await self.store.in_timeline(prevs)
        # Events we rejected stay out; asking for them again would change nothing.
        stored = await self.hs.event_store.get_events(prevs)
        return sorted(p for p in prevs if p not in stored or stored[p].status != "rejected")

    async def backfill(self, room_id: str, limit: int) -> int:
        """Fetches `limit` older events or more (MIN_REQUEST); returns how many were
        stored."""
        servers = await self.hs.events.servers_in_room(room_id) - {self.hs.server_name}
        if not servers:
            return 0
        try:
            room = Room(room_id, await self.hs.events.room_version(room_id))
        except MatrixError:
            return 0
        # At least MIN_REQUEST (as Synapse asks 100): fewer round trips, and a batch
        # that reaches the room's first events carries the ones we hold only as outliers
        # (from the join's state), which then need no /state_ids to be placed.
        limit = max(MIN_REQUEST, min(limit, MAX_BACKFILL))
        async with self.inbound.room_locks.hold(room_id):
            extremities = await self.backward_extremities(room_id)
            if not extremities:
                return 0
            for dest in sorted(servers)[:MAX_SERVERS_TRIED]:
                fetched = await self.inbound.remote.backfill(dest, room, extremities, limit)
                stored = await self._store(dest, room, fetched) if fetched else 0
                if stored:
                    return stored
        return 0

    async def _store(self, dest: str, room: Room, fetched: Fetched) -> int:
        checks = self.inbound.checks
        have = await self.store.in_timeline(fetched)
        state_after: dict[str, StateMap] = {}
        accepted: list[tuple[str, dict, StateMap]] = []
        state_requests = 0
        for event_id, event in sorted(fetched.items(), key=lambda kv: kv[1]["depth"]):
            if event_id in have:
                continue
            auth = await checks.auth_events(dest, room, event_id, event)
            if auth is None:
                logger.info("backfilled %s dropped: auth events missing", event_id)
                continue
            reason = await checks.against_auth_events(room, event, auth)
            prevs = prev_event_ids(event)
            known = await self.hs.events.state_after_events(
                [p for p in prevs if p not in state_after]
            )
            known.update({p: state_after[p] for p in prevs if p in state_after})
            before: StateMap | None
            if all(p in known for p in prevs):
                before = await resolve(
                    self.hs, room.room_id, room.version, [known[p] for p in prevs]
                )
            elif state_requests < MAX_STATE_REQUESTS:
                state_requests += 1
                before = await checks.remote_state(dest, room, event_id, after=False)
                if before is None:
                    continue
            else:
                continue
            if reason is None:
                reason = await checks.against_state(room, event, before)
            if reason is not None:
                logger.info("backfilled %s rejected: %s", event_id, reason)
                await self.hs.events.persist_federated(
                    room.room_id,
                    event,
                    event_id,
                    state_before=before,
                    outcome="rejected",
                    reason=reason,
                )
                state_after[event_id] = before
                continue
            after = dict(before)
            if event.get("state_key") is not None:
                after[state_key_of(event)] = event_id
            state_after[event_id] = after
            accepted.append((event_id, event, before))
        if accepted:
            accepted.reverse()  # newest first, as persist_backfilled numbers them
            await self.hs.events.persist_backfilled(room.room_id, accepted)
        return len(accepted)
