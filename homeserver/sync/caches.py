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
from typing import TYPE_CHECKING, Any

from homeserver.jsonutil import loads
from homeserver.sync.notifier import state_key_of

if TYPE_CHECKING:
    from homeserver.app import Homeserver

# Heroes are the first five members other than the syncing user: keep one spare.
_HERO_CANDIDATES = 6


class _KeyedCache:
    """Values per key, each remembered with the events position it was read at and
    dropped once the notifier reports a change of its notifier key after that."""

    def __init__(self, hs: Homeserver, notifier_key: Callable[[str], str], size: int):
        self.notifier = hs.notifier
        self.notifier_key = notifier_key
        self.size = size
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    async def get_many(
        self, keys: Iterable[str], load: Callable[[list[str]], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}
        missing = []
        for key in keys:
            item = self._items.get(key)
            if item is not None and not self.notifier.changed_since(
                self.notifier_key(key), "events", item[0]
            ):
                self._items.move_to_end(key)
                found[key] = item[1]
            else:
                missing.append(key)
        if missing:
            # Read the position first: a change committed meanwhile invalidates the entry.
            position = self.notifier.positions["events"]
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
    def __init__(self, hs: Homeserver):
        self.hs = hs
        self._summaries = _KeyedCache(hs, state_key_of, 100_000)
        self._power_levels = _KeyedCache(hs, state_key_of, 100_000)
        self._display_names = _KeyedCache(hs, _user_key, 100_000)
        self._memberships = _KeyedCache(hs, _user_key, 100_000)

    async def memberships(self, user_id: str) -> dict[str, tuple[str, str, int]]:
        """room -> (membership, event id, stream ordering): the user's member events in
        current state. Each of them woke the user when it was stored."""
        found = await self._memberships.get_many([user_id], self._load_memberships)
        return found[user_id]

    async def _load_memberships(self, user_ids: list[str]) -> dict[str, dict]:
        rows = await self.hs.db.fetch(
            "SELECT c.state_key, c.room_id, c.membership, c.event_id, e.stream_ordering"
            " FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.member' AND c.state_key = ANY($1)",
            user_ids,
        )
        out: dict[str, dict] = {u: {} for u in user_ids}
        for r in rows:
            out[r["state_key"]][r["room_id"]] = (
                r["membership"],
                r["event_id"],
                r["stream_ordering"],
            )
        # Invites and knocks in rooms we are not in (recording one wakes its user), where
        # newer than what current state says.
        for user_id in user_ids:
            memberships = out[user_id]
            for room_id, oob in (await self.hs.out_of_band.for_user(user_id)).items():
                if room_id not in memberships or memberships[room_id][2] < oob.stream_ordering:
                    memberships[room_id] = (oob.membership, oob.event_id, oob.stream_ordering)
        return out

    async def room_summaries(self, room_ids: list[str]) -> dict[str, dict[str, Any]]:
        """room -> {"joined", "invited", "named", "candidates"}: member counts, whether the
        room has a name or canonical alias, and the first members by user ID."""
        return await self._summaries.get_many(room_ids, self._load_summaries)

    async def _load_summaries(self, room_ids: list[str]) -> dict[str, dict[str, Any]]:
        db = self.hs.db
        out = {r: {"joined": 0, "invited": 0, "named": False, "candidates": []} for r in room_ids}
        for r in await db.fetch(
            "SELECT room_id, membership, count(*) AS n FROM current_state"
            " WHERE room_id = ANY($1) AND type = 'm.room.member'"
            " AND membership IN ('join', 'invite') GROUP BY room_id, membership",
            room_ids,
        ):
            out[r["room_id"]]["joined" if r["membership"] == "join" else "invited"] = r["n"]
        for r in await db.fetch(
            "SELECT DISTINCT room_id FROM current_state WHERE room_id = ANY($1)"
            " AND type IN ('m.room.name', 'm.room.canonical_alias') AND state_key = ''",
            room_ids,
        ):
            out[r["room_id"]]["named"] = True
        unnamed = [r for r in room_ids if not out[r]["named"]]
        if unnamed:
            # A few rows per room through the index, however big the room.
            for r in await db.fetch(
                "SELECT r.room_id, h.state_key FROM unnest($1::text[]) AS r(room_id)"
                " CROSS JOIN LATERAL (SELECT m.state_key FROM current_state m"
                "   WHERE m.room_id = r.room_id AND m.type = 'm.room.member'"
                "   AND m.membership IN ('join', 'invite') ORDER BY m.state_key LIMIT $2) h",
                unnamed,
                _HERO_CANDIDATES,
            ):
                out[r["room_id"]]["candidates"].append(r["state_key"])
        return out

    async def power_levels(self, room_ids: list[str]) -> dict[str, dict | None]:
        return await self._power_levels.get_many(room_ids, self._load_power_levels)

    async def _load_power_levels(self, room_ids: list[str]) -> dict[str, dict]:
        rows = await self.hs.db.fetch(
            "SELECT c.room_id, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = ANY($1) AND c.type = 'm.room.power_levels' AND c.state_key = ''",
            room_ids,
        )
        return {r["room_id"]: loads(r["json"]).get("content", {}) for r in rows}

    async def display_name(self, user_id: str) -> str | None:
        """A display name change re-sends the user's member events, which wake them."""
        found = await self._display_names.get_many([user_id], self._load_display_names)
        return found[user_id]

    async def _load_display_names(self, user_ids: list[str]) -> dict[str, str | None]:
        rows = await self.hs.db.fetch(
            "SELECT user_id, displayname FROM profiles WHERE user_id = ANY($1)", user_ids
        )
        return {r["user_id"]: r["displayname"] for r in rows}
