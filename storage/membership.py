"""Room membership from current state: who is in which room, and which servers are.

Every membership and servers-in-room question is answered here, in one dialect. A member
event's row in `current_state` carries its `membership`; a server is in a room when one
of its users is joined. User IDs are @localpart:server_name and localparts hold no
colon, so the server name is everything after the first colon (it may carry a port or
be an IPv6 literal).
"""

from __future__ import annotations

from collections.abc import Iterable

from storage.database import Database

_SERVER_OF = "substr({col}, strpos({col}, ':') + 1)"

# Subqueries for the queries of other stores that must join on membership in SQL rather
# than ship member sets back and forth (PostgreSQL inlines them: the plan is the same).
#
# (room_id, user_id, membership) of every member event in current state.
MEMBERS_SQL = (
    "SELECT room_id, state_key AS user_id, membership FROM current_state"
    " WHERE type = 'm.room.member'"
)
# (room_id, user_id, membership, event_id): MEMBERS_SQL with the member event.
MEMBER_EVENTS_SQL = (
    "SELECT room_id, state_key AS user_id, membership, event_id FROM current_state"
    " WHERE type = 'm.room.member'"
)
# (room_id, user_id) of the joined members.
JOINED_MEMBERS_SQL = (
    "SELECT room_id, state_key AS user_id FROM current_state"
    " WHERE type = 'm.room.member' AND membership = 'join'"
)
# The same rows with the id of each member's join event.
JOINED_MEMBER_EVENTS_SQL = (
    "SELECT room_id, state_key AS user_id, event_id FROM current_state"
    " WHERE type = 'm.room.member' AND membership = 'join'"
)
# The users joined to at least one room that $1 is joined to, $1 included.
CO_MEMBERS_SQL = (
    "SELECT $1::text AS user_id UNION"
    " SELECT other.state_key FROM current_state mine"
    " JOIN current_state other ON other.room_id = mine.room_id"
    " AND other.type = 'm.room.member' AND other.membership = 'join'"
    " WHERE mine.type = 'm.room.member' AND mine.state_key = $1 AND mine.membership = 'join'"
)
# The rooms any of the users $1 (a text[]) is joined to.
ROOMS_OF_USERS_SQL = (
    "SELECT DISTINCT room_id FROM current_state WHERE type = 'm.room.member'"
    " AND state_key = ANY($1::text[]) AND membership = 'join'"
)
# The users joined to any of the rooms $1 (a text[]).
JOINED_TO_ROOMS_SQL = (
    "SELECT state_key AS user_id FROM current_state WHERE room_id = ANY($1::text[])"
    " AND type = 'm.room.member' AND membership = 'join'"
)

# Members whose device lists a user tracks: joined or invited (an inviter encrypts for
# invitees once they join; Synapse tracks both).
SHARING = ("join", "invite")


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


class MembershipStore:
    def __init__(self, db: Database):
        self.db = db

    # -- one user ----------------------------------------------------------------------

    async def membership(self, room_id: str, user_id: str) -> str | None:
        return await self.db.fetchval(
            "SELECT membership FROM current_state"
            " WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2",
            room_id,
            user_id,
        )

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        return await self.membership(room_id, user_id) == "join"

    async def member_event_ordering(self, room_id: str, user_id: str) -> int | None:
        """The stream ordering of the user's member event in the room's current state."""
        return await self.db.fetchval(
            "SELECT e.stream_ordering FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = $1 AND c.type = 'm.room.member' AND c.state_key = $2",
            room_id,
            user_id,
        )

    async def joined_rooms(self, user_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT room_id FROM current_state"
            " WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'join'",
            user_id,
        )
        return [r["room_id"] for r in rows]

    async def joined_member_events(self, user_id: str) -> list:
        """(room_id, event json) of the user's current join event in every joined room."""
        return await self.db.fetch(
            "SELECT c.room_id, e.json FROM current_state c"
            " JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.member' AND c.state_key = $1 AND c.membership = 'join'",
            user_id,
        )

    async def memberships_of(
        self, user_ids: list[str]
    ) -> dict[str, dict[str, tuple[str, str, int]]]:
        """user -> room -> (membership, event id, stream ordering) of their member events
        in current state, in any membership."""
        rows = await self.db.fetch(
            "SELECT c.state_key, c.room_id, c.membership, c.event_id, e.stream_ordering"
            " FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.member' AND c.state_key = ANY($1)",
            user_ids,
        )
        out: dict[str, dict[str, tuple[str, str, int]]] = {u: {} for u in user_ids}
        for r in rows:
            out[r["state_key"]][r["room_id"]] = (
                r["membership"],
                r["event_id"],
                r["stream_ordering"],
            )
        return out

    async def member_event_ids_between(self, user_id: str, after: int, upto: int) -> list[str]:
        """The user's member events (any room) in (after, upto], in stream order."""
        rows = await self.db.fetch(
            "SELECT event_id FROM events WHERE type = 'm.room.member' AND state_key = $1"
            " AND stream_ordering > $2 AND stream_ordering <= $3 ORDER BY stream_ordering",
            user_id,
            after,
            upto,
        )
        return [r["event_id"] for r in rows]

    # -- rooms -------------------------------------------------------------------------

    async def member_counts(self, room_ids: list[str]) -> dict[str, tuple[int, int]]:
        """room -> (joined, invited); rooms with neither are left out."""
        out: dict[str, list[int]] = {}
        for r in await self.db.fetch(
            "SELECT room_id, membership, count(*) AS n FROM current_state"
            " WHERE room_id = ANY($1) AND type = 'm.room.member'"
            " AND membership IN ('join', 'invite') GROUP BY room_id, membership",
            room_ids,
        ):
            out.setdefault(r["room_id"], [0, 0])[0 if r["membership"] == "join" else 1] = r["n"]
        return {room_id: (j, i) for room_id, (j, i) in out.items()}

    async def first_members(self, room_ids: list[str], limit: int) -> dict[str, list[str]]:
        """room -> its first `limit` joined or invited members by user ID (hero candidates):
        a few rows per room through the index, however big the room."""
        out: dict[str, list[str]] = {}
        for r in await self.db.fetch(
            "SELECT r.room_id, h.state_key FROM unnest($1::text[]) AS r(room_id)"
            " CROSS JOIN LATERAL (SELECT m.state_key FROM current_state m"
            "   WHERE m.room_id = r.room_id AND m.type = 'm.room.member'"
            "   AND m.membership IN ('join', 'invite') ORDER BY m.state_key LIMIT $2) h",
            room_ids,
            limit,
        ):
            out.setdefault(r["room_id"], []).append(r["state_key"])
        return out

    async def members_of(self, room_ids: Iterable[str], memberships=SHARING) -> set[str]:
        """Users with one of `memberships` (default: joined or invited) in any of the rooms."""
        rows = await self.db.fetch(
            "SELECT DISTINCT state_key FROM current_state WHERE room_id = ANY($1::text[])"
            " AND type = 'm.room.member' AND membership = ANY($2::text[])",
            list(room_ids),
            list(memberships),
        )
        return {r["state_key"] for r in rows}

    async def joined_members_by_room(
        self, room_ids: Iterable[str], conn=None
    ) -> dict[str, set[str]]:
        """room -> its joined members (in the caller's transaction when given)."""
        rows = await (conn or self.db).fetch(
            "SELECT room_id, state_key FROM current_state WHERE room_id = ANY($1::text[])"
            " AND type = 'm.room.member' AND membership = 'join'",
            list(room_ids),
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r["room_id"], set()).add(r["state_key"])
        return out

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

    async def own_membership_moves(
        self, user_id: str, after: int, upto: int
    ) -> dict[str, tuple[str | None, bool]]:
        """room -> (the user's membership there at `after`, None: none yet; whether they
        were out of it at some point in between), for the rooms where the user has member
        events in (after, upto]."""
        rows = await self.db.fetch(
            "SELECT r.room_id, r.was_out, (SELECT b.membership FROM events b"
            "   WHERE b.type = 'm.room.member' AND b.state_key = $1 AND b.room_id = r.room_id"
            "   AND b.stream_ordering <= $2 ORDER BY b.stream_ordering DESC LIMIT 1) AS before"
            " FROM (SELECT room_id, bool_or(membership <> 'join') AS was_out FROM events"
            "   WHERE type = 'm.room.member' AND state_key = $1"
            "   AND stream_ordering > $2 AND stream_ordering <= $3 GROUP BY room_id) r",
            user_id,
            after,
            upto,
        )
        return {r["room_id"]: (r["before"], r["was_out"]) for r in rows}

    async def server_members(
        self, room_id: str, server_name: str, *, joined_only: bool = False, limit: int | None = None
    ) -> list[str]:
        """Users of `server_name` with a member event in the room's current state (every
        user who ever had a membership keeps one there), or only the joined ones; sorted."""
        rows = await self.db.fetch(
            "SELECT state_key FROM current_state WHERE room_id = $1"
            " AND type = 'm.room.member' AND state_key LIKE $2"
            " AND (NOT $3::boolean OR membership = 'join') ORDER BY state_key LIMIT $4::int",
            room_id,
            "%:" + _like_escape(server_name),
            joined_only,
            limit,
        )
        # LIKE matched the suffix; a server name that ends another one's is not it.
        return [r["state_key"] for r in rows if r["state_key"].split(":", 1)[1] == server_name]

    # -- servers -----------------------------------------------------------------------

    async def servers_in_rooms(self, room_ids: Iterable[str], conn=None) -> dict[str, set[str]]:
        """{room_id: joined servers} for several rooms in one query (in `conn`'s
        transaction when given: the federation outbox reads them where it queues)."""
        rows = await (conn or self.db).fetch(
            f"SELECT DISTINCT room_id, {_SERVER_OF.format(col='state_key')} AS server"
            " FROM current_state WHERE room_id = ANY($1::text[])"
            " AND type = 'm.room.member' AND membership = 'join'",
            list(room_ids),
        )
        found: dict[str, set[str]] = {}
        for r in rows:
            found.setdefault(r["room_id"], set()).add(r["server"])
        return found

    async def servers_in_room(self, room_id: str) -> set[str]:
        return (await self.servers_in_rooms([room_id])).get(room_id, set())

    async def rooms_shared_with_server(self, server_name: str) -> list[str]:
        """The rooms where one of the server's users is joined, by room ID."""
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id FROM current_state WHERE type = 'm.room.member'"
            f" AND membership = 'join' AND {_SERVER_OF.format(col='state_key')} = $1"
            " ORDER BY room_id",
            server_name,
        )
        return [r["room_id"] for r in rows]

    async def servers_sharing_room_with(self, user_id: str, conn=None) -> set[str]:
        """Servers with a user joined to a room that `user_id` is joined to."""
        rows = await (conn or self.db).fetch(
            f"SELECT DISTINCT {_SERVER_OF.format(col='other.state_key')} AS server"
            " FROM current_state mine JOIN current_state other ON other.room_id = mine.room_id"
            " WHERE mine.type = 'm.room.member' AND mine.state_key = $1"
            " AND mine.membership = 'join'"
            " AND other.type = 'm.room.member' AND other.membership = 'join'",
            user_id,
        )
        return {r["server"] for r in rows}

    # -- who shares a room with whom -----------------------------------------------------

    async def users_sharing_room_with(self, user_id: str) -> set[str]:
        """Every user joined to or invited into a room that `user_id` is joined to."""
        rows = await self.db.fetch(
            "SELECT DISTINCT other.state_key FROM current_state mine"
            " JOIN current_state other ON other.room_id = mine.room_id"
            " WHERE mine.type = 'm.room.member' AND mine.state_key = $1"
            " AND mine.membership = 'join'"
            " AND other.type = 'm.room.member' AND other.membership = ANY($2::text[])",
            user_id,
            list(SHARING),
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
            list(SHARING),
        )
        return {r["state_key"] for r in rows}

    async def users_sharing_room_with_server(
        self, user_ids: Iterable[str], server_name: str
    ) -> set[str]:
        """Those of `user_ids` joined to (or invited into: an invitee's keys are wanted
        before the join) a room that a user of `server_name` is joined to."""
        rows = await self.db.fetch(
            "SELECT DISTINCT theirs.state_key FROM current_state theirs"
            " JOIN current_state ours ON ours.room_id = theirs.room_id"
            " WHERE theirs.type = 'm.room.member' AND theirs.state_key = ANY($1::text[])"
            " AND theirs.membership = ANY($3::text[])"
            " AND ours.type = 'm.room.member' AND ours.membership = 'join'"
            f" AND {_SERVER_OF.format(col='ours.state_key')} = $2",
            list(user_ids),
            server_name,
            list(SHARING),
        )
        return {r["state_key"] for r in rows}

    async def shares_room_with_server(self, user_id: str, server_name: str) -> bool:
        return bool(await self.users_sharing_room_with_server([user_id], server_name))

    # -- forgotten rooms -----------------------------------------------------------------

    async def forget(self, user_id: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            user_id,
            room_id,
        )

    async def unforget(self, user_id: str, room_id: str) -> None:
        """Joining a room again brings it back."""
        await self.db.execute(
            "DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2", user_id, room_id
        )

    async def forgotten_rooms(self, user_id: str) -> set[str]:
        rows = await self.db.fetch(
            "SELECT room_id FROM forgotten_rooms WHERE user_id = $1", user_id
        )
        return {r["room_id"] for r in rows}
