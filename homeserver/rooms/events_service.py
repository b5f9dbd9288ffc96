"""Creating local events and persisting them with group commit.

Building an event needs the room's head: forward extremities, depth and current state.
Heads are cached per room and updated as events are built, under a per-room lock, so
events sent at once into one room chain linearly without waiting for each other's
commit. Built events go to one queue; a single writer task takes everything queued and
persists it in one transaction (group commit), in queue order.

One event must not fail the others of its batch: what PostgreSQL would refuse is refused
when the event is built (events/storable.py), and a batch that fails anyway (for a reason
other than the database being unavailable) is retried event by event. An event that
cannot be stored marks the head it was built on broken: the events queued after it on
that head reference it, and fail too; the next event is built on the head as stored.

With several processes writing to one room, each keeps its own head; a change committed
by another process drops our cached head, and a race between the two shows up as two
forward extremities, which the next event references together.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from homeserver.events.auth import AuthError, auth_types_for_event, check_auth
from homeserver.events.hashing import add_content_hash, compute_event_id, room_id_from_create_event
from homeserver.events.redaction import prune_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import sign_event
from homeserver.events.storable import canonical_json_problem, nul_column_problem
from homeserver.http.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.jsonutil import canonical, canonical_str
from homeserver.metrics import events_persisted, persist_batch_size, persist_latency
from homeserver.sync.notifier import state_key_of
from storage.availability import is_unavailable
from storage.events import (
    MAX_STATE_CHAIN,
    PersistItem,
    StateGroupRef,
    StateKey,
    StateMap,
    StoredEvent,
)
from storage.streams import StreamChange

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 65536
MAX_BATCH = 256
_CREATE_ATTEMPTS = 5
# Stripped state given to invitees (spec: "Stripped state").
STRIPPED_STATE_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
    "m.room.guest_access",
    # The room's access rule (homeserver/policy), which the invitee's server enforces too.
    "im.vector.room.access_rules",
)


@dataclass
class RoomHead:
    room_id: str
    version: RoomVersion
    extremities: list[str]
    depth: int
    state: StateMap
    group: StateGroupRef | None
    create_event: dict[str, Any] | None = None
    # Set when an event built on this head could not be stored: the events built after it
    # reference it (prev_events, state groups) and are failed too, not stored.
    broken: bool = False


@dataclass
class _Pending:
    item: PersistItem
    future: asyncio.Future = field(repr=False)
    # The head the event was built on (and advanced).
    head: RoomHead = field(repr=False)
    # An event of another server's that only we received (a send_join): the origin it
    # came from, the room's other servers get it from us.
    relay_from: str | None = None


class EventOutbox(Protocol):
    """Where persisted events bound for other servers are queued (the federation sender).

    `queue_events` runs in the transaction that persists the batch, before the events
    are written (the room's current state is the one before them), so that the queue
    rows commit or roll back with the events; `events_committed` follows the commit."""

    async def queue_events(
        self, conn: Any, items: Sequence[PersistItem], relayed: Mapping[str, str]
    ) -> Collection[str]: ...

    def events_committed(
        self, items: Sequence[PersistItem], destinations: Collection[str]
    ) -> None: ...


class EventService:
    def __init__(self, hs: Homeserver):
        self.hs = hs
        self.store = hs.event_store
        self._heads: dict[str, RoomHead] = {}
        # Bumped whenever a room's cached head is dropped: a head read from the database
        # while that happened may predate what caused the drop, and is not cached.
        self._head_drops: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task | None = None
        self._txn_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._last_create_ts = 0

    async def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        previous = self.hs.streams.on_change

        def on_change(change: StreamChange) -> None:
            # A room changed by another process: our cached head is stale. (Which rooms
            # is unknown when the change concerns everyone: a notification too large to
            # list them, or missed while the LISTEN connection was down.)
            if change.stream == "events" and change.remote:
                if change.everyone:
                    for room_id in list(self._heads):
                        self.drop_head(room_id)
                for room_id in change.rooms:
                    self.drop_head(room_id)
            previous(change)

        self.hs.streams.on_change = on_change

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass

    # ---- heads ---------------------------------------------------------------------------

    def _lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    async def room_head(self, room_id: str) -> RoomHead:
        """The room's cached head: version, forward extremities, depth, current state.
        Callers read it; only this service changes it (under the room lock)."""
        head = self._heads.get(room_id)
        if head is not None:
            return head
        drops = self._head_drops.get(room_id, 0)
        data = await self.store.room_head(room_id)
        if data is None:
            raise not_found("Unknown room")
        version = KNOWN_ROOM_VERSIONS[data["room_version"]]
        group = None
        if data["state_group"] is not None:
            group = StateGroupRef(
                room_id, id=data["state_group"], chain_length=data["chain_length"]
            )
        head = RoomHead(room_id, version, data["extremities"], data["depth"], data["state"], group)
        create_id = head.state.get(("m.room.create", ""))
        if create_id:
            create = await self.store.get_event(create_id)
            head.create_event = create.event if create else None
        if self._head_drops.get(room_id, 0) == drops:
            self._heads[room_id] = head
        return head

    async def room_version(self, room_id: str) -> RoomVersion:
        return (await self.room_head(room_id)).version

    async def current_state_event(
        self, room_id: str, etype: str, state_key: str = ""
    ) -> StoredEvent | None:
        head = await self.room_head(room_id)
        event_id = head.state.get((etype, state_key))
        return await self.store.get_event(event_id) if event_id else None

    async def current_state(
        self, room_id: str, keys: list[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], StoredEvent]:
        head = await self.room_head(room_id)
        ids = {k: v for k, v in head.state.items() if keys is None or k in keys}
        events = await self.store.get_events(ids.values())
        return {k: events[v] for k, v in ids.items() if v in events}

    async def membership(self, room_id: str, user_id: str) -> str | None:
        ev = await self.current_state_event(room_id, "m.room.member", user_id)
        return ev.content.get("membership") if ev else None

    # ---- building ------------------------------------------------------------------------

    async def create_and_send(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        txn: tuple[str, str] | None = None,
        *,
        redacts: str | None = None,
    ) -> str:
        """Builds, authorises, signs and persists a local event; returns its event ID."""
        if txn is not None:
            key = (sender, *txn)
            lock = self._txn_locks.setdefault(key, asyncio.Lock())
            async with lock:
                try:
                    existing = await self.store.txn_event_id(sender, *txn)
                    if existing:
                        return existing
                    return await self._send(
                        sender, room_id, event_type, content, state_key, txn, redacts
                    )
                finally:
                    if not lock._waiters:
                        self._txn_locks.pop(key, None)
        return await self._send(sender, room_id, event_type, content, state_key, txn, redacts)

    async def _send(self, sender, room_id, event_type, content, state_key, txn, redacts) -> str:
        async with self._lock(room_id):
            head = await self.room_head(room_id)
            item = await self._build(head, sender, event_type, content, state_key, txn, redacts)
            self._advance_head(head, item)
            fut = self._enqueue(item, head)
        await fut
        return item.event_id

    # ---- membership handshakes with other servers ----------------------------------------

    async def membership_template(
        self, room_id: str, user_id: str, content: dict[str, Any]
    ) -> tuple[dict[str, Any], RoomVersion]:
        """The unsigned m.room.member event of `user_id` on the room's head, as make_join,
        make_leave and make_knock hand it to the user's server; refused (M_FORBIDDEN) if
        the auth rules would not allow it now."""
        async with self._lock(room_id):
            head = await self.room_head(room_id)
            event, auth_state = await self._template(
                head, user_id, "m.room.member", content, user_id
            )
            create_event = head.create_event
        try:
            check_auth(head.version, event, auth_state, create_event=create_event)
            await self.hs.policy.check(event, head.state)
        except AuthError as e:
            raise forbidden(str(e)) from None
        return event, head.version

    async def prepare_event(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
    ) -> tuple[PersistItem, StateMap]:
        """Builds, authorises and signs a local event without persisting it (an invite the
        invitee's server countersigns first); returns it with the state before it. Persist
        it with persist_federated(..., federated=False)."""
        async with self._lock(room_id):
            head = await self.room_head(room_id)
            item = await self._build(head, sender, event_type, content, state_key, None, None)
            return item, dict(head.state)

    def new_room_id(self) -> str:
        """A fresh room ID for versions before v12 (where it is not the create event's
        hash), for a caller that must name the room before creating it (an upgrade's
        tombstone)."""
        return f"!{secrets.token_urlsafe(18)}:{self.hs.server_name}"

    async def create_room_event(
        self,
        sender: str,
        room_version: RoomVersion,
        content: dict[str, Any],
        room_id: str | None = None,
    ) -> tuple[str, str]:
        """Builds and persists the m.room.create event of a new room; returns (room_id,
        event_id). `room_id`: one from new_room_id (versions before v12 only)."""
        if room_id is not None and room_version.room_id_is_create_event_hash:
            raise ValueError("a v12 room's ID is its create event's hash")
        # v12: the room ID is the create event's hash, so the same sender creating two rooms
        # with the same content in the same millisecond would get one ID. Timestamps of
        # this process's create events are strictly increasing; a collision with another
        # process's shows as a unique violation and is retried with a later timestamp.
        try:
            # The create event itself is built below; the policies only read its sender.
            await self.hs.policy.check({"type": "m.room.create", "sender": sender}, {})
        except AuthError as e:
            raise forbidden(str(e)) from None
        now = max(int(time.time() * 1000), self._last_create_ts + 1)
        self._last_create_ts = now + _CREATE_ATTEMPTS
        preset = room_id
        for attempt in range(_CREATE_ATTEMPTS):
            event, event_id, room_id = self._build_create(
                sender, room_version, content, now + attempt, preset
            )
            try:
                await self.store.create_room_row(room_id, room_version.identifier, sender, now)
                break
            except asyncpg.UniqueViolationError:
                if preset is not None:
                    raise MatrixError(500, "M_UNKNOWN", "Room ID already taken") from None
                continue
        else:
            raise MatrixError(500, "M_UNKNOWN", "Could not allocate a room ID")
        async with self._lock(room_id):
            after = StateGroupRef(room_id, delta={("m.room.create", ""): event_id}, chain_length=0)
            after.full = dict(after.delta)
            item = PersistItem(event, event_id, room_id, None, after)
            head = RoomHead(room_id, room_version, [], 0, {}, None, create_event=event)
            self._heads[room_id] = head
            self._advance_head(head, item)
            fut = self._enqueue(item, head)
        await fut
        return room_id, event_id

    def _build_create(
        self,
        sender: str,
        room_version: RoomVersion,
        content: dict[str, Any],
        ts: int,
        room_id: str | None = None,
    ) -> tuple[dict[str, Any], str, str]:
        event: dict[str, Any] = {
            "type": "m.room.create",
            "state_key": "",
            "sender": sender,
            "content": content,
            "origin_server_ts": ts,
            "depth": 1,
            "prev_events": [],
            "auth_events": [],
        }
        if not room_version.room_id_is_create_event_hash:
            room_id = room_id or self.new_room_id()
            event["room_id"] = room_id
        event, event_id = self._finish(event, room_version)
        if room_id is None:
            room_id = room_id_from_create_event(event, room_version)
        try:
            check_auth(room_version, event, {}, create_event=event)
        except AuthError as e:
            raise MatrixError(400, "M_BAD_JSON", f"Invalid create event: {e}") from None
        return event, event_id, room_id

    def _local_event_id(self) -> str:
        """An event ID of v1/v2, which carry the sending server's name."""
        return f"${secrets.token_urlsafe(18)}:{self.hs.server_name}"

    def _finish(self, event: dict[str, Any], version: RoomVersion) -> tuple[dict[str, Any], str]:
        # Refused here, before the event joins a batch: a value PostgreSQL cannot store
        # would fail every other event committed with it.
        problem = nul_column_problem(event)
        if problem is None and version.strict_canonical_json:
            problem = canonical_json_problem(event)
        if problem is not None:
            raise bad_json(f"Invalid event: {problem}")
        if version.event_ids_carry_domain:
            event.setdefault("event_id", self._local_event_id())
            event["origin"] = self.hs.server_name
        try:
            event = add_content_hash(event)
            event = sign_event(event, self.hs.server_name, self.hs.signing_key, version)
            size = len(canonical(event))
        except UnicodeEncodeError:
            # A lone surrogate (JSON bodies cannot carry one; a caller inside could).
            raise bad_json("Invalid event: a string is not valid Unicode") from None
        if size > MAX_EVENT_BYTES:
            raise MatrixError(413, "M_TOO_LARGE", "Event is larger than 65536 bytes")
        event_id = (
            event["event_id"]
            if version.event_ids_carry_domain
            else compute_event_id(event, version)
        )
        return event, event_id

    async def _build(
        self, head: RoomHead, sender, event_type, content, state_key, txn, redacts
    ) -> PersistItem:
        version = head.version
        event, auth_state = await self._template(
            head, sender, event_type, content, state_key, redacts
        )
        if version.event_ids_carry_domain:
            # Named before the auth check: v1/v2 let a redaction by a user without the
            # redact level through when its ID's domain is the redacted event's.
            event["event_id"] = self._local_event_id()
        try:
            check_auth(version, event, auth_state, create_event=head.create_event)
            await self.hs.policy.check(event, head.state)
        except AuthError as e:
            raise forbidden(str(e)) from None
        event, event_id = self._finish(event, version)

        unsigned = await self._unsigned(head, head.state, event)
        redaction = None
        if redacts is not None:
            target = await self.store.get_event(redacts)
            if target is not None and target.room_id == head.room_id:
                redaction = (redacts, canonical_str(prune_event(target.event, version)))

        before = head.group
        after = before
        if state_key is not None:
            after = _next_group(head.room_id, before, head.state, (event_type, state_key), event_id)
        return PersistItem(
            event=event,
            event_id=event_id,
            room_id=head.room_id,
            state_before=before,
            state_after=after,
            unsigned=unsigned,
            txn_device_id=txn[0] if txn else None,
            txn_id=txn[1] if txn else None,
            redacts=redaction,
        )

    async def _template(
        self, head: RoomHead, sender, event_type, content, state_key, redacts=None
    ) -> tuple[dict[str, Any], dict[StateKey, dict[str, Any]]]:
        """An unsigned event on top of the room's head, and the state it is authorised
        against (its auth events)."""
        version = head.version
        event: dict[str, Any] = {
            "room_id": head.room_id,
            "type": event_type,
            "sender": sender,
            "content": content,
            "origin_server_ts": int(time.time() * 1000),
            "depth": head.depth + 1,
        }
        if state_key is not None:
            event["state_key"] = state_key
        if redacts is not None:
            # v11 moved `redacts` into content; older versions read it at the top level.
            if version.v11_redactions_and_creator:
                event["content"] = {**content, "redacts": redacts}
            else:
                event["redacts"] = redacts
        auth_keys = auth_types_for_event(version, event)
        auth_ids = [head.state[k] for k in auth_keys if k in head.state]
        auth_stored = await self.store.get_events(auth_ids)
        auth_state = {
            k: auth_stored[head.state[k]].event
            for k in auth_keys
            if k in head.state and head.state[k] in auth_stored
        }
        prev = head.extremities[-10:]
        if version.event_ids_carry_domain:
            event["prev_events"] = [[p, {}] for p in prev]
            event["auth_events"] = [[a, {}] for a in auth_ids]
        else:
            event["prev_events"] = list(prev)
            event["auth_events"] = list(auth_ids)
        return event, auth_state

    async def _unsigned(
        self, head: RoomHead, state_before: StateMap, event: dict[str, Any]
    ) -> dict[str, Any] | None:
        """What the server adds under `unsigned`: the state this event replaces, and the
        stripped room state an invitee or knocker is shown."""
        state_key = event.get("state_key")
        if state_key is None:
            return None
        unsigned: dict[str, Any] = {}
        replaced = state_before.get((event["type"], state_key))
        if replaced:
            prev_ev = await self.store.get_event(replaced)
            if prev_ev is not None:
                unsigned["replaces_state"] = replaced
                unsigned["prev_content"] = prev_ev.content
                unsigned["prev_sender"] = prev_ev.sender
        membership = event.get("content", {}).get("membership")
        if event["type"] == "m.room.member" and membership in ("invite", "knock"):
            unsigned["invite_room_state"] = await self._stripped_state(head, event["sender"])
        return unsigned or None

    async def _stripped_state(self, head: RoomHead, sender: str) -> list[dict[str, Any]]:
        keys = [(t, "") for t in STRIPPED_STATE_TYPES] + [("m.room.member", sender)]
        ids = [head.state[k] for k in keys if k in head.state]
        events = await self.store.get_events(ids)
        return [
            {"type": e.type, "state_key": e.state_key, "sender": e.sender, "content": e.content}
            for e in (events[i] for i in ids if i in events)
        ]

    def _advance_head(self, head: RoomHead, item: PersistItem) -> None:
        head.extremities = [item.event_id]
        head.depth = item.event["depth"]
        head.group = item.state_after
        sk = item.event.get("state_key")
        if sk is not None:
            head.state[(item.event["type"], sk)] = item.event_id

    # ---- events from other servers -------------------------------------------------------

    async def create_federated_room(self, room_id: str, room_version: str, creator: str) -> None:
        """The `rooms` row for a room we enter over federation (its events follow)."""
        try:
            await self.store.create_room_row(
                room_id, room_version, creator, int(time.time() * 1000)
            )
        except asyncpg.UniqueViolationError:
            pass  # known already: a rejoin, or a room we were invited to before

    def drop_head(self, room_id: str) -> None:
        """Forgets the cached head of a room whose rows changed outside this service (an
        admin purge or extremity clean-up, or another process's event); the next event
        reloads it."""
        self._heads.pop(room_id, None)
        self._head_drops[room_id] = self._head_drops.get(room_id, 0) + 1

    async def forget_extremities(self, room_id: str) -> None:
        """Drops a room's forward extremities before we join it again through another
        server: what we sent before leaving is behind the state that server gives us,
        and citing it in our next event would merge that stale branch back in."""
        async with self._lock(room_id):
            await self.store.clear_forward_extremities(room_id)
            self.drop_head(room_id)

    async def persist_federated(
        self,
        room_id: str,
        event: dict[str, Any],
        event_id: str,
        *,
        state_before: StateMap,
        current_state: StateMap | None | Callable[[RoomHead], Awaitable[StateMap | None]] = None,
        redacts: str | None = None,  # a redaction the caller found allowed: its target
        outcome: str = "accepted",
        reason: str | None = None,
        federated: bool = True,
        relay_from: str | None = None,
    ) -> None:
        """Stores an event received from another server, validated and authorised by the
        caller. (`federated=False`: one of ours that another server had to countersign
        first, which the outbound queue sends like any local event. `relay_from`: an event
        only we received, from that server, which the queue sends to the room's others.)

        `state_before` is the state before the event on its own branch (resolved across its
        prev_events). `current_state` is the room's state after accepting it, resolved by
        the caller when the event does not extend every forward extremity; None means the
        state after this event; an async function of the RoomHead returning either is
        called under the room lock. `outcome` 'soft_failed' or 'rejected' keeps the event out
        of the timeline and out of current state.
        """
        if outcome not in ("accepted", "soft_failed", "rejected"):
            raise ValueError(outcome)
        async with self._lock(room_id):
            head = await self.room_head(room_id)
            before = head.group if head.group is not None and head.state == state_before else None
            if outcome != "accepted":
                # The state before is kept for rejected events too: an event referencing
                # one is placed on the state before it (spec: "Rejection").
                if before is None:
                    before = _full_group(room_id, state_before)
                await self.store.persist_out_of_timeline(
                    room_id,
                    [(event_id, event)],
                    outcome,
                    reason=reason,
                    state_before=before,
                    now_ms=int(time.time() * 1000),
                )
                return
            if callable(current_state):
                # Resolved here, under the room lock, against the head as it is now: a
                # local event committed meanwhile must not be lost from current state.
                current_state = await current_state(head)
            if before is None:
                before = _full_group(room_id, state_before)
            state_after = dict(state_before)
            key = None
            if event.get("state_key") is not None:
                key = (event["type"], event["state_key"])
                state_after[key] = event_id
            if current_state is None:
                current_state = state_after
            if current_state == state_after:
                after = (
                    _next_group(room_id, before, state_before, key, event_id)
                    if key is not None
                    else before
                )
            else:
                after = _full_group(room_id, current_state)
            delta = None
            if current_state != {**head.state, **({key: event_id} if key else {})}:
                delta = await self._state_delta(head.state, current_state, {event_id: event})
            item = PersistItem(
                event=event,
                event_id=event_id,
                room_id=room_id,
                redacts=await self._redaction(room_id, head.version, redacts),
                state_before=before,
                state_after=after,
                unsigned=await self._unsigned(head, state_before, event),
                current_state_delta=delta,
                federated=federated,
            )
            prev = set(_prev_event_ids(event))
            head.extremities = [e for e in head.extremities if e not in prev] + [event_id]
            head.depth = max(head.depth, event["depth"])
            head.group = after
            head.state = dict(current_state)
            if head.create_event is None and ("m.room.create", "") in current_state:
                create = await self.store.get_event(current_state[("m.room.create", "")])
                head.create_event = create.event if create else None
            fut = self._enqueue(item, head, relay_from)
        await fut

    async def _state_delta(
        self, old: StateMap, new: StateMap, pending: dict[str, dict[str, Any]]
    ) -> list[tuple[str, str, str | None, str | None]]:
        """Current-state rows to change; `pending` are events not stored yet (the one
        being persisted), whose membership the rows need too."""
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        stored = await self.store.get_events(v for v in changed.values() if v not in pending)
        contents = {i: e.content for i, e in stored.items()}
        contents.update((i, e.get("content") or {}) for i, e in pending.items())
        delta: list[tuple[str, str, str | None, str | None]] = [
            (t, sk, None, None) for (t, sk) in old.keys() - new.keys()
        ]
        for (t, sk), event_id in changed.items():
            content = contents.get(event_id)
            membership = content.get("membership") if content and t == "m.room.member" else None
            delta.append((t, sk, event_id, membership))
        return delta

    async def persist_outliers(
        self, room_id: str, events: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """Stores auth-chain and state events learnt over federation outside the timeline."""
        await self.store.persist_out_of_timeline(
            room_id, events, "outlier", now_ms=int(time.time() * 1000)
        )

    async def persist_backfilled(
        self, room_id: str, events: list[tuple[str, dict[str, Any], StateMap]]
    ) -> None:
        """Stores history older than our timeline, newest first as backfill returns it:
        (event_id, event, state before it) each. Current state and extremities stay."""
        items = []
        for event_id, event, state_before in events:
            before = _full_group(room_id, state_before)
            after = before
            if event.get("state_key") is not None:
                after = _next_group(
                    room_id, before, state_before, (event["type"], event["state_key"]), event_id
                )
            items.append(PersistItem(event, event_id, room_id, before, after, federated=True))
        await self.store.persist_backfilled(items)

    async def state_after_events(self, event_ids: list[str]) -> dict[str, StateMap]:
        """The state after each event on its own branch, for events whose state before is
        known (timeline and soft-failed events; not outliers)."""
        events = await self.store.get_events(event_ids)
        groups = await self.store.state_groups(
            e.state_group_before for e in events.values() if e.state_group_before
        )
        result: dict[str, StateMap] = {}
        for event_id, ev in events.items():
            if ev.state_group_before is None and ev.status is not None:
                continue
            state = dict(
                groups.get(ev.state_group_before, {}) if ev.state_group_before is not None else {}
            )
            if ev.state_key is not None and ev.status != "rejected":
                state[(ev.type, ev.state_key)] = event_id
            result[event_id] = state
        return result

    async def _redaction(
        self, room_id: str, version: RoomVersion, target_id: str | None
    ) -> tuple[str, str] | None:
        """PersistItem.redacts for a redaction of `target_id`, if we hold that event."""
        if target_id is None:
            return None
        target = await self.store.get_event(target_id)
        if target is None or target.room_id != room_id:
            return None
        return target_id, canonical_str(prune_event(target.event, version))

    async def servers_in_room(self, room_id: str) -> set[str]:
        return await self.hs.membership_store.servers_in_room(room_id)

    # ---- group commit ---------------------------------------------------------------------

    def _enqueue(
        self, item: PersistItem, head: RoomHead, relay_from: str | None = None
    ) -> asyncio.Future:
        """Queues an event built on `head` (under the room lock) for the writer."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, fut, head, relay_from))
        return fut

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        """Persists `batch` in one transaction; if that fails, event by event, so that
        one event PostgreSQL refuses fails its own request only (and those built on it)."""
        batch = [p for p in batch if not self._fail_if_broken(p)]
        if not batch:
            return
        groups = _unstored_groups(batch)
        try:
            await self._persist(batch)
        except Exception as e:
            if is_unavailable(e):
                # Nothing to do with any one event: retrying them one by one would only
                # multiply the failures (and the log lines).
                self._failed_all(batch)
                return
            if len(batch) == 1:
                self._failed(batch[0])
                return
            logger.warning(
                "persisting %d events failed; retrying one by one", len(batch), exc_info=True
            )
            for ref in groups:
                ref.id = None  # ids taken in the rolled-back transaction
            for p in batch:
                await self._write([p])
            return
        for p in batch:
            # The room's head was read from the database again while this event was on its
            # way (another process's change dropped ours): that head lacks this event, and
            # the next event built on it would not see it (a join, say). Read it again.
            cached = self._heads.get(p.item.room_id)
            if cached is not None and cached is not p.head:
                self.drop_head(p.item.room_id)
        for p in batch:
            if not p.future.done():
                p.future.set_result(None)

    def _fail_if_broken(self, p: _Pending) -> bool:
        if not p.head.broken:
            return False
        if not p.future.done():
            p.future.set_exception(
                MatrixError(500, "M_UNKNOWN", "Could not store an event this one follows")
            )
        return True

    def _failed_all(self, batch: list[_Pending]) -> None:
        logger.exception("persisting %d events failed", len(batch))
        for p in batch:
            self._break(p)
            if not p.future.done():
                p.future.set_exception(MatrixError(500, "M_UNKNOWN", "Could not store event"))

    def _break(self, p: _Pending) -> None:
        """`p` was not stored: the events queued after it on the same head reference it
        and fail too; the next event is built on the room's head as stored."""
        p.head.broken = True
        if self._heads.get(p.item.room_id) is p.head:
            del self._heads[p.item.room_id]
        for ref in _unstored_groups([p]):
            ref.id = None  # taken in the rolled-back transaction

    def _failed(self, p: _Pending) -> None:
        logger.exception("persisting event %s failed", p.item.event_id)
        self._break(p)
        if not p.future.done():
            p.future.set_exception(MatrixError(500, "M_UNKNOWN", "Could not store event"))

    async def _persist(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        items = [p.item for p in batch]
        relayed = {p.item.event_id: p.relay_from for p in batch if p.relay_from is not None}
        outbox: EventOutbox = self.hs.federation.sender
        async with self.hs.streams.write("events", len(items)) as w:
            # The outbound federation queue commits with the events (a crash after the
            # commit loses nothing); it reads the rooms' servers before the events land.
            destinations = await outbox.queue_events(w.conn, items, relayed)
            # So is the application services' outbox.
            appservices = await self.hs.appservices.queue_events(w.conn, items)
            await self.store.persist_batch(w.conn, items, w.first)
            # Room-list summaries commit with the events they summarise.
            await self.hs.room_summaries.apply(w.conn, items)
            # So does the search index (after current state: it skips encrypted rooms).
            await self.hs.search_store.index(w.conn, items)
            # MSC2228: when self-destructing events expire, with the events.
            expiries = self.hs.housekeeping.self_destruct.expiries(items)
            await self.hs.housekeeping.self_destruct.record(w.conn, expiries)
            w.wake(rooms={it.room_id for it in items})
            # A redaction can change a state event's content (power levels, say).
            w.wake(
                rooms={
                    state_key_of(it.room_id)
                    for it in items
                    if "state_key" in it.event or it.redacts is not None
                }
            )
            w.wake(
                users={it.event["state_key"] for it in items if it.event["type"] == "m.room.member"}
            )
            # State resolution may change anyone's membership, not only the event's target.
            w.wake(
                users={
                    sk
                    for it in items
                    for etype, sk, _, _ in it.current_state_delta or ()
                    if etype == "m.room.member"
                }
            )
        outbox.events_committed(items, destinations)
        self.hs.appservices.events_committed(appservices)
        if expiries:
            self.hs.housekeeping.self_destruct.schedule(min(ts for _, ts in expiries))
        for it in items:
            if it.redacts is not None:
                self.store.cache.invalidate(it.redacts[0])
            if it.federated:
                # It may be cached as an outlier (status, no ordering) from before.
                self.store.cache.invalidate(it.event_id)
        events_persisted.inc(len(items))
        persist_batch_size.observe(len(items))
        persist_latency.observe(time.monotonic() - started)


def _next_group(
    room_id: str, prev: StateGroupRef | None, prev_state: StateMap, key: StateKey, event_id: str
) -> StateGroupRef:
    """The group after a state event: a delta on `prev` (whose full state is `prev_state`),
    or a full snapshot when there is no prev or the chain is long enough."""
    chain = (prev.chain_length + 1) if prev is not None else 0
    ref = StateGroupRef(room_id, prev=prev, delta={key: event_id}, chain_length=chain)
    if prev is None or chain >= MAX_STATE_CHAIN:
        ref.full = dict(prev_state)
        ref.full[key] = event_id
        ref.chain_length = 0
    return ref


def _unstored_groups(batch: list[_Pending]) -> list[StateGroupRef]:
    """The state groups a persist of `batch` will store (and give ids to)."""
    refs = (ref for p in batch for ref in (p.item.state_before, p.item.state_after))
    return [ref for ref in refs if ref is not None and ref.id is None]


def _full_group(room_id: str, state: StateMap) -> StateGroupRef:
    ref = StateGroupRef(room_id, full=dict(state), chain_length=0)
    return ref


def _prev_event_ids(event: dict[str, Any]) -> list[str]:
    # Room versions 1 and 2 list [event_id, hashes] pairs.
    return [p[0] if isinstance(p, list) else p for p in event.get("prev_events", [])]
