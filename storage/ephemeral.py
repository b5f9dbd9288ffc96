"""Typing notifications and read receipts: the rooms' ephemeral data.

Typing keeps who types now (`typing`, with an expiry) and the typing stream position at
which each room's set last changed (`typing_changes`); receipts keep the latest receipt
per (room, type, user, thread), stamped with its receipts stream position.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.database import Database


class EphemeralStore:
    def __init__(self, db: Database):
        self.db = db

    # -- typing --------------------------------------------------------------------------

    async def set_typing(
        self, conn, room_id: str, user_id: str, expires_ts: int | None, pos: int
    ) -> None:
        """The user types until `expires_ts`, or stopped (None); the room's set changed at `pos`."""
        if expires_ts is not None:
            await conn.execute(
                "INSERT INTO typing (room_id, user_id, expires_ts) VALUES ($1, $2, $3)"
                " ON CONFLICT (room_id, user_id) DO UPDATE SET expires_ts = EXCLUDED.expires_ts",
                room_id,
                user_id,
                expires_ts,
            )
        else:
            await conn.execute(
                "DELETE FROM typing WHERE room_id = $1 AND user_id = $2", room_id, user_id
            )
        await conn.execute(
            "INSERT INTO typing_changes (room_id, stream_pos) VALUES ($1, $2)"
            " ON CONFLICT (room_id) DO UPDATE SET stream_pos = EXCLUDED.stream_pos",
            room_id,
            pos,
        )

    async def typing_expiry(self, room_id: str, user_id: str) -> int | None:
        return await self.db.fetchval(
            "SELECT expires_ts FROM typing WHERE room_id = $1 AND user_id = $2", room_id, user_id
        )

    async def typing_changes(
        self,
        room_ids: Sequence[str],
        since: int | None,
        upto: int,
        now_ms: int,
        whole: Sequence[str],
    ) -> dict[str, list[str]]:
        """room -> users typing now (sorted), for the rooms whose typing set changed in
        (since, upto], or at all up to `upto` when `since` is None or the room is in
        `whole`. One query for all the rooms."""
        rows = await self.db.fetch(
            "SELECT c.room_id, array_remove(array_agg(t.user_id ORDER BY t.user_id), NULL)"
            " AS users FROM typing_changes c"
            " LEFT JOIN typing t ON t.room_id = c.room_id AND t.expires_ts > $4"
            " WHERE c.room_id = ANY($1) AND ($2::bigint IS NULL OR c.stream_pos > $2"
            "   OR c.room_id = ANY($5)) AND c.stream_pos <= $3"
            " GROUP BY c.room_id",
            list(room_ids),
            since,
            upto,
            now_ms,
            list(whole),
        )
        return {r["room_id"]: list(r["users"]) for r in rows}

    # -- receipts ------------------------------------------------------------------------

    async def put_receipt(
        self,
        conn,
        room_id: str,
        receipt_type: str,
        user_id: str,
        thread_id: str,
        event_id: str,
        ts: int,
        pos: int,
    ) -> bool:
        """Stores a receipt unless the user's receipt of that type (and thread) is already
        at this event or a later one (as Synapse: receipts only move forwards; an event we
        do not hold, a remote receipt's, counts as later). Returns whether it stored it."""
        stored = await conn.fetchval(
            "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (room_id, receipt_type, user_id, thread_id)"
            " DO UPDATE SET event_id = EXCLUDED.event_id, ts = EXCLUDED.ts,"
            " stream_pos = EXCLUDED.stream_pos"
            " WHERE COALESCE((SELECT stream_ordering FROM events WHERE event_id = EXCLUDED.event_id),"
            "   9223372036854775807)"
            " > COALESCE((SELECT stream_ordering FROM events WHERE event_id = receipts.event_id),"
            "   -1)"
            " RETURNING 1",
            room_id,
            receipt_type,
            user_id,
            thread_id,
            event_id,
            ts,
            pos,
        )
        return stored is not None

    async def receipt_changes(
        self,
        room_ids: Sequence[str],
        since: int | None,
        upto: int,
        viewer: str,
        whole: Sequence[str],
    ) -> list:
        """Receipts `viewer` may see (private ones only their own) in (since, upto], or all
        up to `upto` when `since` is None or the room is in `whole`. One query."""
        return await self.db.fetch(
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"
            " WHERE room_id = ANY($1) AND stream_pos <= $3"
            " AND ($2::bigint IS NULL OR stream_pos > $2 OR room_id = ANY($5))"
            " AND (receipt_type <> 'm.read.private' OR user_id = $4)",
            list(room_ids),
            since,
            upto,
            viewer,
            list(whole),
        )

    async def unread_event_ids(
        self,
        room_ids: Sequence[str],
        user_id: str,
        joined_at: Sequence[int],
        limit: int,
        upto: int,
    ) -> list[tuple[str, str, str | None]]:
        """(room, event id, thread root or None for the main timeline) of the newest `limit`
        unread events per room from others after `joined_at` (per room) up to stream
        position `upto`, membership changes left out, oldest first. An event is read
        at or below the user's unthreaded read receipt (public or private), or its thread's
        receipt ('main' for events in no thread; spec: "Threaded read receipts"). One query."""
        read_at = (
            "SELECT max(re.stream_ordering) FROM receipts rc"
            " JOIN events re ON re.event_id = rc.event_id WHERE rc.room_id = r.room_id"
            " AND rc.user_id = $2 AND rc.receipt_type IN ('m.read', 'm.read.private')"
            " AND rc.thread_id = "
        )
        # Per room once: the unthreaded and 'main' receipts, and whether it has threads at
        # all (without, no event needs its thread looked up).
        rows = await self.db.fetch(
            "SELECT r.room_id, e.event_id, e.thread_id"
            " FROM unnest($1::text[], $3::bigint[]) AS r(room_id, joined_at)"
            " CROSS JOIN LATERAL (SELECT"
            f"  GREATEST(r.joined_at, COALESCE(({read_at}''), 0)) AS floor,"
            f"  COALESCE(({read_at}'main'), 0) AS main_read,"
            "  EXISTS (SELECT 1 FROM threads th WHERE th.room_id = r.room_id) AS has_threads) k"
            " CROSS JOIN LATERAL (SELECT ev.event_id, ev.stream_ordering, th.thread_id"
            "   FROM events ev"
            "   LEFT JOIN LATERAL (SELECT x.relates_to_id AS thread_id FROM event_relations x"
            "     WHERE k.has_threads AND x.event_id = ev.event_id AND x.rel_type = 'm.thread')"
            "   th ON TRUE"
            # Membership changes count for no one but their target, who is past them
            # (joined_at); the partial index events_room_stream_not_member skips them.
            "   WHERE ev.room_id = r.room_id AND ev.type <> 'm.room.member'"
            "   AND ev.sender <> $2 AND ev.stream_ordering > k.floor AND ev.stream_ordering <= $5"
            "   AND ev.stream_ordering > CASE WHEN th.thread_id IS NULL THEN k.main_read"
            f"    ELSE COALESCE(({read_at}th.thread_id), 0) END"
            "   ORDER BY ev.stream_ordering DESC LIMIT $4) e"
            " ORDER BY e.stream_ordering",
            list(room_ids),
            user_id,
            list(joined_at),
            limit,
            upto,
        )
        return [(r["room_id"], r["event_id"], r["thread_id"]) for r in rows]

    async def events_for_unread_between(
        self, rooms_after: Sequence[tuple[str, int]], upto: int, limit: int
    ) -> list[tuple[str, str, str, str, str | None]]:
        """(room, event id, type, sender, thread root or None) of the newest `limit` events per
        room after its position and up to `upto`, membership changes left out, oldest
        first: what unread_event_ids would add for every user whose receipts did not move,
        but for their own events."""
        rows = await self.db.fetch(
            "SELECT r.room_id, e.event_id, e.type, e.sender, th.thread_id"
            " FROM unnest($1::text[], $2::bigint[]) AS r(room_id, after)"
            " CROSS JOIN LATERAL (SELECT ev.event_id, ev.type, ev.sender, ev.stream_ordering"
            "   FROM events ev WHERE ev.room_id = r.room_id AND ev.type <> 'm.room.member'"
            "   AND ev.stream_ordering > r.after AND ev.stream_ordering <= $3"
            "   ORDER BY ev.stream_ordering DESC LIMIT $4) e"
            " LEFT JOIN LATERAL (SELECT x.relates_to_id AS thread_id FROM event_relations x"
            "   WHERE x.event_id = e.event_id AND x.rel_type = 'm.thread') th ON TRUE"
            " ORDER BY e.stream_ordering",
            [room for room, _ in rooms_after],
            [after for _, after in rooms_after],
            upto,
            limit,
        )
        return [(r["room_id"], r["event_id"], r["type"], r["sender"], r["thread_id"]) for r in rows]

    async def rooms_read_by(
        self, user_id: str, room_ids: Sequence[str], after: int, upto: int
    ) -> list[str]:
        """Those of the rooms where the user's own read receipt (public or private) moved
        in (after, upto]: their unread counts changed."""
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id FROM receipts WHERE room_id = ANY($1::text[])"
            " AND user_id = $2 AND receipt_type IN ('m.read', 'm.read.private')"
            " AND stream_pos > $3 AND stream_pos <= $4",
            list(room_ids),
            user_id,
            after,
            upto,
        )
        return [r["room_id"] for r in rows]
