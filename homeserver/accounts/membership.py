"""Membership events the accounts domain sends on a user's behalf: a profile change
re-sent into every joined room, and leaving everything on deactivation."""

from __future__ import annotations

import logging

import orjson

from homeserver.http.errors import MatrixError

logger = logging.getLogger(__name__)

MEMBER = "m.room.member"


async def propagate_profile(hs, user_id: str, displayname, avatar_url) -> None:
    """Sends a new join event carrying the new profile into each room the user is in.

    A room where the user may no longer send (e.g. power levels) keeps the old profile;
    the profile change itself has already succeeded.
    """
    send = hs.events.create_and_send
    for row in await hs.membership_store.joined_member_events(user_id):
        content = dict(orjson.loads(row["json"]).get("content") or {})
        content["membership"] = "join"
        for key, value in (("displayname", displayname), ("avatar_url", avatar_url)):
            if value is None:
                content.pop(key, None)
            else:
                content[key] = value
        try:
            await send(user_id, row["room_id"], MEMBER, content, state_key=user_id)
        except MatrixError as err:
            logger.info("profile not updated in %s: %s", row["room_id"], err.errcode)


async def leave_all_rooms(hs, user_id: str) -> None:
    send = hs.events.create_and_send
    for room_id in await hs.membership_store.joined_rooms(user_id):
        try:
            await send(user_id, room_id, MEMBER, {"membership": "leave"}, state_key=user_id)
        except MatrixError as err:
            logger.warning("could not leave %s on deactivation: %s", room_id, err.errcode)
