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
from typing import Any

from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier, state_key_of
from homeserver.sync.streams.base import StreamProvider
from storage.e2ee_keys import E2EKeyStore
from storage.membership import MembershipStore

# (user_id, since, now) -> users whose device lists changed for that user in (since, now].
ChangesBetween = Callable[[str, int, int], Awaitable[set[str]]]


class DeviceListsStream(StreamProvider):
    stream = "device_lists"

    def __init__(
        self,
        changes_between: ChangesBetween,
        memberships: MembershipStore,
        keys: E2EKeyStore,
        notifier: Notifier,
    ):
        # The e2ee package's DeviceLists.changes_between: it knows what pruning implies.
        self.changes_between = changes_between
        self.memberships = memberships
        self.keys = keys
        self.notifier = notifier

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        if ctx.device_id is not None:
            counts, fallback = await self.keys.key_status(ctx.user_id, ctx.device_id)
            # Clients read a missing count as "unknown"; Synapse always reports this one.
            counts.setdefault("signed_curve25519", 0)
            response["device_one_time_keys_count"] = counts
            response["device_unused_fallback_key_types"] = fallback
        response["device_lists"] = await self._changes(ctx)

    async def _changes(self, ctx: SyncContext) -> dict[str, list[str]]:
        """{"changed": [...], "left": [...]} for an incremental sync; empty on initial sync.

        Each query runs only when the notifier says its stream moved for this user or
        room, and the "shares a room" test looks only at the candidates.
        """
        if ctx.since is None:
            return {"changed": [], "left": []}
        notifier = self.notifier
        since_dl = ctx.since.get("device_lists", 0)
        now_dl = ctx.now.get("device_lists", 0)
        since_ev = ctx.since.get("events", 0)
        now_ev = ctx.now.get("events", 0)

        changed: set[str] = set()
        if now_dl > since_dl and notifier.changed_since(ctx.user_id, "device_lists", since_dl):
            changed = await self.changes_between(ctx.user_id, since_dl, now_dl)
        # Users who joined a room of ours, or whose rooms we joined: new to us.
        if ctx.newly_joined_room_ids:
            changed |= await self.memberships.members_of(ctx.newly_joined_room_ids)
        left: set[str] = set()
        moved = [
            r
            for r in ctx.joined_room_ids
            if notifier.changed_since(state_key_of(r), "events", since_ev)
        ]
        if now_ev > since_ev and moved:
            for user_id, membership in await self.memberships.membership_changes(
                moved, since_ev, now_ev
            ):
                if membership in ("join", "invite"):
                    changed.add(user_id)
                else:
                    left.add(user_id)
        if ctx.newly_left_room_ids:
            left |= await self.memberships.members_of(ctx.newly_left_room_ids)
            if now_ev > since_ev:
                left |= {
                    u
                    for u, _ in await self.memberships.membership_changes(
                        ctx.newly_left_room_ids, since_ev, now_ev
                    )
                }
        candidates = changed | left
        if not candidates:
            return {"changed": [], "left": []}
        sharing = await self.memberships.sharing_a_room(ctx.user_id, candidates)
        sharing.add(ctx.user_id)
        changed &= sharing
        left = left - sharing
        return {"changed": sorted(changed), "left": sorted(left)}
