"""What a user takes along into a room's replacement (spec: "Room Upgrades": when a user
joins the new room, the server should transfer their personal settings): the tags of the
old room and its place in their DM list. Run for the upgrader by rooms/upgrade.py and for
every local user joining a room with a `predecessor` by rooms/membership.join, which also
moves this server's aliases and directory listing when it first joins a replacement room
made elsewhere (`transfer_listing`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from storage.account_data import GLOBAL

if TYPE_CHECKING:
    from homeserver.app import Homeserver

TAG_TYPE = "m.tag"
DIRECT_TYPE = "m.direct"


async def predecessor(hs: Homeserver, room_id: str) -> str | None:
    """The room this one replaces (its create event's `predecessor`), if any."""
    create = (await hs.events.room_head(room_id)).create_event
    content = create.get("content") if create else None
    previous = content.get("predecessor") if isinstance(content, dict) else None
    old = previous.get("room_id") if isinstance(previous, dict) else None
    return old if isinstance(old, str) else None


async def transfer_listing(hs: Homeserver, old_room_id: str, new_room_id: str) -> None:
    """When this server first joins a replacement room that another server made, our
    aliases of the old room and its place in our room directory move to the new room, as
    the upgrading server moved its own (rooms/upgrade.py; Synapse does the same). Only if
    the old room's tombstone names the new room: a room cannot take another's aliases by
    naming it as its predecessor."""
    if not await hs.event_store.room_exists(old_room_id):
        return
    tombstone = await hs.events.current_state_event(old_room_id, "m.room.tombstone")
    if tombstone is None or tombstone.content.get("replacement_room") != new_room_id:
        return
    await hs.directory.move_aliases(old_room_id, new_room_id)
    room = await hs.directory.room(old_room_id)
    if room is not None and room["is_public"]:
        await hs.directory.set_public(new_room_id, True)
        await hs.directory.set_public(old_room_id, False)


async def carry_over(hs: Homeserver, user_id: str, old_room_id: str, new_room_id: str) -> None:
    """The user's tags of the old room become the new room's (unless it has some), and a
    DM room in their m.direct gains its replacement next to it (spec: "When a user joins
    the new room, the server should automatically transfer ... tags")."""
    store = hs.accounts.account_data
    updates: list[tuple[str, str, str]] = []
    tags = await store.get(user_id, old_room_id, TAG_TYPE)
    if tags is not None and await store.get(user_id, new_room_id, TAG_TYPE) is None:
        updates.append((new_room_id, TAG_TYPE, tags))
    stored = await store.get(user_id, GLOBAL, DIRECT_TYPE)
    direct = orjson.loads(stored) if stored else None
    if isinstance(direct, dict):
        updated = {
            other: [*rooms, new_room_id]
            if isinstance(rooms, list) and old_room_id in rooms and new_room_id not in rooms
            else rooms
            for other, rooms in direct.items()
        }
        if updated != direct:
            updates.append((GLOBAL, DIRECT_TYPE, orjson.dumps(updated).decode()))
    if not updates:
        return
    async with hs.streams.write("account_data") as w:
        for room_id, data_type, content in updates:
            await store.put(w.conn, user_id, room_id, data_type, content, w.last)
        w.wake(users=[user_id])
