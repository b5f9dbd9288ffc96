"""Room events and room state in PostgreSQL.

Writes come in batches (group commit): one transaction stores many events, their state
groups, the rooms' current state and forward extremities, and takes their stream positions.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from canonicaljson import encode_canonical_json

from storage.database import Database
from storage.relations import remove_relations, write_relations

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

# A state group stores its delta against prev_group; after this many links a full snapshot
# is written instead, so resolving a group never walks more than this many rows back.
MAX_STATE_CHAIN = 50


@dataclass(eq=False)
class StateGroupRef:
    """A state snapshot whose id is known only once the batch holding it is committed."""

    room_id: str
    id: int | None = None
    prev: StateGroupRef | None = None
    delta: StateMap = field(default_factory=dict)
    chain_length: int = 0
    # Set when this group is stored as a full snapshot rather than a delta.
    full: StateMap | None = None


@dataclass
class PersistItem:
    event: dict[str, Any]
    event_id: str
    # Explicit: a v12 create event carries no room_id, its id is derived from the event.
    room_id: str
    state_before: StateGroupRef | None
    state_after: StateGroupRef | None
    unsigned: dict[str, Any] | None = None
    txn_device_id: str | None = None
    txn_id: str | None = None
    # For a redaction: the target's id and its redacted JSON, written in the same batch.
    redacts: tuple[str, str] | None = None
    stream_ordering: int = 0
    # When the room's current state after this event is not just "this event applied" (a
    # federated event merging forks): every entry that changes, None as event id to remove
    # it, with the membership of member entries.
    current_state_delta: list[tuple[str, str, str | None, str | None]] | None = None
    # Received over federation rather than built here.
    federated: bool = False


@dataclass
class StoredEvent:
    event: dict[str, Any]
    event_id: str
    room_id: str
    stream_ordering: int
    unsigned: dict[str, Any] | None
    txn_device_id: str | None
    txn_id: str | None
    redacted_by: str | None
    state_group_before: int | None
    # The redaction event itself, for `unsigned.redacted_because`.
    redaction: StoredEvent | None = None
    # None for timeline events; 'outlier', 'rejected' or 'soft_failed' for federated
    # events kept out of the timeline (table event_outliers).
    status: str | None = None

    @property
    def type(self) -> str:
        return self.event["type"]

    @property
    def sender(self) -> str:
        return self.event["sender"]

    @property
    def state_key(self) -> str | None:
        return self.event.get("state_key")

    @property
    def content(self) -> dict[str, Any]:
        return self.event.get("content", {})


_EVENT_COLUMNS = (
    "e.event_id, e.room_id, e.stream_ordering, e.json, e.unsigned_json, e.txn_device_id,"
    " e.txn_id, e.state_group_before, r.redaction_id"
)
_EVENT_FROM = "events e LEFT JOIN redactions r ON r.redacts = e.event_id"
# Lookups by id also find events kept out of the timeline, in one round trip.
_EVENTS_BY_ID = (
    f"SELECT {_EVENT_COLUMNS}, NULL AS status FROM {_EVENT_FROM} WHERE e.event_id = ANY($1)"
    " UNION ALL"
    " SELECT o.event_id, o.room_id, 0, o.json, NULL, NULL, NULL, o.state_group_before, NULL,"
    " o.status FROM event_outliers o WHERE o.event_id = ANY($1)"
    " AND NOT EXISTS (SELECT 1 FROM events x WHERE x.event_id = o.event_id)"
)


def _row_to_event(row) -> StoredEvent:
    return StoredEvent(
        event=orjson.loads(row["json"]),
        event_id=row["event_id"],
        room_id=row["room_id"],
        stream_ordering=row["stream_ordering"],
        unsigned=orjson.loads(row["unsigned_json"]) if row["unsigned_json"] else None,
        txn_device_id=row["txn_device_id"],
        txn_id=row["txn_id"],
        redacted_by=row["redaction_id"],
        state_group_before=row["state_group_before"],
        status=row["status"],
    )


class EventCache:
    """A bounded LRU of parsed events: /sync and auth checks read the same events again."""

    def __init__(self, size: int = 50_000):
        self.size = size
        self._items: OrderedDict[str, StoredEvent] = OrderedDict()
        # Event ID -> the read of it under way: its batch's answer, or None when that read
        # failed (see EventStore.get_events).
        self.loading: dict[str, asyncio.Future[dict[str, StoredEvent] | None]] = {}

    def get(self, event_id: str) -> StoredEvent | None:
        item = self._items.get(event_id)
        if item is not None:
            self._items.move_to_end(event_id)
        return item

    def put(self, item: StoredEvent) -> None:
        self._items[item.event_id] = item
        self._items.move_to_end(item.event_id)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Everything (reads under way are not cached either)."""
        self._items.clear()
        self.loading.clear()

    def invalidate(self, event_id: str) -> None:
        self._items.pop(event_id, None)
        # A read under way may have read the event before the change: it is not cached,
        # and later readers read again.
        self.loading.pop(event_id, None)


class EventStore:
    def __init__(self, db: Database):
        self.db = db
        self.cache = EventCache()

    # ---- writing -------------------------------------------------------------------------

    async def persist_batch(self, conn, items: Sequence[PersistItem], first_pos: int) -> None:
        """Writes `items` in order inside the caller's transaction, at positions from first_pos."""
        for offset, item in enumerate(items):
            item.stream_ordering = first_pos + offset
        await write_state_groups(
            conn, [ref for it in items for ref in (it.state_before, it.state_after)]
        )
        federated = [it.event_id for it in items if it.federated]
        if federated:
            # An event first learnt as an outlier has now reached the timeline.
            await conn.execute("DELETE FROM event_outliers WHERE event_id = ANY($1)", federated)
        await self._insert_events(conn, items)
        await _write_relations(conn, items)
        await self._update_current_state(conn, items)
        await self._update_extremities(conn, items)
        txns = [
            (
                it.event["sender"],
                it.txn_device_id,
                it.txn_id,
                it.event_id,
                it.event["origin_server_ts"],
            )
            for it in items
            if it.txn_id is not None
        ]
        if txns:
            await conn.executemany(
                "INSERT INTO event_txns (user_id, device_id, txn_id, event_id, created_ts)"
                " VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING",
                txns,
            )
        redacted = [it.redacts[0] for it in items if it.redacts is not None]
        if redacted:
            # A redacted event's relationship is broken (spec: "Forming relationships").
            await remove_relations(conn, redacted)
        for it in items:
            if it.redacts is not None:
                target, pruned_json = it.redacts
                await conn.execute(
                    "INSERT INTO redactions (redacts, redaction_id) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING",
                    target,
                    it.event_id,
                )
                # The content is gone from disk, not only hidden: hashes and signatures
                # survive redaction, so the event stays verifiable.
                await conn.execute(
                    "UPDATE events SET json = $2 WHERE event_id = $1", target, pruned_json
                )

    async def _insert_events(self, conn, items: Sequence[PersistItem]) -> None:
        await conn.executemany(
            "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,"
            " membership, depth, origin_server_ts, state_group_before, state_group,"
            " txn_device_id, txn_id, unsigned_json, json)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
            [
                (
                    it.stream_ordering,
                    it.event_id,
                    it.room_id,
                    it.event["type"],
                    it.event.get("state_key"),
                    it.event["sender"],
                    it.event.get("content", {}).get("membership")
                    if it.event["type"] == "m.room.member"
                    else None,
                    it.event["depth"],
                    it.event["origin_server_ts"],
                    it.state_before.id if it.state_before else None,
                    it.state_after.id if it.state_after else None,
                    it.txn_device_id,
                    it.txn_id,
                    orjson.dumps(it.unsigned).decode() if it.unsigned else None,
                    _canonical(it.event),
                )
                for it in items
            ],
        )

    async def _update_current_state(self, conn, items: Sequence[PersistItem]) -> None:
        latest: dict[tuple[str, str, str], tuple[str | None, str | None]] = {}
        for it in items:
            if it.current_state_delta is not None:
                for etype, sk, event_id, membership in it.current_state_delta:
                    latest[(it.room_id, etype, sk)] = (event_id, membership)
                continue
            state_key = it.event.get("state_key")
            if state_key is not None:
                membership = (
                    it.event.get("content", {}).get("membership")
                    if it.event["type"] == "m.room.member"
                    else None
                )
                latest[(it.room_id, it.event["type"], state_key)] = (it.event_id, membership)
        removed = [key for key, (event_id, _) in latest.items() if event_id is None]
        if removed:
            await conn.executemany(
                "DELETE FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3",
                removed,
            )
        upserts = [(*key, eid, m) for key, (eid, m) in latest.items() if eid is not None]
        if not upserts:
            return
        await conn.executemany(
            "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
            " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (room_id, type, state_key)"
            " DO UPDATE SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership",
            upserts,
        )

    async def _update_extremities(self, conn, items: Sequence[PersistItem]) -> None:
        by_room: dict[str, list[PersistItem]] = {}
        for it in items:
            by_room.setdefault(it.room_id, []).append(it)
        for room_id, room_items in by_room.items():
            referenced = {p for it in room_items for p in _prev_ids(it.event)}
            await conn.execute(
                "DELETE FROM room_forward_extremities WHERE room_id = $1 AND event_id = ANY($2)",
                room_id,
                list(referenced),
            )
            heads = [it.event_id for it in room_items if it.event_id not in referenced]
            await conn.executemany(
                "INSERT INTO room_forward_extremities (room_id, event_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING",
                [(room_id, h) for h in heads],
            )

    async def persist_out_of_timeline(
        self,
        room_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        status: str,
        *,
        reason: str | None = None,
        state_before: StateGroupRef | None = None,
        now_ms: int = 0,
    ) -> None:
        """Stores federated events outside the timeline (see table event_outliers). An event
        already stored, in or out of the timeline, is left as it is."""
        async with self.db.transaction() as conn:
            await write_state_groups(conn, [state_before])
            await conn.executemany(
                "INSERT INTO event_outliers (event_id, room_id, status, reason,"
                " state_group_before, received_ts, json)"
                " SELECT $1, $2, $3, $4, $5, $6, $7"
                " WHERE NOT EXISTS (SELECT 1 FROM events WHERE event_id = $1)"
                " ON CONFLICT (event_id) DO NOTHING",
                [
                    (
                        event_id,
                        room_id,
                        status,
                        reason,
                        state_before.id if state_before else None,
                        now_ms,
                        _canonical(event),
                    )
                    for event_id, event in events
                ],
            )
        for event_id, _ in events:
            self.cache.invalidate(event_id)

    async def persist_backfilled(self, items: Sequence[PersistItem]) -> None:
        """Stores history older than the room's timeline at orderings below zero, oldest
        last: no stream position moves, current state and extremities stay as they are."""
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT nextval('backfill_ordering') AS pos FROM generate_series(1, $1)",
                len(items),
            )
            await write_state_groups(
                conn, [ref for it in items for ref in (it.state_before, it.state_after)]
            )
            await conn.execute(
                "DELETE FROM event_outliers WHERE event_id = ANY($1)",
                [it.event_id for it in items],
            )
            for it, row in zip(items, rows, strict=True):
                it.stream_ordering = row["pos"]
            await self._insert_events(conn, items)
            await _write_relations(conn, items)
        for it in items:
            self.cache.invalidate(it.event_id)

    # ---- reading events ------------------------------------------------------------------

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        """The events found, from the cache or the database. Readers of an event another
        reader is reading wait for that read: a message committed by another process
        wakes every member's /sync at once, and each asks for it."""
        found: dict[str, StoredEvent] = {}
        missing: list[str] = []
        pending: list[tuple[str, asyncio.Future[dict[str, StoredEvent] | None]]] = []
        for eid in event_ids:
            cached = self.cache.get(eid)
            if cached is not None:
                found[eid] = cached
            elif (under_way := self.cache.loading.get(eid)) is not None:
                pending.append((eid, under_way))
            else:
                missing.append(eid)
        if missing:
            found.update(await self._load(missing))
        failed: list[str] = []
        for eid, under_way in pending:
            # Shielded: a waiter's cancellation must not cancel the others' answer.
            batch = await asyncio.shield(under_way)
            if batch is None:
                failed.append(eid)
            elif eid in batch:
                found[eid] = batch[eid]
        if failed:
            found.update(await self._read(failed))
        return found

    async def _load(self, event_ids: list[str]) -> dict[str, StoredEvent]:
        """Reads the events, as the read under way that other readers of them wait for."""
        under_way: asyncio.Future[dict[str, StoredEvent] | None]
        under_way = asyncio.get_running_loop().create_future()
        loading = self.cache.loading
        for eid in event_ids:
            loading[eid] = under_way
        loaded: dict[str, StoredEvent] | None = None
        try:
            loaded = await self._read(event_ids, under_way)
            return loaded
        finally:
            for eid in event_ids:
                if loading.get(eid) is under_way:
                    del loading[eid]
            under_way.set_result(loaded)

    async def _read(
        self, event_ids: list[str], under_way: asyncio.Future | None = None
    ) -> dict[str, StoredEvent]:
        """Reads the events from the database, with their redactions (from the cache or
        read here too: never waiting for other reads, one of which may wait for this
        one). Cached unless invalidated while read."""
        rows = await self.db.fetch(_EVENTS_BY_ID, event_ids)
        loaded = [_row_to_event(row) for row in rows]
        redaction_ids = [e.redacted_by for e in loaded if e.redacted_by]
        redactions: dict[str, StoredEvent] = {}
        if redaction_ids:
            unread = []
            for rid in redaction_ids:
                cached = self.cache.get(rid)
                if cached is not None:
                    redactions[rid] = cached
                else:
                    unread.append(rid)
            if unread:
                redactions.update(await self._read(unread))
        found: dict[str, StoredEvent] = {}
        for item in loaded:
            if item.redacted_by:
                item.redaction = redactions.get(item.redacted_by)
            if under_way is None or self.cache.loading.get(item.event_id) is under_way:
                self.cache.put(item)
            found[item.event_id] = item
        return found

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return (await self.get_events([event_id])).get(event_id)

    async def _events_by_query(self, query: str, *args) -> list[StoredEvent]:
        """Runs a query selecting event_ids (column `event_id`) and returns them in row order."""
        rows = await self.db.fetch(query, *args)
        ids = [r["event_id"] for r in rows]
        events = await self.get_events(ids)
        return [events[i] for i in ids if i in events]

    async def room_events(
        self,
        room_id: str,
        *,
        after: int | None = None,
        upto: int | None = None,
        limit: int = 10,
        backwards: bool = True,
    ) -> list[StoredEvent]:
        """Events with after < ordering <= upto, newest first when backwards."""
        order = "DESC" if backwards else "ASC"
        return await self._events_by_query(
            "SELECT event_id FROM events WHERE room_id = $1"
            " AND ($2::bigint IS NULL OR stream_ordering > $2)"
            " AND ($3::bigint IS NULL OR stream_ordering <= $3)"
            f" ORDER BY stream_ordering {order} LIMIT $4",
            room_id,
            after,
            upto,
            limit,
        )

    async def recent_events_for_rooms(
        self, room_ids: Sequence[str], after: int | None, upto: int, limit: int
    ) -> dict[str, list[StoredEvent]]:
        """Up to `limit` newest events per room in (after, upto], oldest first. One query."""
        rows = await self.db.fetch(
            "SELECT e.room_id, e.event_id FROM unnest($1::text[]) AS r(room_id)"
            " CROSS JOIN LATERAL (SELECT room_id, event_id, stream_ordering FROM events"
            "   WHERE room_id = r.room_id AND stream_ordering <= $3"
            "     AND ($2::bigint IS NULL OR stream_ordering > $2)"
            "   ORDER BY stream_ordering DESC LIMIT $4) e",
            list(room_ids),
            after,
            upto,
            limit,
        )
        events = await self.get_events([r["event_id"] for r in rows])
        result: dict[str, list[StoredEvent]] = {}
        for row in rows:
            ev = events.get(row["event_id"])
            if ev is not None:
                result.setdefault(row["room_id"], []).append(ev)
        for evs in result.values():
            evs.sort(key=lambda e: e.stream_ordering)
        return result

    async def last_state_groups_before(
        self, room_ids: Sequence[str], upto: int
    ) -> dict[str, int | None]:
        """The state group after the last event at or below `upto`, per room. One query."""
        rows = await self.db.fetch(
            "SELECT r.room_id, e.state_group FROM unnest($1::text[]) AS r(room_id)"
            " CROSS JOIN LATERAL (SELECT COALESCE(state_group, state_group_before) AS state_group"
            "   FROM events WHERE room_id = r.room_id AND stream_ordering <= $2"
            "   ORDER BY stream_ordering DESC LIMIT 1) e",
            list(room_ids),
            upto,
        )
        return {r["room_id"]: r["state_group"] for r in rows}

    async def event_near_ts(self, room_id: str, ts: int, forwards: bool) -> tuple[str, int] | None:
        """(event ID, origin_server_ts) of the room's timeline event closest to `ts` at or
        after it (forwards) or at or before it; events kept out of the timeline are not."""
        op, order = (">=", "ASC") if forwards else ("<=", "DESC")
        row = await self.db.fetchrow(
            "SELECT e.event_id, e.origin_server_ts FROM events e"
            f" WHERE e.room_id = $1 AND e.origin_server_ts {op} $2"
            " AND NOT EXISTS (SELECT 1 FROM event_outliers o WHERE o.event_id = e.event_id)"
            f" ORDER BY e.origin_server_ts {order}, e.stream_ordering {order} LIMIT 1",
            room_id,
            ts,
        )
        return (row["event_id"], row["origin_server_ts"]) if row else None

    async def txn_event_id(self, user_id: str, device_id: str, txn_id: str) -> str | None:
        return await self.db.fetchval(
            "SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
            user_id,
            device_id,
            txn_id,
        )

    # ---- reading state -------------------------------------------------------------------

    async def current_state_ids(self, room_id: str) -> StateMap:
        rows = await self.db.fetch(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1", room_id
        )
        return {(r["type"], r["state_key"]): r["event_id"] for r in rows}

    async def state_groups(
        self,
        group_ids: Iterable[int | None],
        types: Sequence[tuple[str, str | None]] | None = None,
    ) -> dict[int, StateMap]:
        """Resolves state groups (delta chains) to full maps in one recursive query.

        `types` restricts the result to those (type, state_key) pairs; a state_key of None
        matches every state_key of that type.
        """
        groups = sorted(set(g for g in group_ids if g is not None))
        if not groups:
            return {}
        entries, args = "state_group_entries s ON s.state_group = c.gid", list[Any]([groups])
        if types is not None:
            exact = [(t, sk) for t, sk in types if sk is not None]
            wild = [t for t, sk in types if sk is None]
            # Per group, index lookups of the pairs asked for (and index ranges of the
            # types asked for whole): a lazy-loading /sync asks for a few members of a
            # room whose snapshot holds thousands, and a join with a filter read them all.
            entries = (
                "LATERAL (SELECT s.type, s.state_key, s.event_id"
                "  FROM unnest($2::text[], $3::text[]) AS w(type, state_key)"
                "  JOIN state_group_entries s ON s.state_group = c.gid"
                "   AND s.type = w.type AND s.state_key = w.state_key"
                "  UNION ALL SELECT s.type, s.state_key, s.event_id FROM state_group_entries s"
                "  WHERE s.state_group = c.gid AND s.type = ANY($4::text[])) s ON TRUE"
            )
            args += [[t for t, _ in exact], [sk for _, sk in exact], wild]
        rows = await self.db.fetch(
            "WITH RECURSIVE chain(root, gid, prev, depth) AS ("
            "  SELECT g.id, g.id, g.prev_group, 0 FROM state_groups g WHERE g.id = ANY($1)"
            "  UNION ALL"
            "  SELECT c.root, g.id, g.prev_group, c.depth + 1"
            "  FROM chain c JOIN state_groups g ON g.id = c.prev)"
            " SELECT c.root, c.depth, s.type, s.state_key, s.event_id"
            f" FROM chain c JOIN {entries}"
            " ORDER BY c.root, c.depth DESC",
            *args,
        )
        result: dict[int, StateMap] = {g: {} for g in groups}
        # Deepest (oldest) first, so newer deltas overwrite older entries.
        for r in rows:
            result[r["root"]][(r["type"], r["state_key"])] = r["event_id"]
        return result

    async def room_head(self, room_id: str):
        """What building the next event in a room needs: version, extremities, depth, state."""
        async with self.db.acquire() as conn:
            room = await conn.fetchrow("SELECT room_version FROM rooms WHERE room_id = $1", room_id)
            if room is None:
                return None
            extremities = [
                r["event_id"]
                for r in await conn.fetch(
                    "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", room_id
                )
            ]
            # The latest event's group is the room's current state (a federated event that
            # merged forks stores the resolved state there); depth continues from the
            # deepest forward extremity.
            last = await conn.fetchrow(
                "SELECT (SELECT max(depth) FROM events WHERE event_id = ANY($2)) AS depth,"
                " COALESCE(e.state_group, e.state_group_before) AS sg,"
                " g.chain_length FROM events e"
                " LEFT JOIN state_groups g ON g.id = COALESCE(e.state_group, e.state_group_before)"
                " WHERE e.room_id = $1 ORDER BY e.stream_ordering DESC LIMIT 1",
                room_id,
                extremities,
            )
            state_rows = await conn.fetch(
                "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1", room_id
            )
        return {
            "room_version": room["room_version"],
            "extremities": extremities,
            "depth": (last["depth"] or 0) if last else 0,
            "state_group": last["sg"] if last else None,
            "chain_length": last["chain_length"]
            if last and last["chain_length"] is not None
            else 0,
            "state": {(r["type"], r["state_key"]): r["event_id"] for r in state_rows},
        }

    async def clear_forward_extremities(self, room_id: str) -> None:
        await self.db.execute("DELETE FROM room_forward_extremities WHERE room_id = $1", room_id)

    async def room_exists(self, room_id: str) -> bool:
        return bool(await self.db.fetchval("SELECT 1 FROM rooms WHERE room_id = $1", room_id))

    async def room_versions(self, room_ids: Iterable[str]) -> dict[str, str]:
        """room -> room version identifier, for the rooms we know."""
        rows = await self.db.fetch(
            "SELECT room_id, room_version FROM rooms WHERE room_id = ANY($1::text[])",
            list(room_ids),
        )
        return {r["room_id"]: r["room_version"] for r in rows}

    async def state_contents(
        self, room_ids: Sequence[str], etype: str, state_key: str = ""
    ) -> dict[str, dict]:
        """room -> content of its current (etype, state_key) event, where it has one."""
        rows = await self.db.fetch(
            "SELECT c.room_id, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = ANY($1::text[]) AND c.type = $2 AND c.state_key = $3",
            list(room_ids),
            etype,
            state_key,
        )
        return {r["room_id"]: orjson.loads(r["json"]).get("content", {}) for r in rows}

    async def rooms_with_state(self, room_ids: Sequence[str], types: Sequence[str]) -> set[str]:
        """Those of the rooms whose current state has an event of one of `types` (state key '')."""
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id FROM current_state WHERE room_id = ANY($1::text[])"
            " AND type = ANY($2::text[]) AND state_key = ''",
            list(room_ids),
            list(types),
        )
        return {r["room_id"] for r in rows}

    async def create_room_row(self, room_id: str, room_version: str, creator: str, ts: int) -> None:
        await self.db.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1,$2,$3,$4)",
            room_id,
            room_version,
            creator,
            ts,
        )


async def write_state_groups(conn, refs: Iterable[StateGroupRef | None]) -> None:
    """Gives ids to the groups among `refs` not stored yet and stores them, in order (a
    group's prev comes before it)."""
    new_groups: list[StateGroupRef] = []
    for ref in refs:
        if ref is not None and ref.id is None and ref not in new_groups:
            new_groups.append(ref)
    if not new_groups:
        return
    ids = await conn.fetch(
        "SELECT nextval('state_group_ids') AS id FROM generate_series(1, $1)", len(new_groups)
    )
    for ref, row in zip(new_groups, ids, strict=True):
        ref.id = row["id"]
    await conn.executemany(
        "INSERT INTO state_groups (id, room_id, prev_group, chain_length) VALUES ($1,$2,$3,$4)",
        [
            (
                ref.id,
                ref.room_id,
                None if ref.full is not None else (ref.prev.id if ref.prev else None),
                ref.chain_length,
            )
            for ref in new_groups
        ],
    )
    entries: list[tuple[int | None, str, str, str]] = []
    for ref in new_groups:
        rows = ref.full if ref.full is not None else ref.delta
        entries.extend((ref.id, t, sk, eid) for (t, sk), eid in rows.items())
    await conn.executemany(
        "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
        " VALUES ($1,$2,$3,$4)",
        entries,
    )


async def _write_relations(conn, items: Sequence[PersistItem]) -> None:
    await write_relations(
        conn, ((it.event_id, it.room_id, it.stream_ordering, it.event) for it in items)
    )


def _prev_ids(event: dict[str, Any]) -> list[str]:
    prev = event.get("prev_events", [])
    # Room versions 1 and 2 list [event_id, hashes] pairs.
    return [p[0] if isinstance(p, list) else p for p in prev]


def _canonical(event: dict[str, Any]) -> str:

    return encode_canonical_json(event).decode()
