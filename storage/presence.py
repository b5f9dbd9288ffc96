"""Presence: one row per user, stamped with the presence stream position of its last change.

Who sees whose presence is decided by shared rooms: a user's presence goes to the users
who are joined to a room with them (and to themselves). A change wakes its user and the
rooms they are in, on the presence stream, not each co-member by name: in a room of
10,000 that list was read under the presence stream's lock for every change, and too
long to send to the other processes (so every long-poll of every process woke).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.membership import CO_MEMBERS_SQL as _CO_MEMBERS
from storage.membership import JOINED_TO_ROOMS_SQL as _JOINED_TO_ROOMS
from storage.membership import ROOMS_OF_USERS_SQL
from storage.streams import Streams


@dataclass
class PresenceRow:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    stream_pos: int
    displayname: str | None = None
    avatar_url: str | None = None


def _row(r) -> PresenceRow:
    keys = r.keys()
    return PresenceRow(
        r["user_id"],
        r["state"],
        r["status_msg"],
        r["last_active_ts"],
        r["stream_pos"],
        r["displayname"] if "displayname" in keys else None,
        r["avatar_url"] if "avatar_url" in keys else None,
    )


class PresenceStore:
    def __init__(self, db: Database, streams: Streams):
        self.db = db
        self.streams = streams

    async def get(self, user_id: str) -> PresenceRow | None:
        r = await self.db.fetchrow(
            "SELECT user_id, state, status_msg, last_active_ts, stream_pos"
            " FROM presence WHERE user_id = $1",
            user_id,
        )
        return None if r is None else _row(r)

    async def user_exists(self, user_id: str) -> bool:
        return bool(await self.db.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id))

    async def share_a_room(self, user_id: str, other: str) -> bool:
        return bool(
            await self.db.fetchval(
                f"SELECT 1 FROM ({_CO_MEMBERS}) co WHERE co.user_id = $2 LIMIT 1", user_id, other
            )
        )

    async def set(self, user_id: str, state: str, status_msg: str | None, now_ms: int) -> int:
        """Stores a change and wakes everyone who can see it; returns its stream position."""
        async with self.streams.write("presence") as w:
            await w.conn.execute(
                "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_pos)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET"
                " state = EXCLUDED.state, status_msg = EXCLUDED.status_msg,"
                " last_active_ts = EXCLUDED.last_active_ts, stream_pos = EXCLUDED.stream_pos",
                user_id,
                state,
                status_msg,
                now_ms,
                w.last,
            )
            await _wake_watchers(w, [user_id])
            return w.last

    async def touch(self, user_id: str, now_ms: int) -> None:
        """Records activity without a stream change: last_active_ago is computed on read."""
        await self.db.execute(
            "UPDATE presence SET last_active_ts = $2 WHERE user_id = $1", user_id, now_ms
        )

    async def time_out(self, idle_before: int, offline_before: int) -> list[str]:
        """Local users not offline whose last activity is before `offline_before` become
        offline; online ones active last before `idle_before` become unavailable. Each
        change takes a presence position and wakes the user and their co-members, like
        `set`. Returns the users changed."""
        timed_out = (
            "p.state <> 'offline' AND (p.last_active_ts < $2"
            " OR (p.state = 'online' AND p.last_active_ts < $1))"
        )
        candidates = await self.db.fetch(
            f"SELECT p.user_id FROM presence p JOIN users u ON u.user_id = p.user_id"
            f" WHERE {timed_out} ORDER BY p.user_id",
            idle_before,
            offline_before,
        )
        if not candidates:
            return []
        user_ids = [r["user_id"] for r in candidates]
        async with self.streams.write("presence", len(user_ids)) as w:
            # Conditions checked again: a user who synced since the SELECT stays as they are
            # (their position is left unused; readers take ranges, gaps are harmless).
            rows = await w.conn.fetch(
                "UPDATE presence p SET stream_pos = t.pos, state = CASE"
                " WHEN p.last_active_ts < $2 THEN 'offline' ELSE 'unavailable' END"
                " FROM unnest($3::text[], $4::bigint[]) AS t(user_id, pos)"
                f" WHERE p.user_id = t.user_id AND {timed_out} RETURNING p.user_id",
                idle_before,
                offline_before,
                user_ids,
                list(w.positions),
            )
            changed = [r["user_id"] for r in rows]
            if changed:
                await _wake_watchers(w, changed)
        return changed

    async def of_members(
        self, room_ids: list[str], user_ids: list[str], until: int
    ) -> list[tuple[str, PresenceRow | None]]:
        """Presence (as of `until`) of the joined members of the rooms and of `user_ids`:
        None for a user with none stored (never set: offline); users whose presence
        changed after `until` are left out (the next sync reports them)."""
        rows = await self.db.fetch(
            "SELECT m.user_id, p.state, p.status_msg, p.last_active_ts, p.stream_pos,"
            " pr.displayname, pr.avatar_url"
            f" FROM ({_JOINED_TO_ROOMS} UNION SELECT unnest($3::text[])) m"
            " LEFT JOIN presence p ON p.user_id = m.user_id"
            " LEFT JOIN profiles pr ON pr.user_id = m.user_id"
            " WHERE p.user_id IS NULL OR p.stream_pos <= $2"
            " ORDER BY p.stream_pos NULLS FIRST, m.user_id",
            room_ids,
            until,
            user_ids,
        )
        return [(r["user_id"], None if r["state"] is None else _row(r)) for r in rows]

    async def changes_of_room_members(
        self, room_id: str, since: int, until: int
    ) -> list[PresenceRow]:
        """Presence of the room's joined members that changed in (since, until]: what a
        reader peeking into the room (deprecated /events with room_id) is told."""
        rows = await self.db.fetch(
            "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts, p.stream_pos,"
            " pr.displayname, pr.avatar_url"
            f" FROM presence p JOIN ({_JOINED_TO_ROOMS}) m ON m.user_id = p.user_id"
            " LEFT JOIN profiles pr ON pr.user_id = p.user_id"
            " WHERE p.stream_pos > $2 AND p.stream_pos <= $3 ORDER BY p.stream_pos",
            [room_id],
            since,
            until,
        )
        return [_row(r) for r in rows]

    async def changes_for(self, viewer: str, since: int, until: int) -> list[PresenceRow]:
        """Presence of the viewer's co-members that changed in (since, until]."""
        rows = await self.db.fetch(
            "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts, p.stream_pos,"
            " pr.displayname, pr.avatar_url"
            f" FROM presence p JOIN ({_CO_MEMBERS}) co ON co.user_id = p.user_id"
            " LEFT JOIN profiles pr ON pr.user_id = p.user_id"
            " WHERE p.stream_pos > $2 AND p.stream_pos <= $3 ORDER BY p.stream_pos",
            viewer,
            since,
            until,
        )
        return [_row(r) for r in rows]


async def _wake_watchers(w, user_ids: list[str]) -> None:
    """Wakes the users whose presence changed and every member of their rooms."""
    rooms = await w.conn.fetch(ROOMS_OF_USERS_SQL, user_ids)
    w.wake(users=user_ids, rooms=[r["room_id"] for r in rooms])
