"""Device-list changes on the device_lists stream (who shares a room: storage.membership)."""

from __future__ import annotations

from collections.abc import Iterable

from storage.database import Database


class DeviceListStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_changes(
        self, conn, positions: range, user_ids: list[str], viewer: str | None = None
    ) -> None:
        """One change per user; `viewer`: the only user who may hear of them."""
        await conn.executemany(
            "INSERT INTO device_list_changes (pos, user_id, viewer) VALUES ($1, $2, $3)",
            [(pos, user_id, viewer) for pos, user_id in zip(positions, user_ids, strict=True)],
        )

    async def changed_between(
        self, since: int, now: int, viewer: str | None = None
    ) -> set[str] | None:
        """Users with a change in (since, now] that `viewer` may hear of (None: only the
        changes everyone may); None when housekeeping has pruned changes after `since`
        (the caller must then count everyone as changed). One statement, so the rows and
        the floor come from one snapshot."""
        rows = await self.db.fetch(
            "SELECT DISTINCT user_id FROM device_list_changes WHERE pos > $1 AND pos <= $2"
            " AND (viewer IS NULL OR viewer = $3)"
            " UNION ALL SELECT NULL FROM pruned_streams"
            " WHERE stream = 'device_lists' AND pruned_to > $1",
            since,
            now,
            viewer,
        )
        users = {r["user_id"] for r in rows}
        return None if None in users else users

    async def changed_users_since(self, user_ids: Iterable[str], since: int) -> set[str]:
        rows = await self.db.fetch(
            "SELECT DISTINCT user_id FROM device_list_changes"
            " WHERE user_id = ANY($1::text[]) AND pos > $2",
            list(user_ids),
            since,
        )
        return {r["user_id"] for r in rows}
