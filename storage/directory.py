"""Room aliases, the public room list and the user directory.

Public room summaries are built with a fixed number of queries whatever the number of
rooms: one for the room list with member counts, one for the summary state of all of them.
"""

from __future__ import annotations

import time

import orjson

from storage.database import Database
from storage.membership import JOINED_MEMBER_EVENTS_SQL, JOINED_MEMBERS_SQL

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
    "m.room.encryption",
]


class AliasExists(Exception):
    pass


# The JSON of a state event by ID: a timeline event, or an outlier (the state of a room
# joined over federation arrives as outliers).
_EVENT_JSON = (
    "SELECT json FROM events WHERE event_id = {0}"
    " UNION ALL SELECT json FROM event_outliers WHERE event_id = {0} LIMIT 1"
)


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

    async def move_aliases(self, old_room_id: str, new_room_id: str) -> list[str]:
        """Points every alias of a room at another (a room upgrade); returns them."""
        rows = await self.db.fetch(
            "UPDATE room_aliases SET room_id = $2 WHERE room_id = $1 RETURNING alias",
            old_room_id,
            new_room_id,
        )
        return sorted(r["alias"] for r in rows)

    # -- rooms -----------------------------------------------------------------------------

    async def room(self, room_id: str):
        return await self.db.fetchrow(
            "SELECT room_id, creator, is_public FROM rooms WHERE room_id = $1", room_id
        )

    async def set_public(self, room_id: str, public: bool) -> None:
        await self.db.execute("UPDATE rooms SET is_public = $2 WHERE room_id = $1", room_id, public)

    async def summary_state(self, room_ids: list[str]) -> dict[str, dict[str, dict]]:
        """room_id -> event type -> content, for SUMMARY_TYPES, in one query. The state of
        a room joined through another server is made of outliers (event_outliers) until
        it changes."""
        rows = await self.db.fetch(
            "SELECT cs.room_id, cs.type, COALESCE(e.json, o.json) AS json FROM current_state cs"
            " LEFT JOIN events e ON e.event_id = cs.event_id"
            " LEFT JOIN event_outliers o ON o.event_id = cs.event_id"
            " WHERE cs.room_id = ANY($1::text[]) AND cs.state_key = ''"
            " AND cs.type = ANY($2::text[])"
            " AND (e.event_id IS NOT NULL OR o.event_id IS NOT NULL)",
            room_ids,
            SUMMARY_TYPES,
        )
        state: dict[str, dict[str, dict]] = {room_id: {} for room_id in room_ids}
        for r in rows:
            content = orjson.loads(r["json"]).get("content")
            state[r["room_id"]][r["type"]] = content if isinstance(content, dict) else {}
        return state

    async def set_appservice_listed(
        self, appservice_id: str, network_id: str, room_id: str, listed: bool
    ) -> None:
        if listed:
            await self.db.execute(
                "INSERT INTO appservice_room_list (appservice_id, network_id, room_id)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                appservice_id,
                network_id,
                room_id,
            )
        else:
            await self.db.execute(
                "DELETE FROM appservice_room_list"
                " WHERE appservice_id = $1 AND network_id = $2 AND room_id = $3",
                appservice_id,
                network_id,
                room_id,
            )

    async def public_rooms(
        self, network: tuple[str, str] | None = None, *, all_networks: bool = False
    ) -> list[tuple[str, int]]:
        """(room_id, joined member count) of the published rooms, most joined first: the
        server's own list; or one appservice network's list (network = (appservice id,
        network id)); or, with all_networks, both the server's and every appservice's."""
        if network is not None:
            where = (
                "EXISTS (SELECT 1 FROM appservice_room_list l WHERE l.room_id = r.room_id"
                " AND l.appservice_id = $1 AND l.network_id = $2)"
            )
            args: tuple[str, ...] = network
        elif all_networks:
            where = (
                "r.is_public OR EXISTS"
                " (SELECT 1 FROM appservice_room_list l WHERE l.room_id = r.room_id)"
            )
            args = ()
        else:
            where, args = "r.is_public", ()
        rows = await self.db.fetch(
            "SELECT r.room_id, count(m.user_id) AS joined FROM rooms r"
            f" LEFT JOIN ({JOINED_MEMBERS_SQL}) m ON m.room_id = r.room_id"
            f" WHERE {where} GROUP BY r.room_id ORDER BY joined DESC, r.room_id",
            *args,
        )
        return [(r["room_id"], r["joined"]) for r in rows]

    # -- users -----------------------------------------------------------------------------

    async def search_users(
        self,
        searcher: str,
        term: str,
        limit: int,
        *,
        co_members_only: bool = False,
        external_servers: tuple[str, ...] = (),
    ) -> list:
        """Users sharing a room with `searcher` or joined to a public room (join rule
        public, history world_readable, or published) that this server is in, matching
        `term` in their user id or display name (a remote user's: from their membership
        event). Returns up to limit + 1 rows (to detect more).

        External users (homeserver/policy: marked in external_users, or of a server in
        `external_servers`, entries as federation.allowed_servers has them) are found only
        by those sharing a room with them; `co_members_only` (an external searcher) finds
        no one else."""
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        exact = [e.lower() for e in external_servers if not e.startswith("*.")]
        suffixes = ["%" + e[1:].lower() for e in external_servers if e.startswith("*.")]
        return await self.db.fetch(
            # inlined: each branch uses the indexes
            f"WITH joined AS NOT MATERIALIZED ({JOINED_MEMBER_EVENTS_SQL}), public AS ("
            # Public rooms: anyone may join or read them, or they are published. Only
            # those this server is still in (a user of the searcher's server is joined):
            # the state of a room it left is frozen, its members no longer known.
            "  SELECT cs.room_id FROM current_state cs"
            f" CROSS JOIN LATERAL ({_EVENT_JSON.format('cs.event_id')}) e"
            "  WHERE cs.state_key = '' AND ("
            # Canonical JSON has no whitespace, and a cast to jsonb would choke on \u0000.
            "   (cs.type = 'm.room.join_rules' AND e.json LIKE '%\"join_rule\":\"public\"%')"
            "   OR (cs.type = 'm.room.history_visibility'"
            '    AND e.json LIKE \'%"history_visibility":"world_readable"%\'))'
            "  UNION SELECT room_id FROM rooms WHERE is_public"
            "), found AS ("
            "  SELECT other.user_id, true AS shared, other.event_id FROM joined mine"
            "  JOIN joined other ON other.room_id = mine.room_id"
            # Sharing a room with oneself does not put one in one's own results.
            "  WHERE mine.user_id = $1 AND other.user_id <> $1"
            "  UNION"
            "  SELECT m.user_id, false, m.event_id FROM joined m"
            "  JOIN public p ON p.room_id = m.room_id"
            "  WHERE EXISTS (SELECT 1 FROM joined l WHERE l.room_id = p.room_id"
            "   AND substr(l.user_id, strpos(l.user_id, ':')) = substr($1, strpos($1, ':')))"
            "), visible AS ("
            "  SELECT user_id, bool_or(shared) AS shared, min(event_id) AS member_event,"
            "   lower(substr(user_id, strpos(user_id, ':') + 1)) AS server"
            "  FROM found GROUP BY user_id"
            "), named AS ("
            # Local users by their profile; remote ones (no profile here) by the profile
            # their membership event carries.
            "  SELECT v.*, CASE WHEN p.user_id IS NOT NULL THEN p.displayname"
            "   WHEN jsonb_typeof(m.content->'displayname') = 'string'"
            "   THEN m.content->>'displayname' END AS displayname,"
            "   CASE WHEN p.user_id IS NOT NULL THEN p.avatar_url"
            "   WHEN jsonb_typeof(m.content->'avatar_url') = 'string'"
            "   THEN m.content->>'avatar_url' END AS avatar_url"
            "  FROM visible v LEFT JOIN profiles p ON p.user_id = v.user_id"
            "  LEFT JOIN LATERAL (SELECT e.json::jsonb->'content' AS content"
            f"  FROM ({_EVENT_JSON.format('v.member_event')}) e"
            "   WHERE p.user_id IS NULL AND strpos(e.json, '\\u0000') = 0) m ON true"
            ")"
            " SELECT v.user_id, v.displayname, v.avatar_url FROM named v"
            " LEFT JOIN users u ON u.user_id = v.user_id"
            " WHERE NOT coalesce(u.deactivated, false)"
            " AND (v.user_id ILIKE $2 OR v.displayname ILIKE $2)"
            " AND (v.shared OR NOT $4::bool)"
            " AND (v.shared OR NOT ("
            "  EXISTS (SELECT 1 FROM external_users x WHERE x.user_id = v.user_id)"
            # Guests, like external users, are found only by those sharing a room.
            "  OR coalesce(u.is_guest, false)"
            "  OR v.server = ANY($5::text[])"
            "  OR regexp_replace(v.server, ':[0-9]+$', '') = ANY($5::text[])"
            "  OR regexp_replace(v.server, ':[0-9]+$', '') LIKE ANY($6::text[])))"
            " ORDER BY (v.displayname IS NULL), lower(coalesce(v.displayname, v.user_id)),"
            " v.user_id LIMIT $3",
            searcher,
            pattern,
            limit + 1,
            co_members_only,
            exact,
            suffixes,
        )
