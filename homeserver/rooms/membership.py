"""Membership changes: join, invite, leave, kick, ban, unban, forget."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from homeserver.http.errors import MatrixError, forbidden, not_found

if TYPE_CHECKING:
    from homeserver.app import Homeserver

_USER_ID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")


def valid_user_id(user_id: str) -> bool:
    return bool(_USER_ID.match(user_id)) and len(user_id) <= 255


async def member_content(
    hs: Homeserver, user_id: str, membership: str, reason: str | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": membership}
    if membership in ("join", "invite", "knock"):
        row = await hs.db.fetchrow(
            "SELECT displayname, avatar_url FROM profiles WHERE user_id = $1", user_id
        )
        if row is not None:
            if row["displayname"] is not None:
                content["displayname"] = row["displayname"]
            if row["avatar_url"] is not None:
                content["avatar_url"] = row["avatar_url"]
    if reason is not None:
        content["reason"] = reason
    return content


async def resolve_room(hs: Homeserver, room_id_or_alias: str) -> str:
    if room_id_or_alias.startswith("#"):
        room_id = await hs.db.fetchval(
            "SELECT room_id FROM room_aliases WHERE alias = $1", room_id_or_alias
        )
        if room_id is None:
            raise not_found("Room alias not found")
        return room_id
    if not room_id_or_alias.startswith("!"):
        raise MatrixError(400, "M_INVALID_PARAM", "Not a room ID or alias")
    return room_id_or_alias


async def room_exists(hs: Homeserver, room_id: str) -> bool:
    return bool(await hs.db.fetchval("SELECT 1 FROM rooms WHERE room_id = $1", room_id))


async def join(hs: Homeserver, user_id: str, room_id: str, reason: str | None = None) -> str:
    if not await room_exists(hs, room_id):
        # Remote rooms are joined over federation (the federation package), not here.
        raise not_found("No known room with that ID")
    current = await hs.events.current_state_event(room_id, "m.room.member", user_id)
    content = await member_content(hs, user_id, "join", reason)
    if current is not None and current.content == content:
        return room_id
    await hs.events.create_and_send(user_id, room_id, "m.room.member", content, user_id)
    await hs.db.execute(
        "DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2", user_id, room_id
    )
    return room_id


async def set_membership(
    hs: Homeserver,
    sender: str,
    room_id: str,
    target: str,
    membership: str,
    reason: str | None = None,
) -> None:
    if not valid_user_id(target):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
    if not await room_exists(hs, room_id):
        raise not_found("Unknown room")
    if membership == "invite" and target.split(":", 1)[1] == hs.server_name:
        if not await hs.db.fetchval(
            "SELECT 1 FROM users WHERE user_id = $1 AND NOT deactivated", target
        ):
            raise not_found("No such user")
    if membership == "leave" and sender != target:
        # Kicking someone who is not in the room is refused by the spec's errors, not auth.
        current = await hs.events.membership(room_id, target)
        if current not in ("join", "invite", "knock", "ban"):
            raise forbidden("The user is not in the room")
    if sender == target and membership == "leave":
        current = await hs.events.membership(room_id, target)
        if current is None or current == "leave":
            raise forbidden("You are not in this room")
    content = await member_content(hs, target, membership, reason)
    await hs.events.create_and_send(sender, room_id, "m.room.member", content, target)


async def forget(hs: Homeserver, user_id: str, room_id: str) -> None:
    membership = (
        await hs.events.membership(room_id, user_id) if await room_exists(hs, room_id) else None
    )
    if membership in ("join", "invite", "knock"):
        raise MatrixError(400, "M_UNKNOWN", "Leave the room before forgetting it")
    await hs.db.execute(
        "INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        user_id,
        room_id,
    )
