"""Room summaries (MSC3266, GET /v1/room_summary/{roomIdOrAlias}): the space hierarchy's
summary of one room (summary.py, from current state in one batch), shown to whoever the
hierarchy would show it to, plus knockers; anyone else, and a room we cannot summarise,
gets 404 M_NOT_FOUND, so the answer never tells that a private room exists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.http.errors import not_found
from homeserver.rooms.membership import resolve_room
from homeserver.spaces.summary import LocalRooms, user_may_see

if TYPE_CHECKING:
    from homeserver.app import Homeserver

# Without authentication only rooms anyone may join, knock on or read are summarised
# (the spec's "Servers MAY allow unauthenticated access ...").
_ANONYMOUS_RULES = ("public", "knock", "knock_restricted")


def _anonymous_may_see(entry: dict[str, Any]) -> bool:
    return entry.get("join_rule") in _ANONYMOUS_RULES or entry.get("world_readable") is True


async def room_summary(
    hs: Homeserver, user_id: str | None, room_id_or_alias: str, via: list[str]
) -> dict[str, Any]:
    # An unknown alias is 404 M_NOT_FOUND, something neither an ID nor an alias 400.
    room_id, servers = await resolve_room(hs, room_id_or_alias, via)
    local = LocalRooms(hs)
    await local.load([room_id])
    entry = local.summaries.get(room_id) if local.is_local(room_id) else None
    if entry is None:
        answer = await hs.federation.hierarchy.fetch(room_id, servers, False)
        if answer is not None:
            entry = {k: v for k, v in answer["room"].items() if k != "children_state"}
    if entry is None:
        raise not_found("Room not found")
    if user_id is None:
        if not _anonymous_may_see(entry):
            raise not_found("Room not found")
        return entry
    memberships = (await hs.membership_store.memberships_of([user_id]))[user_id]
    membership = memberships.get(room_id, (None,))[0]
    joined = {r for r, (m, _, _) in memberships.items() if m == "join"}
    if membership != "knock" and not user_may_see(entry, membership, joined):
        raise not_found("Room not found")
    return {**entry, "membership": membership or "leave"}
