"""Notifications kept per local user (GET /notifications, pusher delivery) and the push
worker's position and lease."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from storage.database import Database


class PushNotificationStore:
    def __init__(self, db: Database):
        self.db = db

    # -- the worker's position and lease ----------------------------------------------------

    async def claim(self, owner: str, now_ms: int, lease_ms: int, start_at: int) -> int | None:
        """The position to evaluate from when `owner` now holds the lease (a first claim
        starts at `start_at`: events from before the worker existed notify nobody), else
        None."""
        return await self.db.fetchval(
            "INSERT INTO push_worker_state (id, position, lease_owner, lease_until_ts)"
            " VALUES (1, $4::bigint, $1, $2::bigint + $3::bigint) ON CONFLICT (id) DO UPDATE"
            " SET lease_owner = EXCLUDED.lease_owner, lease_until_ts = EXCLUDED.lease_until_ts"
            " WHERE push_worker_state.lease_owner IS NULL"
            " OR push_worker_state.lease_owner = EXCLUDED.lease_owner"
            " OR push_worker_state.lease_until_ts < $2::bigint"
            " RETURNING position",
            owner,
            now_ms,
            lease_ms,
            start_at,
        )

    async def advance(self, owner: str, position: int) -> bool:
        """Moves the position on while `owner` holds the lease."""
        done = await self.db.execute(
            "UPDATE push_worker_state SET position = $2 WHERE id = 1 AND lease_owner = $1",
            owner,
            position,
        )
        return done == "UPDATE 1"

    async def release(self, owner: str) -> None:
        await self.db.execute(
            "UPDATE push_worker_state SET lease_owner = NULL WHERE id = 1 AND lease_owner = $1",
            owner,
        )

    # -- notifications ----------------------------------------------------------------------

    async def add(self, rows: Sequence[tuple[str, int, str, str, list, bool, int]]) -> None:
        """(user, stream ordering, event, room, actions, highlight, ts) rows."""
        await self.db.execute(
            "INSERT INTO push_notifications"
            " (user_id, stream_ordering, event_id, room_id, actions, highlight, ts)"
            " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[],"
            " $5::text[], $6::boolean[], $7::bigint[]) ON CONFLICT DO NOTHING",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [orjson.dumps(r[4]).decode() for r in rows],
            [r[5] for r in rows],
            [r[6] for r in rows],
        )

    async def page(
        self, user_id: str, before: int | None, limit: int, only_highlight: bool
    ) -> list[dict]:
        """The user's newest notifications below `before`, each with whether the user's read
        receipt (public or private) in the room is at or past it."""
        rows = await self.db.fetch(
            "SELECT n.stream_ordering, n.event_id, n.room_id, n.actions, n.ts,"
            " n.stream_ordering <= COALESCE((SELECT max(e.stream_ordering) FROM receipts rc"
            "   JOIN events e ON e.event_id = rc.event_id WHERE rc.room_id = n.room_id"
            "   AND rc.user_id = n.user_id AND rc.receipt_type IN ('m.read', 'm.read.private')"
            "   ), 0) AS read"
            " FROM push_notifications n WHERE n.user_id = $1"
            " AND ($2::bigint IS NULL OR n.stream_ordering < $2) AND (NOT $4 OR n.highlight)"
            " ORDER BY n.stream_ordering DESC LIMIT $3",
            user_id,
            before,
            limit,
            only_highlight,
        )
        return [
            {
                "stream_ordering": r["stream_ordering"],
                "event_id": r["event_id"],
                "room_id": r["room_id"],
                "actions": orjson.loads(r["actions"]),
                "ts": r["ts"],
                "read": r["read"],
            }
            for r in rows
        ]

    async def unread_count(self, user_id: str) -> int:
        """Notifications after the user's read receipt in their room (the badge count)."""
        return await self.db.fetchval(
            "SELECT count(*) FROM push_notifications n WHERE n.user_id = $1"
            " AND n.stream_ordering > COALESCE((SELECT max(e.stream_ordering) FROM receipts rc"
            "   JOIN events e ON e.event_id = rc.event_id WHERE rc.room_id = n.room_id"
            "   AND rc.user_id = n.user_id AND rc.receipt_type IN ('m.read', 'm.read.private')"
            "   ), 0)",
            user_id,
        )

    async def http_pushers(self, user_ids: Sequence[str]) -> list[dict]:
        rows = await self.db.fetch(
            "SELECT user_id, app_id, pushkey, created_ts, data FROM pushers"
            " WHERE kind = 'http' AND user_id = ANY($1::text[])",
            list(user_ids),
        )
        return [
            {
                "user_id": r["user_id"],
                "app_id": r["app_id"],
                "pushkey": r["pushkey"],
                "pushkey_ts": r["created_ts"],
                "data": orjson.loads(r["data"]),
            }
            for r in rows
        ]

    async def readers_with_pushers(self, after: int, upto: int) -> list[str]:
        """Users with an http pusher whose read receipt moved in (after, upto]."""
        rows = await self.db.fetch(
            "SELECT DISTINCT r.user_id FROM receipts r"
            " WHERE r.stream_pos > $1 AND r.stream_pos <= $2"
            " AND r.receipt_type IN ('m.read', 'm.read.private')"
            " AND EXISTS (SELECT 1 FROM pushers p WHERE p.user_id = r.user_id"
            " AND p.kind = 'http')",
            after,
            upto,
        )
        return [r["user_id"] for r in rows]

    async def delete_rejected(self, app_id: str, pushkey: str, user_id: str) -> None:
        await self.db.execute(
            "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id = $3",
            app_id,
            pushkey,
            user_id,
        )

    async def new_events(self, after: int, upto: int, limit: int) -> list[tuple[int, str, str]]:
        """(stream ordering, event id, room) of timeline events in (after, upto], and of
        invites of local users received for rooms this server is not in (out-of-band; the
        invite is an outlier at its own events-stream position)."""
        rows = await self.db.fetch(
            "SELECT stream_ordering, event_id, room_id FROM events"
            " WHERE stream_ordering > $1 AND stream_ordering <= $2"
            " UNION ALL SELECT stream_ordering, event_id, room_id FROM out_of_band_memberships"
            " WHERE membership = 'invite' AND stream_ordering > $1 AND stream_ordering <= $2"
            " ORDER BY stream_ordering LIMIT $3",
            after,
            upto,
            limit,
        )
        return [(r["stream_ordering"], r["event_id"], r["room_id"]) for r in rows]
