"""The device-lists stream: `device_lists` (changed, left), and with it the syncing
device's one-time key counts and unused fallback key types (as Dendrite does).

A change to a user's devices or cross-signing keys is one row on the device_lists
stream. It wakes the user and every local user sharing a room with them; a /sync then
reports the user in `changed` if they still share a room. Users who start sharing a
room appear in `changed` too (the syncing user has never fetched their keys), and users
who stop sharing every room appear in `left`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider, room_member_changes
from storage.membership import MembershipStore

if TYPE_CHECKING:
    from e2ee.devices.device_lists import DeviceLists

# (user_id, device_id) -> (one-time key counts, unused fallback key types): the process
# cache's (homeserver/user_cache.py), which follows uploads and claims on any process.
KeyStatus = Callable[[str, str], Awaitable[tuple[dict[str, int], list[str]]]]


class DeviceListsStream(StreamProvider):
    stream = "device_lists"

    def __init__(
        self,
        device_lists: DeviceLists,
        memberships: MembershipStore,
        key_status: KeyStatus,
        notifier: Notifier,
    ):
        # The e2ee package's: /keys/changes reports the same (DeviceLists.report).
        self.device_lists = device_lists
        self.memberships = memberships
        self.key_status = key_status
        self.notifier = notifier

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        if ctx.device_id is not None:
            counts, fallback = await self.key_status(ctx.user_id, ctx.device_id)
            # Clients read a missing count as "unknown"; Synapse always reports this one.
            counts.setdefault("signed_curve25519", 0)
            response["device_one_time_keys_count"] = counts
            response["device_unused_fallback_key_types"] = fallback
        response["device_lists"] = await self._changes(ctx)

    async def _changes(self, ctx: SyncContext) -> dict[str, list[str]]:
        """{"changed": [...], "left": [...]} for an incremental sync; empty on initial sync.

        Each query runs only when the notifier says its stream moved for this user or
        room.
        """
        if ctx.since is None:
            return {"changed": [], "left": []}
        return await self.device_lists.report(
            ctx.user_id,
            ctx.since,
            ctx.now,
            scan_changes=self.notifier.changed_since(
                ctx.user_id, "device_lists", ctx.since.get("device_lists", 0)
            ),
            member_changes=await room_member_changes(self.memberships, self.notifier, ctx),
            newly_joined=ctx.newly_joined_room_ids,
            newly_left=ctx.newly_left_room_ids,
        )
