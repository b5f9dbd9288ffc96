"""Device-list changes: recording them (/sync reads them in homeserver/sync/streams/).

A change to a user's devices or cross-signing keys is one row on the device_lists
stream. It wakes the user and every local user sharing a room with them; a /sync then
reports the user in `changed` if they still share a room. Users who start sharing a
room appear in `changed` too (the syncing user has never fetched their keys), and users
who stop sharing every room appear in `left`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from storage.e2ee_device_lists import DeviceListStore
from storage.membership import MembershipStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver


class DeviceListOutbox(Protocol):
    """Tells other servers of changes to local users' devices (the federation package):
    `queue` stores the EDUs in the transaction that records the change, and returns the
    servers to `wake` after its commit."""

    async def queue(self, conn: Any, user_ids: list[str]) -> Collection[str]: ...

    def wake(self, servers: Collection[str]) -> None: ...


class DeviceLists:
    def __init__(
        self,
        hs: Homeserver,
        store: DeviceListStore,
        memberships: MembershipStore,
        outbox: DeviceListOutbox | None = None,
    ):
        self.hs = hs
        self.store = store
        self.memberships = memberships
        # Federation's, when this server federates.
        self.outbox = outbox

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
            wake |= await self.memberships.users_sharing_room_with(user_id)
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
            changed = await self.memberships.users_sharing_room_with(user_id)
            changed.add(user_id)
        return changed
