"""Device-list changes: recording them, and computing `device_lists` for /sync.

A change to a user's devices or cross-signing keys is one row on the device_lists
stream. It wakes the user and every local user sharing a room with them; a /sync then
reports the user in `changed` if they still share a room. Users who start sharing a
room appear in `changed` too (the syncing user has never fetched their keys), and users
who stop sharing every room appear in `left`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from homeserver.sync.notifier import state_key_of
from storage.e2ee_device_lists import DeviceListStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver


class DeviceListOutbox(Protocol):
    """Tells other servers of changes to local users' devices (the federation package):
    `queue` stores the EDUs in the transaction that records the change, and returns the
    servers to `wake` after its commit."""

    async def queue(self, conn: Any, user_ids: list[str]) -> Collection[str]: ...

    def wake(self, servers: Collection[str]) -> None: ...


class DeviceLists:
    def __init__(self, hs: Homeserver, store: DeviceListStore):
        self.hs = hs
        self.store = store
        # Set by the federation package when it federates.
        self.outbox: DeviceListOutbox | None = None

    async def mark_changed(self, user_ids: Iterable[str], work=None) -> None:
        """Records a change for each user, committing `await work(conn)` with it.

        The key writes run inside the stream write's own transaction rather than the
        other way round: the notifier learns of a position when that transaction ends,
        so it must be the outermost one, or a /sync could read before the commit.
        """
        users = sorted(set(user_ids))
        if not users:
            return
        wake = set(users)
        for user_id in users:
            wake |= await self.store.users_sharing_room_with(user_id)
        servers: Collection[str] = ()
        async with self.hs.streams.write("device_lists", len(users)) as w:
            if work is not None:
                await work(w.conn)
            await self.store.add_changes(w.conn, w.positions, users)
            if self.outbox is not None:
                # After `work`, in its transaction: what other servers are told commits
                # with the change itself (a crash in between cannot lose it).
                servers = await self.outbox.queue(w.conn, users)
            w.wake(users=wake)
        if servers and self.outbox is not None:
            self.outbox.wake(servers)

    async def changes_between(self, user_id: str, since: int, now: int) -> set[str]:
        """Users whose devices changed in (since, now], as far as `user_id` needs to know.
        When housekeeping has pruned changes after `since`, every user sharing a room with
        `user_id` counts as changed: their keys are fetched again, none is missed."""
        changed = await self.store.changed_between(since, now)
        if changed is None:
            changed = await self.store.users_sharing_room_with(user_id)
            changed.add(user_id)
        return changed

    async def sync_section(self, ctx) -> dict[str, list[str]]:
        """{"changed": [...], "left": [...]} for an incremental sync; empty on initial sync.

        Woken syncs are the hot path (one message to a big room wakes every member), so
        each query runs only when the notifier says its stream moved for this user or
        room, and the "shares a room" test looks only at the candidates.
        """
        if ctx.since is None:
            return {"changed": [], "left": []}
        notifier = self.hs.notifier
        since_dl = ctx.since.get("device_lists", 0)
        now_dl = ctx.now.get("device_lists", 0)
        since_ev = ctx.since.get("events", 0)
        now_ev = ctx.now.get("events", 0)

        changed: set[str] = set()
        if now_dl > since_dl and notifier.changed_since(ctx.user_id, "device_lists", since_dl):
            changed = await self.changes_between(ctx.user_id, since_dl, now_dl)
        # Users who joined a room of ours, or whose rooms we joined: new to us.
        if ctx.newly_joined_room_ids:
            changed |= await self.store.members_of(ctx.newly_joined_room_ids)
        left: set[str] = set()
        moved = [
            r
            for r in ctx.joined_room_ids
            if notifier.changed_since(state_key_of(r), "events", since_ev)
        ]
        if now_ev > since_ev and moved:
            for user_id, membership in await self.store.membership_changes(moved, since_ev, now_ev):
                if membership in ("join", "invite"):
                    changed.add(user_id)
                else:
                    left.add(user_id)
        if ctx.newly_left_room_ids:
            left |= await self.store.members_of(ctx.newly_left_room_ids)
            if now_ev > since_ev:
                left |= {
                    u
                    for u, _ in await self.store.membership_changes(
                        ctx.newly_left_room_ids, since_ev, now_ev
                    )
                }
        candidates = changed | left
        if not candidates:
            return {"changed": [], "left": []}
        sharing = await self.store.sharing_a_room(ctx.user_id, candidates)
        sharing.add(ctx.user_id)
        changed &= sharing
        left = left - sharing
        return {"changed": sorted(changed), "left": sorted(left)}
