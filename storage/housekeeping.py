"""The SQL of the scheduled tasks (homeserver/housekeeping): task locks and runs, pruning,
devices' last_seen, and the erasure of deactivated users' events.

Every pruning statement deletes only what no reader can need; the rules, and why each is
safe, are in the docstrings below and in homeserver/housekeeping/__init__.py.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from storage.database import Database
from storage.relations import remove_relations

# Advisory-lock keys are (class, task) pairs of int4: this class keeps them apart from the
# migrations' single-key lock and from anything else that takes advisory locks.
_LOCK_CLASS = 0x48534B50  # "HSKP"
# Tables of (user, device, txn_id) rows with a created_ts (HousekeepingStore.prune_txns).
_TXN_TABLES = frozenset({"to_device_txns", "event_txns"})


@dataclass
class ErasureRow:
    event_id: str
    stream_ordering: int
    room_version: str
    json: str
    unsigned_json: str | None


class HousekeepingStore:
    def __init__(self, db: Database):
        self.db = db

    # --- one process at a time -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def task_lock(self, task: str) -> AsyncIterator[bool]:
        """Holds the task's session advisory lock for the block, if no other session holds it;
        yields whether it got it. A process that dies releases it with its connection."""
        key = zlib.crc32(task.encode()) & 0x7FFFFFFF
        async with self.db.acquire() as conn:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _LOCK_CLASS, key)
            try:
                yield got
            finally:
                if got:
                    try:
                        await conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_CLASS, key)
                    except BaseException:
                        # The pool does not reset sessions: never hand back one still locked.
                        conn.terminate()
                        raise

    async def last_run(self, task: str) -> int | None:
        return await self.db.fetchval(
            "SELECT last_run_ts FROM housekeeping_runs WHERE task = $1", task
        )

    async def record_run(self, task: str, now_ms: int) -> None:
        await self.db.execute(
            "INSERT INTO housekeeping_runs (task, last_run_ts) VALUES ($1, $2)"
            " ON CONFLICT (task) DO UPDATE SET last_run_ts = EXCLUDED.last_run_ts",
            task,
            now_ms,
        )

    # --- pruning ---------------------------------------------------------------------------

    async def prune_txns(self, table: str, before_ms: int) -> int:
        """Forgets transaction IDs (`to_device_txns` of /sendToDevice, `event_txns` of
        PUT /send and /state) used before `before_ms`. They only make a retried request
        idempotent; a retry older than the window would be sent again."""
        if table not in _TXN_TABLES:  # a table name cannot be a query parameter
            raise ValueError(f"not a transaction ID table: {table}")
        status = await self.db.execute(f"DELETE FROM {table} WHERE created_ts < $1", before_ms)
        return _count(status)

    async def prune_push_notifications(self, before_ms: int, limit: int) -> int:
        """Deletes up to `limit` notifications made before `before_ms` (by the BRIN index
        on their time)."""
        status = await self.db.execute(
            "DELETE FROM push_notifications WHERE ctid = ANY(ARRAY("
            " SELECT ctid FROM push_notifications WHERE ts < $1 LIMIT $2))",
            before_ms,
            limit,
        )
        return _count(status)

    async def prune_device_list_changes(self, before_ms: int, below_pos: int) -> int:
        """Deletes device-list changes written before `before_ms` and at positions below
        `below_pos`, and raises the stream's floor to the highest position deleted, in the
        same transaction: a reader of (since, now] with since under the floor learns that it
        cannot list the changes (DeviceListStore.changed_between) instead of missing them."""
        async with self.db.transaction() as conn:
            floor = await conn.fetchval(
                "SELECT max(pos) FROM device_list_changes WHERE created_ts < $1 AND pos < $2",
                before_ms,
                below_pos,
            )
            if floor is None:
                return 0
            await conn.execute(
                "INSERT INTO pruned_streams (stream, pruned_to) VALUES ('device_lists', $1)"
                " ON CONFLICT (stream) DO UPDATE"
                " SET pruned_to = greatest(pruned_streams.pruned_to, EXCLUDED.pruned_to)",
                floor,
            )
            status = await conn.execute("DELETE FROM device_list_changes WHERE pos <= $1", floor)
        return _count(status)

    async def prune_rejected_events(self, before_ms: int, limit: int) -> int:
        """Deletes up to `limit` rejected federated events received before `before_ms` that
        nothing points at.

        A rejected event is never part of any room state and never a valid auth event (an
        event citing it as one is rejected too), so no state group, auth check or auth chain
        needs it. The checks below keep the few places that do name event IDs directly. If
        a remote server sends it again, it is checked again and rejected again: auth checks
        depend only on the event and its auth events, which are immutable.
        Outliers ('outlier': auth chains and state learnt from joins) and soft-failed events
        (which can still enter state through resolution, or be cited as auth or prev events
        by events we accepted) are never deleted here."""
        status = await self.db.execute(
            "DELETE FROM event_outliers WHERE event_id IN ("
            " SELECT o.event_id FROM event_outliers o"
            " WHERE o.status = 'rejected' AND o.received_ts < $1"
            " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = o.event_id)"
            " AND NOT EXISTS (SELECT 1 FROM room_forward_extremities x"
            "   WHERE x.room_id = o.room_id AND x.event_id = o.event_id)"
            " AND NOT EXISTS (SELECT 1 FROM current_state c"
            "   WHERE c.room_id = o.room_id AND c.event_id = o.event_id)"
            " AND NOT EXISTS (SELECT 1 FROM out_of_band_memberships m"
            "   WHERE m.event_id = o.event_id)"
            " AND NOT EXISTS (SELECT 1 FROM redactions r WHERE r.redacts = o.event_id)"
            " ORDER BY o.received_ts LIMIT $2)",
            before_ms,
            limit,
        )
        return _count(status)

    # --- devices' last_seen ----------------------------------------------------------------

    async def record_last_seen(self, seen: Sequence[tuple[str, str, int, str | None]]) -> None:
        """(user_id, device_id, ts, ip) per device, in one statement. Several processes
        flush independently: a row only moves forward in time."""
        if not seen:
            return
        await self.db.execute(
            "UPDATE devices d SET last_seen_ts = t.ts, last_seen_ip = t.ip"
            " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])"
            " AS t(user_id, device_id, ts, ip)"
            " WHERE d.user_id = t.user_id AND d.device_id = t.device_id"
            " AND (d.last_seen_ts IS NULL OR d.last_seen_ts < t.ts)",
            [s[0] for s in seen],
            [s[1] for s in seen],
            [s[2] for s in seen],
            [s[3] for s in seen],
        )

    # --- erasure of deactivated users' events ------------------------------------------------

    async def pending_erasures(self) -> list[str]:
        rows = await self.db.fetch("SELECT user_id FROM user_erasures ORDER BY requested_ts")
        return [r["user_id"] for r in rows]

    async def erasure_batch(self, user_id: str, limit: int) -> list[ErasureRow]:
        """The user's next `limit` erasable events after the erasure's cursor, oldest first:
        messages and other non-state events, and membership events (see erasure.py for why
        other state events are left alone)."""
        rows = await self.db.fetch(
            "SELECT e.event_id, e.stream_ordering, r.room_version, e.json, e.unsigned_json"
            " FROM user_erasures u"
            " JOIN events e ON e.sender = u.user_id AND e.stream_ordering > u.after_ordering"
            " JOIN rooms r ON r.room_id = e.room_id"
            " WHERE u.user_id = $1 AND (e.state_key IS NULL OR e.type = 'm.room.member')"
            " ORDER BY e.stream_ordering LIMIT $2",
            user_id,
            limit,
        )
        return [
            ErasureRow(
                r["event_id"],
                r["stream_ordering"],
                r["room_version"],
                r["json"],
                r["unsigned_json"],
            )
            for r in rows
        ]

    async def apply_erasure(
        self, user_id: str, rewrites: Sequence[tuple[str, str, str | None]], after_ordering: int
    ) -> None:
        """Stores the redacted JSON (and unsigned) of each (event_id, json, unsigned_json) and
        moves the cursor past them, in one transaction: a crash resumes where it stopped."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE events e SET json = t.json, unsigned_json = t.unsigned_json"
                " FROM unnest($1::text[], $2::text[], $3::text[]) AS t(event_id, json, unsigned_json)"
                " WHERE e.event_id = t.event_id",
                [r[0] for r in rewrites],
                [r[1] for r in rewrites],
                [r[2] for r in rewrites],
            )
            await conn.execute(
                "UPDATE user_erasures SET after_ordering = $2 WHERE user_id = $1",
                user_id,
                after_ordering,
            )

    async def finish_erasure(self, user_id: str) -> None:
        """Ends the erasure with the non-event data the spec names (account data) and the
        profile, which other users' clients and the user directory show."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM account_data WHERE user_id = $1", user_id)
            await conn.execute(
                "UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = $1",
                user_id,
            )
            await conn.execute("DELETE FROM user_erasures WHERE user_id = $1", user_id)


def _count(status: str) -> int:
    """The row count of an asyncpg status string such as 'DELETE 12'."""
    return int(status.rsplit(" ", 1)[-1])


# --- MSC2228 self-destructing events (homeserver/housekeeping/self_destruct.py) -------------


async def add_event_expiries(conn, expiries: Sequence[tuple[str, int]]) -> None:
    """Records (event_id, expiry_ts) in the caller's transaction (the event's commit)."""
    await conn.executemany(
        "INSERT INTO event_expiry (event_id, expiry_ts) VALUES ($1, $2)"
        " ON CONFLICT (event_id) DO NOTHING",
        list(expiries),
    )


class ExpiryStore:
    def __init__(self, db: Database):
        self.db = db

    async def due(self, now_ms: int, limit: int) -> list[ErasureRow]:
        """The stored events whose expiry has passed, soonest first (an expiry row whose
        event is not in the timeline is only deleted, by `expire`)."""
        rows = await self.db.fetch(
            "SELECT x.event_id, e.stream_ordering, r.room_version, e.json, e.unsigned_json"
            " FROM event_expiry x"
            " LEFT JOIN events e ON e.event_id = x.event_id"
            " LEFT JOIN rooms r ON r.room_id = e.room_id"
            " WHERE x.expiry_ts <= $1 ORDER BY x.expiry_ts LIMIT $2",
            now_ms,
            limit,
        )
        return [
            ErasureRow(
                r["event_id"],
                r["stream_ordering"] or 0,
                r["room_version"] or "",
                r["json"] or "",
                r["unsigned_json"],
            )
            for r in rows
        ]

    async def expire(
        self, rewrites: Sequence[tuple[str, str, str | None]], gone: Sequence[str]
    ) -> None:
        """Stores the redacted JSON (and unsigned) of each (event_id, json, unsigned_json),
        drops what the content fed (search index, relations) and the expiry rows of those
        and of `gone` (events no longer stored), in one transaction."""
        ids = [r[0] for r in rewrites]
        async with self.db.transaction() as conn:
            if rewrites:
                await conn.execute(
                    "UPDATE events e SET json = t.json, unsigned_json = t.unsigned_json"
                    " FROM unnest($1::text[], $2::text[], $3::text[])"
                    " AS t(event_id, json, unsigned_json)"
                    " WHERE e.event_id = t.event_id",
                    ids,
                    [r[1] for r in rewrites],
                    [r[2] for r in rewrites],
                )
                await conn.execute("DELETE FROM event_search WHERE event_id = ANY($1)", ids)
                await remove_relations(conn, ids)
            await conn.execute("DELETE FROM event_expiry WHERE event_id = ANY($1)", [*ids, *gone])

    async def next_expiry(self) -> int | None:
        return await self.db.fetchval("SELECT min(expiry_ts) FROM event_expiry")
