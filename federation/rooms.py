"""Which servers are in a room, and which share one with a user, from current state.

A server is in a room when one of its users is joined to it. User IDs are
@localpart:server_name and localparts hold no colon, so the server name is everything
after the first colon (it may carry a port).
"""

from __future__ import annotations

from collections.abc import Iterable

from storage.database import Database

_SERVER_OF = "substr(state_key, strpos(state_key, ':') + 1)"


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


async def servers_in_rooms(db: Database, room_ids: Iterable[str]) -> dict[str, set[str]]:
    """{room_id: joined servers} for several rooms in one query."""
    rows = await db.fetch(
        f"SELECT DISTINCT room_id, {_SERVER_OF} AS server FROM current_state"
        " WHERE room_id = ANY($1::text[]) AND type = 'm.room.member' AND membership = 'join'",
        list(room_ids),
    )
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(r["room_id"], set()).add(r["server"])
    return found


async def servers_sharing_room_with(db: Database, user_id: str) -> set[str]:
    """Servers with a user joined to a room that `user_id` is joined to."""
    rows = await db.fetch(
        "SELECT DISTINCT substr(other.state_key, strpos(other.state_key, ':') + 1) AS server"
        " FROM current_state mine JOIN current_state other ON other.room_id = mine.room_id"
        " WHERE mine.type = 'm.room.member' AND mine.state_key = $1"
        " AND mine.membership = 'join'"
        " AND other.type = 'm.room.member' AND other.membership = 'join'",
        user_id,
    )
    return {r["server"] for r in rows}


async def is_joined(db: Database, room_id: str, user_id: str) -> bool:
    return bool(
        await db.fetchval(
            "SELECT 1 FROM current_state WHERE room_id = $1 AND type = 'm.room.member'"
            " AND state_key = $2 AND membership = 'join'",
            room_id,
            user_id,
        )
    )


async def users_sharing_room_with_local(
    db: Database, user_ids: Iterable[str], local_server: str
) -> set[str]:
    """Those of `user_ids` joined to (or invited into: an invitee's keys are wanted before
    the join) a room that a user of `local_server` is joined to."""
    rows = await db.fetch(
        "SELECT DISTINCT theirs.state_key FROM current_state theirs"
        " JOIN current_state ours ON ours.room_id = theirs.room_id"
        " WHERE theirs.type = 'm.room.member' AND theirs.state_key = ANY($1::text[])"
        " AND theirs.membership IN ('join', 'invite')"
        " AND ours.type = 'm.room.member' AND ours.membership = 'join'"
        " AND substr(ours.state_key, strpos(ours.state_key, ':') + 1) = $2",
        list(user_ids),
        local_server,
    )
    return {r["state_key"] for r in rows}


async def shares_room_with_local_user(db: Database, user_id: str, local_server: str) -> bool:
    return bool(await users_sharing_room_with_local(db, [user_id], local_server))
