"""Room aliases, the public room list and the user directory.

Public room summaries are built with a fixed number of queries whatever the number of
rooms: one for the room list with member counts, one for the summary state of all of them.
"""

from __future__ import annotations

import time

import orjson

from storage.database import Database
from storage.membership import JOINED_MEMBERS_SQL

# The state events a public room summary is made of (all with state_key "").
SUMMARY_TYPES = [
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.create",
    "m.room.power_levels",
]


class AliasExists(Exception):
    pass


class DirectoryStore:
    def __init__(self, db: Database):
        self.db = db

    # -- aliases ---------------------------------------------------------------------------

    async def alias(self, alias: str):
        return await self.db.fetchrow(
            "SELECT room_id, creator FROM room_aliases WHERE alias = $1", alias
        )

    async def create_alias(self, alias: str, room_id: str, creator: str) -> None:
        status = await self.db.execute(
            "INSERT INTO room_aliases (alias, room_id, creator, created_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (alias) DO NOTHING",
            alias,
            room_id,
            creator,
            int(time.time() * 1000),
        )
        if status == "INSERT 0 0":
            raise AliasExists(alias)

    async def delete_alias(self, alias: str) -> bool:
        return await self.db.execute("DELETE FROM room_aliases WHERE alias = $1", alias) != (
            "DELETE 0"
        )

    async def room_aliases(self, room_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY created_ts, alias", room_id
        )
        return [r["alias"] for r in rows]

    # -- rooms -----------------------------------------------------------------------------

    async def room(self, room_id: str):
        return await self.db.fetchrow(
            "SELECT room_id, creator, is_public FROM rooms WHERE room_id = $1", room_id
        )

    async def set_public(self, room_id: str, public: bool) -> None:
        await self.db.execute("UPDATE rooms SET is_public = $2 WHERE room_id = $1", room_id, public)

    async def summary_state(self, room_ids: list[str]) -> dict[str, dict[str, dict]]:
        """room_id -> event type -> content, for SUMMARY_TYPES, in one query."""
        rows = await self.db.fetch(
            "SELECT cs.room_id, cs.type, e.json FROM current_state cs"
            " JOIN events e ON e.event_id = cs.event_id"
            " WHERE cs.room_id = ANY($1::text[]) AND cs.state_key = ''"
            " AND cs.type = ANY($2::text[])",
            room_ids,
            SUMMARY_TYPES,
        )
        state: dict[str, dict[str, dict]] = {room_id: {} for room_id in room_ids}
        for r in rows:
            content = orjson.loads(r["json"]).get("content")
            state[r["room_id"]][r["type"]] = content if isinstance(content, dict) else {}
        return state

    async def public_rooms(self) -> list[tuple[str, int]]:
        """(room_id, joined member count) of every published room, most joined first."""
        rows = await self.db.fetch(
            "SELECT r.room_id, count(m.user_id) AS joined FROM rooms r"
            f" LEFT JOIN ({JOINED_MEMBERS_SQL}) m ON m.room_id = r.room_id"
            " WHERE r.is_public GROUP BY r.room_id ORDER BY joined DESC, r.room_id"
        )
        return [(r["room_id"], r["joined"]) for r in rows]

    # -- users -----------------------------------------------------------------------------

    async def search_users(self, searcher: str, term: str, limit: int) -> list:
        """Users sharing a room with `searcher` or joined to a public room, matching `term`
        in their user id or display name. Returns up to limit + 1 rows (to detect more)."""
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return await self.db.fetch(
            "WITH joined AS NOT MATERIALIZED ("  # inlined: each branch uses the indexes
            f"  {JOINED_MEMBERS_SQL}"
            "), visible AS ("
            "  SELECT other.user_id FROM joined mine"
            "  JOIN joined other ON other.room_id = mine.room_id"
            "  WHERE mine.user_id = $1"
            "  UNION"
            "  SELECT m.user_id FROM joined m"
            "  JOIN current_state jr ON jr.room_id = m.room_id"
            "   AND jr.type = 'm.room.join_rules' AND jr.state_key = ''"
            "  JOIN events e ON e.event_id = jr.event_id"
            # Canonical JSON has no whitespace, and a cast to jsonb would choke on \u0000.
            '  WHERE e.json LIKE \'%"join_rule":"public"%\''
            "  UNION"
            "  SELECT m.user_id FROM joined m JOIN rooms r ON r.room_id = m.room_id"
            "  WHERE r.is_public"
            ")"
            " SELECT v.user_id, p.displayname, p.avatar_url FROM visible v"
            " LEFT JOIN profiles p ON p.user_id = v.user_id"
            " LEFT JOIN users u ON u.user_id = v.user_id"
            " WHERE NOT coalesce(u.deactivated, false)"
            " AND (v.user_id ILIKE $2 OR p.displayname ILIKE $2)"
            " ORDER BY (p.displayname IS NULL), lower(coalesce(p.displayname, v.user_id)),"
            " v.user_id LIMIT $3",
            searcher,
            pattern,
            limit + 1,
        )
