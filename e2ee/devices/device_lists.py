"""Device-list changes: recording them, and what a user is told of them between two
sync tokens (`report`: /sync's device_lists section and GET /keys/changes alike).

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

    async def mark_changed(
        self, user_ids: Iterable[str], work=None, *, viewer: str | None = None
    ) -> None:
        """Records a change for each user, committing `await work(conn)` with it.

        With `viewer`, only that user hears of the changes (their user-signing key, their
        signatures of others' keys: nobody else sees those, so no other user, local or
        remote, is told).

        The key writes run inside the stream write's own transaction rather than the
        other way round: the notifier learns of a position when that transaction ends,
        so it must be the outermost one, or a /sync could read before the commit.
        """
        users = sorted(set(user_ids))
        if not users:
            return
        wake = set(users) if viewer is None else {viewer}
        if viewer is None:
            for user_id in users:
                wake |= await self.memberships.users_sharing_room_with(user_id)
        servers: Collection[str] = ()
        async with self.hs.streams.write("device_lists", len(users)) as w:
            if work is not None:
                await work(w.conn)
            await self.store.add_changes(w.conn, w.positions, users, viewer)
            if self.outbox is not None and viewer is None:
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
        changed = await self.store.changed_between(since, now, user_id)
        if changed is None:
            changed = await self.memberships.users_sharing_room_with(user_id)
            changed.add(user_id)
        return changed

    async def report(
        self,
        user_id: str,
        since: dict[str, int],
        now: dict[str, int],
        *,
        scan_changes: bool = True,
        member_changes: Iterable[tuple[str, str]] = (),
        newly_joined: Collection[str] = (),
        newly_left: Collection[str] = (),
    ) -> dict[str, list[str]]:
        """{"changed": [...], "left": [...]} for `user_id` between two sync positions.

        `changed`: users whose devices changed (read only when `scan_changes`: /sync knows
        from its notifier when nothing did), users who joined or were invited into a
        room of `user_id` in between (`member_changes`: (user, membership) of the member
        events there) and everyone in rooms `user_id` newly joined; those that still
        share a room with `user_id`. `left`: users who left a room of theirs and everyone
        of `newly_left`, if they no longer share one.
        """
        since_ev, now_ev = since.get("events", 0), now.get("events", 0)
        since_dl, now_dl = since.get("device_lists", 0), now.get("device_lists", 0)
        changed: set[str] = set()
        if scan_changes and now_dl > since_dl:
            changed = await self.changes_between(user_id, since_dl, now_dl)
        if newly_joined:
            changed |= await self.memberships.members_of(newly_joined)
        left: set[str] = set()
        for other, membership in member_changes:
            (changed if membership in ("join", "invite") else left).add(other)
        if newly_left:
            left |= await self.memberships.members_of(newly_left)
            if now_ev > since_ev:
                left |= {
                    u
                    for u, _ in await self.memberships.membership_changes(
                        newly_left, since_ev, now_ev
                    )
                }
        candidates = changed | left
        if not candidates:
            return {"changed": [], "left": []}
        sharing = await self.memberships.sharing_a_room(user_id, candidates)
        sharing.add(user_id)
        return {"changed": sorted(changed & sharing), "left": sorted(left - sharing)}

    async def keys_changes(
        self, user_id: str, since: dict[str, int], to: dict[str, int]
    ) -> dict[str, list[str]]:
        """GET /keys/changes: what an incremental /sync from `since` to `to` reports in
        device_lists, with the user's room moves read from their member events."""
        joined = set(await self.memberships.joined_rooms(user_id))
        newly_joined: set[str] = set()
        newly_left: set[str] = set()
        since_ev, to_ev = since.get("events", 0), to.get("events", 0)
        if to_ev > since_ev:
            moves = await self.memberships.own_membership_moves(user_id, since_ev, to_ev)
            for room_id, (before, was_out) in moves.items():
                if room_id in joined and (before != "join" or was_out):
                    newly_joined.add(room_id)
                elif room_id not in joined:
                    newly_left.add(room_id)
        member_changes = (
            await self.memberships.membership_changes(sorted(joined), since_ev, to_ev)
            if joined and to_ev > since_ev
            else []
        )
        return await self.report(
            user_id,
            since,
            to,
            member_changes=member_changes,
            newly_joined=newly_joined,
            newly_left=newly_left,
        )
