"""POST /rooms/{roomId}/upgrade (spec: "Room Upgrades", server behaviour), and what a
user takes along on joining the replacement room.

The upgrade, once checked (known version, the user may send m.room.tombstone, valid
`additional_creators`), in the order Synapse uses:

1. the tombstone built and authorised in the old room (not yet sent; before v12 the new
   room's ID is chosen first, so that the new room's `predecessor.event_id` names it);
2. the replacement room: m.room.create with `predecessor` and the old room's `type` (and
   `m.federate: false` if the old room had it), the upgrader's join, the old power levels
   (the upgrader lifted for the duration if they need more to copy the state), a private
   room's preset state for what the old room lacked (join rules, history visibility, guest
   access), the transferable state (TRANSFERRED; a space's m.space.child links too), bans;
3. the tombstone sent in the old room;
4. the local aliases moved, the canonical alias set in the new room and cleared of them in
   the old; the directory listing moved; the old room's power levels then require
   max(50, users_default + 1) to send events and to invite (best effort: the upgrader may
   lack the power);
5. the upgrader's tags and DM list for the old room carried over (`carry_over`), as every
   local user's are when they join the replacement room (rooms/successor.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from federation.membership.resident import on_top_of_current_state
from homeserver.events.auth import (
    get_named_level,
    get_power_level,
    get_required_level,
    parse_power_level,
)
from homeserver.events.room_versions import RoomVersion
from homeserver.http.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.http.request import field
from homeserver.rooms.creation import (
    create_joined_room,
    default_power_levels,
    known_version,
    preset_state,
)
from homeserver.rooms.membership import valid_user_id
from homeserver.rooms.successor import carry_over
from storage.events import StoredEvent

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

# The spec's recommended list (less m.room.power_levels, handled on its own), plus a
# room's own links to its parent spaces. Membership is never copied: a server cannot
# speak for other servers' users.
TRANSFERRED = (
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
    "m.space.parent",
)
POWER_LEVELS = ("m.room.power_levels", "")
TOMBSTONE_BODY = "This room has been replaced"

_locks: dict[str, asyncio.Lock] = {}


def _restricted_old_levels(levels: dict[str, Any]) -> dict[str, Any] | None:
    """The old room's power levels with events_default and invite raised to the greater
    of 50 and users_default + 1, or None when they are that high already."""
    users_default = levels.get("users_default", 0)
    restricted = max(50, (users_default if isinstance(users_default, int) else 0) + 1)
    changed = dict(levels)
    for key in ("events_default", "invite"):
        current = levels.get(key, 0)
        if not isinstance(current, int) or isinstance(current, bool) or current < restricted:
            changed[key] = restricted
    return changed if changed != levels else None


_LEVEL_MAPS = ("users", "events", "notifications")


def _integer_levels(levels: dict[str, Any], old_version: RoomVersion) -> dict[str, Any]:
    """The levels as the old room's auth rules read them, as JSON integers: v10+ refuse
    the strings ("50") and floats that earlier versions accept. Unreadable values go."""
    out: dict[str, Any] = {}
    for key, value in levels.items():
        if key in _LEVEL_MAPS and isinstance(value, dict):
            out[key] = {
                k: parsed
                for k, v in value.items()
                if (parsed := parse_power_level(old_version, v)) is not None
            }
        elif isinstance(value, dict | list) or key in _LEVEL_MAPS:
            out[key] = value
        elif (parsed := parse_power_level(old_version, value)) is not None:
            out[key] = parsed
    return out


def _new_levels(
    old: dict[str, Any], version: RoomVersion, upgrader: str, creators: list[str], needed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the power levels to start the new room with, the ones to end with). v12 creators
    have infinite power and must not be listed; otherwise the upgrader keeps at least the
    level the copying needs while it runs."""
    final = dict(old)
    users = dict(old.get("users") or {}) if isinstance(old.get("users"), dict) else {}
    if version.creators_have_infinite_power:
        for creator in creators:
            users.pop(creator, None)
        final["users"] = users
        return final, final
    mine = users.get(upgrader)
    if not isinstance(mine, int) or isinstance(mine, bool):
        # From a v12 room (creators unlisted) or a user at users_default: keep the power
        # the upgrader had there, at least what upgrading took.
        users[upgrader] = max(needed, 100)
        mine = users[upgrader]
    final["users"] = users
    if mine >= needed:
        return final, final
    return {**final, "users": {**users, upgrader: needed}}, final


async def upgrade_room(hs: Homeserver, user_id: str, old_room_id: str, body: dict[str, Any]) -> str:
    version = known_version(field(body, "new_version", str))
    extra = field(body, "additional_creators", list, [])
    if not all(isinstance(u, str) and valid_user_id(u) for u in extra):
        raise bad_json("'additional_creators' must be a list of user IDs")
    lock = _locks.setdefault(old_room_id, asyncio.Lock())
    try:
        async with lock:
            return await _upgrade(hs, user_id, old_room_id, version, extra)
    finally:
        if not lock.locked() and not lock._waiters:
            _locks.pop(old_room_id, None)


async def _upgrade(
    hs: Homeserver, user_id: str, old_room_id: str, version: RoomVersion, extra: list[str]
) -> str:
    if not await hs.event_store.room_exists(old_room_id):
        raise not_found("Unknown room")
    old_head = await hs.events.room_head(old_room_id)
    old_version = old_head.version
    state = await hs.events.current_state(old_room_id)
    member = state.get(("m.room.member", user_id))
    if member is None or member.content.get("membership") != "join":
        raise forbidden("You are not joined to this room")
    auth_state = {k: e.event for k, e in state.items()}
    pl_event = state.get(POWER_LEVELS)
    levels = pl_event.content if pl_event is not None else None
    mine = get_power_level(old_version, user_id, auth_state, old_head.create_event)
    if mine < get_required_level(old_version, "m.room.tombstone", True, levels):
        raise forbidden("You may not upgrade this room (m.room.tombstone needs more power)")

    create = state[("m.room.create", "")].content
    is_space = create.get("type") == "m.space"
    copied: list[StoredEvent] = [
        e
        for (etype, _), e in state.items()
        if etype in TRANSFERRED or (is_space and etype == "m.space.child")
    ]
    copied.sort(key=lambda e: (e.type, e.state_key or ""))
    banned = [
        sk
        for (etype, sk), e in state.items()
        if etype == "m.room.member" and e.content.get("membership") == "ban"
    ]

    # A room without power levels lets anyone do anything; its replacement gets the
    # defaults of a new room instead.
    base = (
        _integer_levels(levels, old_version)
        if levels is not None
        else default_power_levels(user_id, version, "", [])
    )
    # The power the copying takes in the new room.
    needed = max(
        [get_required_level(version, e.type, True, base) for e in copied]
        + [get_required_level(version, "m.room.power_levels", True, base)]
        + ([get_named_level(version, "ban", base)] if banned else [])
        + [0]
    )

    creation: dict[str, Any] = {"predecessor": {"room_id": old_room_id}}
    for key in ("type", "m.federate"):
        if key in create:
            creation[key] = create[key]
    if version.creators_have_infinite_power and extra:
        creation["additional_creators"] = list(dict.fromkeys(extra))
    tombstone_item = None
    new_room_id = None
    if not version.room_id_is_create_event_hash:
        # The new room is named first so that the tombstone can be built (and authorised)
        # before anything is created, and the new room's predecessor names it: the event
        # ID there (deprecated since v1.16, still read by clients) is the old room's last
        # event. A v12 room's ID is its create event's hash, so it cannot be named first.
        new_room_id = hs.events.new_room_id()
        tombstone_item, tombstone_state = await hs.events.prepare_event(
            user_id, old_room_id, "m.room.tombstone", _tombstone(new_room_id), ""
        )
        creation["predecessor"]["event_id"] = tombstone_item.event_id
    new_room_id = await create_joined_room(hs, user_id, version, creation, new_room_id)

    send = hs.events.create_and_send
    first, final = _new_levels(base, version, user_id, [user_id, *extra], needed)
    await send(user_id, new_room_id, "m.room.power_levels", first, "")
    # What the old room did not have is a new private room's (Synapse does the same, so
    # clients see the same initial state).
    kept = {e.type for e in copied if e.state_key == ""}
    for etype, content in preset_state("private_chat").items():
        if etype not in kept:
            await send(user_id, new_room_id, etype, content, "")
    for event in copied:
        await send(user_id, new_room_id, event.type, event.content, event.state_key)
    for target in banned:
        await send(user_id, new_room_id, "m.room.member", {"membership": "ban"}, target)
    if final != first:
        await send(user_id, new_room_id, "m.room.power_levels", final, "")

    if tombstone_item is not None:
        await hs.events.persist_federated(
            old_room_id,
            tombstone_item.event,
            tombstone_item.event_id,
            state_before=tombstone_state,
            current_state=on_top_of_current_state(tombstone_item.event_id, tombstone_item.event),
            federated=False,
        )
    else:
        await send(user_id, old_room_id, "m.room.tombstone", _tombstone(new_room_id), "")
    await _move_aliases(hs, user_id, old_room_id, new_room_id, state)
    room = await hs.directory.room(old_room_id)
    if room is not None and room["is_public"]:
        await hs.directory.set_public(new_room_id, True)
        await hs.directory.set_public(old_room_id, False)
    if levels is not None:
        restricted = _restricted_old_levels(levels)
        if restricted is not None:
            try:
                await send(user_id, old_room_id, "m.room.power_levels", restricted, "")
            except MatrixError as e:
                logger.info("upgrade: old room's power levels left as they were: %s", e.errcode)
    await carry_over(hs, user_id, old_room_id, new_room_id)
    return new_room_id


def _tombstone(new_room_id: str) -> dict[str, Any]:
    return {"body": TOMBSTONE_BODY, "replacement_room": new_room_id}


async def _move_aliases(
    hs: Homeserver,
    user_id: str,
    old_room_id: str,
    new_room_id: str,
    state: dict[tuple[str, str], StoredEvent],
) -> None:
    moved = set(await hs.directory.move_aliases(old_room_id, new_room_id))
    canonical = state.get(("m.room.canonical_alias", ""))
    if canonical is None or not canonical.content:
        return
    content = canonical.content
    try:
        await hs.events.create_and_send(user_id, new_room_id, "m.room.canonical_alias", content, "")
        # The old room no longer advertises what now leads elsewhere.
        remaining = {k: v for k, v in content.items() if k not in ("alias", "alt_aliases")}
        if content.get("alias") not in moved and "alias" in content:
            remaining["alias"] = content["alias"]
        alt = content.get("alt_aliases")
        if isinstance(alt, list):
            kept = [a for a in alt if a not in moved]
            if kept:
                remaining["alt_aliases"] = kept
        if remaining != content:
            await hs.events.create_and_send(
                user_id, old_room_id, "m.room.canonical_alias", remaining, ""
            )
    except MatrixError as e:
        logger.info("upgrade: canonical alias not updated: %s", e.errcode)
