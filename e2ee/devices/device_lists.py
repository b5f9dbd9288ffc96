"""Device-list changes: recording them (/sync reads them in homeserver/sync/streams/).

A change to a user's devices or cross-signing keys is one row on the device_lists
stream. It wakes the user and every local user sharing a room with them; a /sync then
reports the user in `changed` if they still share a room. Users who start sharing a
room appear in `changed` too (the syncing user has never fetched their keys), and users
who stop sharing every room appear in `left`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from storage.e2ee_device_lists import DeviceListStore
from storage.membership import MembershipStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver


class DeviceLists:
    def __init__(self, hs: Homeserver, store: DeviceListStore, memberships: MembershipStore):
        self.hs = hs
        self.store = store
        self.memberships = memberships
        # Called with the changed user IDs after commit; federation sends the EDUs.
        self.on_local_change: list = []

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
        async with self.hs.streams.write("device_lists", len(users)) as w:
            if work is not None:
                await work(w.conn)
            await self.store.add_changes(w.conn, w.positions, users)
            w.wake(users=wake)
        for callback in self.on_local_change:
            await callback(users)

    async def changes_between(self, since: int, now: int) -> set[str]:
        return await self.store.changed_between(since, now)
