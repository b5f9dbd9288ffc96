"""Per-request lookups kept in process memory, dropped when any process changes them.

Every authenticated request looked its access token up (a round trip), and every /sync
counted the device's one-time keys (another). Both are cached here, per process, and
invalidated through PostgreSQL: triggers on the tables behind them (migration 1600) NOTIFY
`hs_invalidate` at commit, whichever code path or process wrote the rows, and every
process LISTENs on it (storage/database.py). The same channel carries the IDs of events
whose stored form changed (migration 1891: redacted, erased, purged), for the event cache
(storage/events.py), which is dropped too when the LISTEN connection comes back.

Three rules keep a cache from serving what was changed:
- a fill only lands if no invalidation arrived while it was loading (a generation
  counter): the read may have seen the row before the change committed;
- while the LISTEN connection is down nothing is served or filled (notifications sent
  meanwhile are lost), and when it is back everything is dropped;
- a request that changes credentials (logout, device deletion, password change,
  deactivation, admin actions) answers only once this process has heard its own
  invalidations back (`barrier`): notifications arrive in commit order, so a NOTIFY sent
  after the commit and heard back means this process has dropped the entries, and every
  other listener has been handed the same notifications by PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import orjson

from homeserver.metrics import process_cache_lookups
from homeserver.slim_multimap import SlimMultiMap
from storage.database import INVALIDATE_CHANNEL, Database
from storage.devices import DeviceStore
from storage.e2ee_keys import E2EKeyStore

logger = logging.getLogger(__name__)

SESSIONS_CACHE_SIZE = 100_000
KEY_STATUS_CACHE_SIZE = 100_000
# How long a credential-changing request waits for its invalidations to come back.
BARRIER_TIMEOUT_S = 2.0

# Requests that change what the caches hold, answered only after `barrier`: logout,
# device deletion, password change, deactivation, key upload and claim, and every admin
# API write (locks, suspensions, deactivations, device deletions, rate-limit overrides).
_CHANGING_PATHS = re.compile(
    r"/_matrix/client/[^/]+/(?:logout(?:/all)?|delete_devices|devices/[^/]+"
    r"|account/(?:password|deactivate)|keys/(?:upload|claim))$"
    r"|/_synapse/admin/"
)


# The renewal link of account validity is a GET (it is clicked in a mail).
_RENEWAL_PATH = "/_matrix/client/unstable/account_validity/renew"


def changes_cached(method: str, path: str) -> bool:
    """Whether a request may change what UserCaches holds (see barrier)."""
    if method == "GET":
        return path == _RENEWAL_PATH
    return method in ("POST", "PUT", "DELETE") and _CHANGING_PATHS.match(path) is not None


class InvalidatedCache:
    """A bounded LRU map whose entries carry a tag (a user, a device); `invalidate(tag)`
    drops every entry with that tag. Invalid while `usable()` says no."""

    def __init__(self, name: str, size: int, usable: Callable[[], bool]):
        self.size = size
        self.usable = usable
        self._items: OrderedDict[Hashable, tuple[Hashable, Any]] = OrderedDict()
        # Most tags (a user) have one entry (a token): a lone key is held bare.
        self._by_tag: SlimMultiMap[Hashable, Hashable] = SlimMultiMap()
        # Bumped by every invalidation: a fill that began before one may hold what it
        # dropped, and is discarded.
        self.generation = 0
        self._hits = process_cache_lookups.labels(name, "hit")
        self._misses = process_cache_lookups.labels(name, "miss")

    def __len__(self) -> int:
        return len(self._items)

    async def get(
        self, key: Hashable, load: Callable[[], Awaitable[tuple[Hashable, Any] | None]]
    ) -> Any:
        """The cached value of `key`, else `load()`'s (tag, value), cached when the load
        overlapped no invalidation; None (not cached) when `load()` finds nothing."""
        usable = self.usable()
        if usable:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self._hits.inc()
                return item[1]
        self._misses.inc()
        generation = self.generation
        loaded = await load()
        if loaded is None:
            return None
        tag, value = loaded
        if usable and self.usable() and generation == self.generation:
            self._put(key, tag, value)
        return value

    def _put(self, key: Hashable, tag: Hashable, value: Any) -> None:
        self._drop(key)
        self._items[key] = (tag, value)
        self._by_tag.add(tag, key)
        while len(self._items) > self.size:
            self._drop(next(iter(self._items)))

    def _drop(self, key: Hashable) -> None:
        item = self._items.pop(key, None)
        if item is None:
            return
        self._by_tag.discard(item[0], key)

    def invalidate(self, tag: Hashable) -> None:
        self.generation += 1
        for key in self._by_tag.pop(tag):
            self._items.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._items.clear()
        self._by_tag.clear()


class UserCaches:
    """Access tokens' sessions and devices' key counts, for every request and /sync."""

    def __init__(self, db: Database, devices: DeviceStore, keys: E2EKeyStore):
        self.db = db
        self.devices = devices
        self.keys = keys
        usable = self._usable
        # token hash -> the session row (tagged with its user).
        self.sessions = InvalidatedCache("sessions", SESSIONS_CACHE_SIZE, usable)
        # (user, device) -> (one-time key counts, unused fallback key types).
        self.key_status_cache = InvalidatedCache("key_counts", KEY_STATUS_CACHE_SIZE, usable)
        # Told the ID of each event whose stored form changed in any process (redacted,
        # erased, purged: migration 1891): the composition root points it at the event
        # cache, which this module does not own.
        self.on_event_changed: Callable[[str], None] | None = None
        self._barrier_ids = itertools.count(1)
        self._barriers: dict[str, asyncio.Future] = {}
        self._instance = uuid.uuid4().hex[:12]

    def _usable(self) -> bool:
        return self.db.listening

    def register(self) -> None:
        """Hears the invalidation channel (before Database.listen opens the connection)."""
        self.db.add_channel(INVALIDATE_CHANNEL, self.on_notify)

    async def session(self, token_hash: bytes):
        """The session row of an access token (DeviceStore.session_of_token), or None."""

        async def load():
            row = await self.devices.session_of_token(token_hash)
            return None if row is None else (("t", row["user_id"]), row)

        return await self.sessions.get(token_hash, load)

    async def key_status(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """One-time key counts and unused fallback key types of a device (copies)."""
        tag = ("k", user_id, device_id)

        async def load():
            return tag, await self.keys.key_status(user_id, device_id)

        counts, fallback = await self.key_status_cache.get(tag, load)
        return dict(counts), list(fallback)

    def on_notify(self, payload: str) -> None:
        try:
            message = orjson.loads(payload)
            kind = message[0]
        except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
            logger.warning("ignoring a malformed invalidation")
            return
        if kind == "t":
            self.sessions.invalidate(("t", message[1]))
        elif kind == "k":
            self.key_status_cache.invalidate(("k", message[1], message[2]))
        elif kind == "e":
            if self.on_event_changed is not None:
                self.on_event_changed(message[1])
        elif kind == "b":
            fut = self._barriers.pop(message[1], None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        """Everything: after the LISTEN connection was lost, invalidations may be too."""
        self.sessions.clear()
        self.key_status_cache.clear()

    async def barrier(self) -> None:
        """Returns once this process has heard every invalidation committed before the
        call (a NOTIFY of our own, heard back: notifications arrive in commit order)."""
        if not self.db.listening:
            return  # nothing is served from the caches meanwhile
        barrier_id = f"{self._instance}.{next(self._barrier_ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._barriers[barrier_id] = fut
        try:
            await self.db.notify(INVALIDATE_CHANNEL, orjson.dumps(["b", barrier_id]).decode())
            await asyncio.wait_for(fut, BARRIER_TIMEOUT_S)
        except TimeoutError:
            # The LISTEN connection is stuck: drop everything rather than trust it.
            logger.warning("invalidation barrier timed out; clearing process caches")
            self.clear()
        finally:
            self._barriers.pop(barrier_id, None)
