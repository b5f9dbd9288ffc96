"""Device-list changes on the device_lists stream, and who shares a room with whom."""

from __future__ import annotations

from collections.abc import Iterable

from storage.database import Database

# Members whose device lists a user tracks: joined or invited (an inviter encrypts for
# invitees once they join; Synapse tracks both).
_SHARING = ("join", "invite")


class DeviceListStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_changes(self, conn, positions: range, user_ids: list[str]) -> None:
        await conn.executemany(
            "INSERT INTO device_list_changes (pos, user_id) VALUES ($1, $2)",
            list(zip(positions, user_ids, strict=True)),
        )

    async def changed_between(self, since: int, now: int) -> set[str] | None:
        """Users with a change in (since, now]; None when housekeeping has pruned changes
        after `since` (the caller must then count everyone as changed). One statement, so
        the rows and the floor come from one snapshot."""
        rows = await self.db.fetch(
            "SELECT DISTINCT user_id FROM device_list_changes WHERE pos > $1 AND pos <= $2"
            " UNION ALL SELECT NULL FROM pruned_streams"
            " WHERE stream = 'device_lists' AND pruned_to > $1",
            since,
            now,
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

    async def users_sharing_room_with(self, user_id: str) -> set[str]:
        """Every user joined to or invited into a room that `user_id` is joined to."""
        rows = await self.db.fetch(
            "SELECT DISTINCT other.state_key FROM current_state mine"
            " JOIN current_state other ON other.room_id = mine.room_id"
            " WHERE mine.type = 'm.room.member' AND mine.state_key = $1"
            " AND mine.membership = 'join'"
            " AND other.type = 'm.room.member' AND other.membership = ANY($2::text[])",
            user_id,
            list(_SHARING),
        )
        return {r["state_key"] for r in rows}

    async def sharing_a_room(self, user_id: str, candidates: Iterable[str]) -> set[str]:
        """Those of `candidates` joined to or invited into a room `user_id` is joined to."""
        rows = await self.db.fetch(
            "SELECT DISTINCT other.state_key FROM current_state mine"
            " JOIN current_state other ON other.room_id = mine.room_id"
            " AND other.type = 'm.room.member' AND other.state_key = ANY($2::text[])"
            " AND other.membership = ANY($3::text[])"
            " WHERE mine.type = 'm.room.member' AND mine.state_key = $1"
            " AND mine.membership = 'join'",
            user_id,
            list(candidates),
            list(_SHARING),
        )
        return {r["state_key"] for r in rows}

    async def members_of(self, room_ids: Iterable[str]) -> set[str]:
        rows = await self.db.fetch(
            "SELECT DISTINCT state_key FROM current_state WHERE room_id = ANY($1::text[])"
            " AND type = 'm.room.member' AND membership = ANY($2::text[])",
            list(room_ids),
            list(_SHARING),
        )
        return {r["state_key"] for r in rows}

    async def membership_changes(
        self, room_ids: Iterable[str], since: int, now: int
    ) -> list[tuple[str, str]]:
        """(user_id, membership) of member events in `room_ids` in (since, now]."""
        rows = await self.db.fetch(
            "SELECT state_key, membership FROM events"
            " WHERE room_id = ANY($1::text[]) AND type = 'm.room.member'"
            " AND stream_ordering > $2 AND stream_ordering <= $3 ORDER BY stream_ordering",
            list(room_ids),
            since,
            now,
        )
        return [(r["state_key"], r["membership"]) for r in rows]
