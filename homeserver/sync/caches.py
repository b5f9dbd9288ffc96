"""What a woken /sync needs that changes far less often than it is asked for.

One message to a big room wakes every member's /sync; each would otherwise count the
room's members, pick heroes, load its power levels and the user's display name and
memberships again. These caches hold them in process memory until the notifier says the
room's state (or the user's membership) moved, which works across processes: other
processes' commits reach the notifier through LISTEN/NOTIFY with the same keys.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from homeserver.accounts.ignored import ignored_users
from homeserver.sync.notifier import Notifier, state_key_of
from storage.account_data import AccountDataStore
from storage.accounts import ProfileStore
from storage.events import EventStore
from storage.membership import MembershipStore
from storage.out_of_band import OutOfBandStore

# Heroes are the first five members other than the syncing user: keep one spare.
_HERO_CANDIDATES = 6


class _KeyedCache:
    """Values per key, each remembered with the events position it was read at and
    dropped once the notifier reports a change of its notifier key after that."""

    def __init__(
        self,
        notifier: Notifier,
        notifier_key: Callable[[str], str],
        size: int,
        stream: str = "events",
    ):
        self.notifier = notifier
        self.notifier_key = notifier_key
        self.size = size
        self.stream = stream
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    async def get_many(
        self, keys: Iterable[str], load: Callable[[list[str]], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}
        missing = []
        for key in keys:
            item = self._items.get(key)
            if item is not None and not self.notifier.changed_since(
                self.notifier_key(key), self.stream, item[0]
            ):
                self._items.move_to_end(key)
                found[key] = item[1]
            else:
                missing.append(key)
        if missing:
            # Read the position first: a change committed meanwhile invalidates the entry.
            position = self.notifier.positions[self.stream]
            loaded = await load(missing)
            for key in missing:
                value = loaded.get(key)
                found[key] = value
                self._items[key] = (position, value)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return found


def _user_key(user_id: str) -> str:
    return user_id


class SyncCaches:
    def __init__(
        self,
        notifier: Notifier,
        memberships: MembershipStore,
        events: EventStore,
        profiles: ProfileStore,
        out_of_band: OutOfBandStore,
        account_data: AccountDataStore,
    ):
        self.memberships_store = memberships
        self.account_data = account_data
        self.events = events
        self.profiles = profiles
        self.out_of_band = out_of_band
        self._summaries = _KeyedCache(notifier, state_key_of, 100_000)
        self._power_levels = _KeyedCache(notifier, state_key_of, 100_000)
        self._display_names = _KeyedCache(notifier, _user_key, 100_000)
        self._memberships = _KeyedCache(notifier, _user_key, 100_000)
        self._ignored = _KeyedCache(notifier, _user_key, 100_000, stream="account_data")

    async def memberships(self, user_id: str) -> dict[str, tuple[str, str, int]]:
        """room -> (membership, event id, stream ordering): the user's member events in
        current state. Each of them woke the user when it was stored."""
        found = await self._memberships.get_many([user_id], self._load_memberships)
        return found[user_id]

    async def _load_memberships(self, user_ids: list[str]) -> dict[str, dict]:
        out = await self.memberships_store.memberships_of(user_ids)
        # Invites and knocks in rooms we are not in (recording one wakes its user), where
        # newer than what current state says.
        for user_id in user_ids:
            memberships = out[user_id]
            for room_id, oob in (await self.out_of_band.for_user(user_id)).items():
                if room_id not in memberships or memberships[room_id][2] < oob.stream_ordering:
                    memberships[room_id] = (oob.membership, oob.event_id, oob.stream_ordering)
        return out

    async def ignored(self, user_id: str) -> frozenset[str]:
        """The users `user_id` ignores; a change of their account data wakes them."""
        found = await self._ignored.get_many([user_id], self._load_ignored)
        return found[user_id]

    async def _load_ignored(self, user_ids: list[str]) -> dict[str, frozenset[str]]:
        return {u: await ignored_users(self.account_data, u) for u in user_ids}

    async def room_summaries(self, room_ids: list[str]) -> dict[str, dict[str, Any]]:
        """room -> {"joined", "invited", "named", "candidates"}: member counts, whether the
        room has a name or canonical alias, and the first members by user ID."""
        return await self._summaries.get_many(room_ids, self._load_summaries)

    async def _load_summaries(self, room_ids: list[str]) -> dict[str, dict[str, Any]]:
        counts = await self.memberships_store.member_counts(room_ids)
        named = await self.events.rooms_with_state(
            room_ids, ("m.room.name", "m.room.canonical_alias")
        )
        unnamed = [r for r in room_ids if r not in named]
        # Heroes only matter for rooms that have neither a name nor a canonical alias.
        heroes = (
            await self.memberships_store.first_members(unnamed, _HERO_CANDIDATES) if unnamed else {}
        )
        return {
            r: {
                "joined": counts.get(r, (0, 0))[0],
                "invited": counts.get(r, (0, 0))[1],
                "named": r in named,
                "candidates": heroes.get(r, []),
            }
            for r in room_ids
        }

    async def power_levels(self, room_ids: list[str]) -> dict[str, dict | None]:
        return await self._power_levels.get_many(room_ids, self._load_power_levels)

    async def _load_power_levels(self, room_ids: list[str]) -> dict[str, dict]:
        return await self.events.state_contents(room_ids, "m.room.power_levels")

    async def display_name(self, user_id: str) -> str | None:
        """A display name change re-sends the user's member events, which wake them."""
        return (await self.display_names([user_id]))[user_id]

    async def display_names(self, user_ids: list[str]) -> dict[str, str | None]:
        return await self._display_names.get_many(user_ids, self.profiles.display_names)
