"""m.typing, m.receipt and m.presence: sent when a local user's state changes, applied
to the local streams when a remote server's user's state does.

Inbound, a user must be joined to the room (typing, receipts; and the room's server ACL
must admit the origin) or share a room with one of our users (presence); otherwise the
EDU is of no interest and is dropped (presence is kept a minute in memory, for a join of
ours under way). Only public read receipts (m.read) cross servers; private ones never
leave.

A new join sends presence where it was unknown (as Synapse): our joining user's to the
room's other servers, and our members' to a joining user's server.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from federation.rooms import server_of
from homeserver.presence.service import presence_content
from homeserver.rooms.ephemeral import set_typing, store_receipt

if TYPE_CHECKING:
    from federation.service import Federation
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

# How long a remote user's typing lasts unless renewed or stopped (Synapse uses 30 s).
REMOTE_TYPING_TIMEOUT_MS = 30_000
PRESENCE_STATES = ("online", "offline", "unavailable")
# Presence of users we share no room with yet, kept in this process for a join under way
# (best effort, as presence is: on another process the next change brings it).
MAX_UNPLACED_PRESENCE = 1000
UNPLACED_PRESENCE_MS = 60_000
MAX_STATUS_MSG = 2048


def _typing_users(content: dict):
    return [content["user_id"]]


def _receipt_users(content: dict):
    for by_type in content.values():
        for receipts in by_type.values():
            yield from receipts


def _presence_users(content: dict):
    for entry in content.get("push", []):
        yield entry["user_id"]


class EphemeralEdus:
    def __init__(self, hs: Homeserver, federation: Federation):
        self.hs = hs
        self.federation = federation
        self.sender = federation.sender
        # Presence is built before federation; sending waits for the sender to run.
        hs.presence.on_local_change.append(self.local_presence)
        self.sender.join_listeners.append(self.joined)
        # Remote presence that arrived before we shared a room with its user (see
        # on_presence): user -> (received, last active ts, state, status_msg), oldest first.
        self._unplaced: OrderedDict[str, tuple[int, int, str, str | None]] = OrderedDict()

    async def _acl_allows(self, room_id: str, origin: str) -> bool:
        """The room's m.room.server_acl (spec: it applies to EDUs about the room too)."""
        return await self.federation.acl_allows(room_id, origin)

    def handlers(self) -> dict:
        return {
            "m.typing": (self.on_typing, _typing_users),
            "m.receipt": (self.on_receipt, _receipt_users),
            "m.presence": (self.on_presence, _presence_users),
        }

    def _local(self, user_id: str) -> bool:
        return self.sender.running and server_of(user_id) == self.hs.server_name

    # --- outbound -----------------------------------------------------------------------

    async def local_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        if not self._local(user_id):
            return
        dests = await self.hs.events.servers_in_room(room_id)
        content = {"room_id": room_id, "user_id": user_id, "typing": typing}
        await self.sender.send_edu(dests, "m.typing", content, key=(room_id, user_id))

    async def local_receipt(
        self, room_id: str, user_id: str, receipt_type: str, event_id: str, thread_id, ts: int
    ) -> None:
        if receipt_type != "m.read" or not self._local(user_id):
            return
        dests = await self.hs.events.servers_in_room(room_id)
        data: dict = {"ts": ts}
        if thread_id:
            data["thread_id"] = thread_id
        content = {room_id: {"m.read": {user_id: {"event_ids": [event_id], "data": data}}}}
        key = (room_id, user_id, thread_id or "")
        await self.sender.send_edu(dests, "m.receipt", content, key=key)

    async def _presence_entry(self, user_id: str) -> dict | None:
        """A local user's presence as an m.presence push entry; None when never set."""
        row = await self.hs.presence.store.get(user_id)
        if row is None:
            return None
        shown = presence_content(row, int(time.time() * 1000))
        entry = {
            "user_id": user_id,
            "presence": shown["presence"],
            "last_active_ago": shown.get("last_active_ago", 0),
            "currently_active": shown.get("currently_active", False),
        }
        if row.status_msg is not None:
            entry["status_msg"] = row.status_msg
        return entry

    async def local_presence(self, user_id: str) -> None:
        if not self._local(user_id) or not self.hs.presence.federated:
            return
        entry = await self._presence_entry(user_id)
        if entry is None:
            return
        dests = await self.hs.membership_store.servers_sharing_room_with(user_id)
        await self.sender.send_edu(dests, "m.presence", {"push": [entry]}, key=user_id)

    async def joined(self, joins: list[tuple[str, str]]) -> None:
        """New joins (local or remote, as the sender's join listener): presence goes where
        it was not known. Our user who joins: their presence to the room's other servers.
        Another server's user who joins: our members' presence to that server (as Synapse
        does; neither side would otherwise hear of it until it next changes)."""
        if not self.hs.presence.federated or not self.sender.running:
            return
        for room_id, user_id in joins:
            if server_of(user_id) == self.hs.server_name:
                await self._place_unplaced(room_id)
                entry = await self._presence_entry(user_id)
                if entry is not None:
                    dests = await self.hs.events.servers_in_room(room_id)
                    await self.sender.send_edu(dests, "m.presence", {"push": [entry]}, key=user_id)
                continue
            members = await self.hs.membership_store.members_of([room_id], ("join",))
            ours = sorted(u for u in members if server_of(u) == self.hs.server_name)
            entries = [e for e in [await self._presence_entry(u) for u in ours] if e is not None]
            for entry in entries:
                await self.sender.send_edu(
                    [server_of(user_id)], "m.presence", {"push": [entry]}, key=entry["user_id"]
                )

    # --- inbound ------------------------------------------------------------------------

    async def on_typing(self, origin: str, content: dict) -> None:

        room_id, user_id, typing = content["room_id"], content["user_id"], content["typing"]
        if not isinstance(room_id, str) or not isinstance(typing, bool):
            return
        if not await self.hs.membership_store.is_joined(room_id, user_id):
            return
        if not await self._acl_allows(room_id, origin):
            return
        await set_typing(self.hs, room_id, user_id, typing, REMOTE_TYPING_TIMEOUT_MS)

    async def on_receipt(self, origin: str, content: dict) -> None:

        for room_id, by_type in content.items():
            if not isinstance(by_type, dict):
                continue
            receipts = by_type.get("m.read")
            if not isinstance(receipts, dict):
                continue  # other receipt types (private ones above all) do not cross servers
            if not await self._acl_allows(room_id, origin):
                continue
            for user_id, receipt in receipts.items():
                event_id, thread_id = _parse_receipt(receipt)
                if event_id is None or not await self.hs.membership_store.is_joined(
                    room_id, user_id
                ):
                    continue
                await store_receipt(self.hs, room_id, user_id, "m.read", event_id, thread_id)

    async def on_presence(self, origin: str, content: dict) -> None:
        push = content.get("push")
        if not isinstance(push, list) or not self.hs.presence.federated:
            return
        now = int(time.time() * 1000)
        for entry in push:
            state = entry.get("presence")
            ago = entry.get("last_active_ago", 0)
            status_msg = entry.get("status_msg")
            if state not in PRESENCE_STATES or not isinstance(ago, int) or ago < 0:
                continue
            if status_msg is not None and (
                not isinstance(status_msg, str) or len(status_msg) > MAX_STATUS_MSG
            ):
                continue
            user_id = entry["user_id"]
            if not await self.hs.membership_store.shares_room_with_server(
                user_id, self.hs.server_name
            ):
                # Perhaps a room we are joining right now: the resident server sends its
                # members' presence as soon as it has our join, often before we have
                # stored the room. Kept a moment, for `joined` to apply.
                self._unplaced[user_id] = (now, now - ago, state, status_msg)
                self._unplaced.move_to_end(user_id)
                while len(self._unplaced) > MAX_UNPLACED_PRESENCE:
                    self._unplaced.popitem(last=False)
                continue
            self._unplaced.pop(user_id, None)
            await self._apply_presence(user_id, state, status_msg, now - ago)

    async def _apply_presence(
        self, user_id: str, state: str, status_msg: str | None, active_ts: int
    ) -> None:
        await self.hs.presence.store.set(user_id, state, status_msg, active_ts)
        # Typing and receipts reach appservices through set_typing/store_receipt.
        await self.hs.appservices.on_presence(user_id)

    async def _place_unplaced(self, room_id: str) -> None:
        """Presence received for users we shared no room with, applied now that one of
        our users joined `room_id` (if they are in it, and it is recent)."""
        if not self._unplaced:
            return
        members = await self.hs.membership_store.members_of([room_id], ("join",))
        now = int(time.time() * 1000)
        for user_id in [u for u in self._unplaced if u in members]:
            received, active_ts, state, status_msg = self._unplaced.pop(user_id)
            if now - received <= UNPLACED_PRESENCE_MS:
                await self._apply_presence(user_id, state, status_msg, active_ts)


def _parse_receipt(receipt) -> tuple[str | None, str | None]:
    if not isinstance(receipt, dict):
        return None, None
    event_ids = receipt.get("event_ids")
    if not isinstance(event_ids, list) or not event_ids or not isinstance(event_ids[0], str):
        return None, None
    data = receipt.get("data")
    thread_id = data.get("thread_id") if isinstance(data, dict) else None
    if thread_id is not None and (
        not isinstance(thread_id, str) or (thread_id != "main" and not thread_id.startswith("$"))
    ):
        return None, None
    return event_ids[0], thread_id
