"""The outbound transaction queue: what we owe each destination, delivered in order.

PDUs and the EDUs that must not be lost (device lists, signing keys, to-device) are
queued in PostgreSQL (storage/federation_queue.py) in the very transaction that commits
what they announce (a transactional outbox: EventService calls `queue_events` inside its
write, the to-device and device-list code pass their transaction to `queue_edus`), so
neither a restart nor a crash right after the commit loses them; after the commit only
a wake-up happens, in memory. Typing, receipts and presence are ephemeral and wait in
memory, coalesced so that only the latest state per user and room is kept.

One task per destination sends at a time (across processes too: a lease row in
federation_destinations). A transaction carries at most 50 PDUs and 100 EDUs, oldest
first. When it fails the destination backs off exponentially (capped) and the same
transaction, with the same ID, is retried later: the poller restarts due destinations,
which also picks the queue up again after a restart; a request from the destination
ends its backoff at once (it is evidently back), which is the catch-up after an outage.
A destination the policy does not admit is never queued for, nor sent to.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from federation.client import FederationError
from federation.rooms import server_of
from homeserver.metrics import (
    federation_destination_failures,
    federation_transactions,
    federation_units_sent,
)
from storage.federation_queue import DestinationState, FederationQueueStore, QueuedRow

if TYPE_CHECKING:
    from federation.service import Federation
    from homeserver.app import Homeserver
    from storage.events import PersistItem

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
# Keeps a transaction far below the receiver's request size limit (10 MiB for us).
MAX_TXN_EDU_BYTES = 4 * 1024 * 1024
# EDUs that may be lost on a restart: kept in memory only, newest per key.
EPHEMERAL_EDU_TYPES = frozenset({"m.typing", "m.receipt", "m.presence"})
MAX_EPHEMERAL_PER_DESTINATION = 500
# Answers that retrying cannot change: the transaction is dropped instead of wedging
# the queue behind it.
_PERMANENT_STATUSES = frozenset({400, 404, 405, 413})
_LISTENER_ATTEMPTS = 4


def _now_ms() -> int:
    return int(time.time() * 1000)


class FederationSender:
    def __init__(self, hs: Homeserver, federation: Federation):
        self.hs = hs
        self.server_name = hs.server_name
        self.policy = federation.policy
        self.client = federation.client
        self.store = FederationQueueStore(hs.db)
        self.owner = f"{hs.streams.instance}-{secrets.token_hex(4)}"
        # Tunable (tests shorten them): first delay after a failure, its cap, how often
        # due destinations are looked for, how long a sending lease lasts.
        self.min_backoff_s = 5.0
        self.max_backoff_s = 3600.0
        self.poll_interval_s = 10.0
        self.lease_s = 120.0
        self._tasks: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        # Backoffs known to this process, so that a typing EDU for a destination that is
        # down costs no query; the poller looks in the database.
        self._backoff_until: dict[str, int] = {}
        self._ephemeral: dict[str, OrderedDict[Hashable, dict]] = {}
        # Rooms whose membership changed and the (room, user) of new joins, for the
        # listeners; None ends the task.
        self._membership_changes: asyncio.Queue[tuple[set[str], list[tuple[str, str]]] | None] = (
            asyncio.Queue()
        )
        # Called with the rooms whose membership changed in a batch of persisted events
        # (local or from other servers): the device-list cache forgets users we no longer
        # share a room with.
        self.membership_listeners: list = []
        # Called with the (room, user) pairs of those events that are joins of users not
        # joined before: presence goes to the servers that newly share a room with them.
        self.join_listeners: list = []
        self._poller: asyncio.Task | None = None
        self._membership_task: asyncio.Task | None = None
        self._poke = asyncio.Event()
        self.running = False

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.policy.federates:
            return
        self.running = True
        loop = asyncio.get_running_loop()
        self._poller = loop.create_task(self._poll_loop())
        self._membership_task = loop.create_task(self._membership_loop())

    async def stop(self) -> None:
        self.running = False
        if self._membership_task is not None:
            # Let the listeners see the changes committed so far (they keep caches right).
            self._membership_changes.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._membership_task), 10)
            except (TimeoutError, asyncio.CancelledError):
                logger.warning("federation: stopped before every membership listener ran")
        tasks = [t for t in (self._poller, self._membership_task) if t is not None]
        tasks += self._tasks.values()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._poller = self._membership_task = None
        self._tasks.clear()
        if tasks:
            # Another process (or our successor) may send at once rather than after the
            # lease runs out.
            await self.store.release_all(self.owner)

    # --- queueing ---------------------------------------------------------------------------

    def admitted(self, destinations: Iterable[str]) -> list[str]:
        """The destinations we may send to: admitted by policy, and not ourselves."""
        return sorted(
            {d for d in destinations if d != self.server_name and self.policy.is_allowed(d)}
        )

    async def send_edu(
        self,
        destinations: Iterable[str],
        edu_type: str,
        content: dict,
        *,
        key: Hashable | None = None,
        conn=None,
    ) -> list[str]:
        """Queues an EDU; returns the destinations it is queued for. Ephemeral types wait
        in memory, where a newer EDU with the same `key` replaces an older one. The others
        are stored: in `conn`'s transaction when given (the caller then calls `wake` with
        the answer after its commit), else in a transaction of their own, before this
        returns."""
        dests = self.admitted(destinations)
        if not dests or not self.policy.federates:
            return []
        if edu_type in EPHEMERAL_EDU_TYPES:
            if not self.running:
                return []
            edu = {"edu_type": edu_type, "content": content}
            for d in dests:
                buffer = self._ephemeral.setdefault(d, OrderedDict())
                k = (edu_type, key) if key is not None else (edu_type, secrets.token_hex(8))
                buffer.pop(k, None)
                buffer[k] = edu
                while len(buffer) > MAX_EPHEMERAL_PER_DESTINATION:
                    buffer.popitem(last=False)
        elif conn is not None:
            return await self.queue_edus(conn, dests, [(edu_type, content)])
        else:
            async with self.hs.db.acquire() as own, own.transaction():
                await self.queue_edus(own, dests, [(edu_type, content)])
        self.wake(dests)
        return dests

    async def queue_edus(
        self, conn, destinations: Iterable[str], edus: list[tuple[str, dict]]
    ) -> list[str]:
        """Stores EDUs in the caller's transaction; returns the destinations they are
        queued for: call `wake` with them after the commit."""
        dests = self.admitted(destinations) if self.policy.federates else []
        encoded = [(t, orjson.dumps(c).decode()) for t, c in edus]
        await self.store.enqueue(conn, dests, _now_ms(), edus=encoded)
        return dests if encoded else []

    # --- the outbox of events persisted here ------------------------------------------------

    async def queue_events(
        self, conn, items: Sequence[PersistItem], relayed: Mapping[str, str]
    ) -> list[str]:
        """Called by EventService in the transaction that persists `items`, before it
        writes them: the room's current state is still the one before the batch. Queues
        each event built here (and each of `relayed`, {event ID: origin}: events that only
        we received, from their origin) for the servers in its room; returns the
        destinations to `events_committed` after the commit.

        An event goes to the servers joined before it: before the batch, plus those that
        joined earlier in the batch; a server joining after it does not see it (it may not
        be allowed to by history_visibility). The target of a kick or ban hears of it too.
        An invite reached its invitee's server through /invite already."""
        if not self.policy.federates:
            return []
        outgoing = {
            it.event_id
            for it in items
            if it.event_id in relayed
            or (
                not it.federated
                and (
                    server_of(it.event.get("sender", "")) == self.server_name
                    # Built here in a remote inviter's name (rooms/third_party_invites.py).
                    or _third_party_invite(it.event)
                )
            )
        }
        if not outgoing:
            return []
        rooms = {it.room_id for it in items if it.event_id in outgoing}
        servers = await self.hs.membership_store.servers_in_rooms(rooms, conn)
        by_destination: dict[str, list[str]] = {}
        for it in items:
            if it.room_id not in rooms:
                continue
            joined = servers.setdefault(it.room_id, set())
            if it.event_id in outgoing:
                dests = set(joined)
                target = _kicked_or_banned(it.event)
                if target is not None:
                    dests.add(server_of(target))
                dests.discard(relayed.get(it.event_id, self.server_name))
                for d in self.admitted(dests):
                    by_destination.setdefault(d, []).append(it.event_id)
            joined.update(server_of(user_id) for user_id in _joins(it))
        now = _now_ms()
        for dest, event_ids in by_destination.items():
            await self.store.enqueue(conn, [dest], now, event_ids=event_ids)
        return sorted(by_destination)

    def events_committed(self, items: Sequence[PersistItem], destinations: Iterable[str]) -> None:
        """Called by EventService after the transaction of `queue_events` commits: wakes
        the destinations, and hands the rooms whose membership changed to
        `membership_listeners` (a cache: in memory, in commit order, by one task)."""
        self.wake(destinations)
        if not self.running:
            return
        rooms = {
            it.room_id
            for it in items
            if it.event.get("type") == "m.room.member"
            # State resolution may change memberships through another event.
            or any(d[0] == "m.room.member" for d in it.current_state_delta or ())
        }
        joins = [(it.room_id, it.event["state_key"]) for it in items if _new_join(it)]
        if rooms or joins:
            self._membership_changes.put_nowait((rooms, joins))

    async def _membership_loop(self) -> None:
        done = False
        while not done:
            rooms: set[str] = set()
            joins: list[tuple[str, str]] = []
            entry = await self._membership_changes.get()
            while True:
                if entry is None:
                    done = True
                else:
                    rooms |= entry[0]
                    joins += entry[1]
                if self._membership_changes.empty():
                    break
                entry = self._membership_changes.get_nowait()
            if joins and not done:
                try:
                    for join_listener in self.join_listeners:
                        await join_listener(joins)
                except Exception:  # presence is best effort: no retry
                    logger.exception("join listener failed")
            if not rooms:
                continue
            for attempt in range(_LISTENER_ATTEMPTS):
                try:
                    for listener in self.membership_listeners:
                        await listener(rooms)
                    break
                except Exception:
                    logger.exception("membership listener failed")
                    if attempt + 1 < _LISTENER_ATTEMPTS and not done:
                        await asyncio.sleep(2**attempt)

    # --- sending ----------------------------------------------------------------------------

    def wake(self, destinations: Iterable[str]) -> None:
        """Makes sure each destination's sending task runs (or runs once more)."""
        if not self.running:
            return
        now = _now_ms()
        for dest in destinations:
            if self._backoff_until.get(dest, 0) > now:
                continue
            if dest in self._tasks:
                self._again.add(dest)
            else:
                task = asyncio.get_running_loop().create_task(self._run(dest))
                self._tasks[dest] = task

    async def destination_is_back(self, destination: str) -> None:
        """The destination just talked to us: end its backoff and send what waits."""
        if not self.running:
            return
        self._backoff_until.pop(destination, None)
        if await self.store.reset_backoff(destination):
            logger.info("federation: %s is back; catching up", destination)
            self.wake([destination])

    async def _run(self, dest: str) -> None:
        try:
            await self._send_all(dest)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("federation sender for %s failed", dest)
        finally:
            self._tasks.pop(dest, None)
            if dest in self._again and self.running:
                self._again.discard(dest)
                self.wake([dest])

    async def _send_all(self, dest: str) -> None:
        if not self.policy.is_allowed(dest):
            dropped = await self.store.drop_destination(dest)
            self._ephemeral.pop(dest, None)
            logger.warning("federation: dropped %d items for non-admitted %s", dropped, dest)
            return
        claimed = False
        try:
            while self.running:
                self._again.discard(dest)
                state = await self.store.state(dest)
                if state.retry_at_ts > _now_ms():
                    # Backing off: the poller, or the destination's return, wakes us.
                    self._backoff_until[dest] = state.retry_at_ts
                    return
                lease_ms = int(self.lease_s * 1000)
                if not await self.store.claim(dest, self.owner, _now_ms(), lease_ms):
                    return  # another process is sending to it
                claimed = True
                txn_id, rows, ephemeral = await self._next_transaction(dest)
                if not rows and not ephemeral:
                    return
                if not await self._send_transaction(dest, txn_id, rows, ephemeral, state):
                    return
        finally:
            # On cancellation (stop) the lease is released by stop() for every destination.
            if claimed and self.running:
                await self.store.release(dest, self.owner)

    async def _next_transaction(self, dest: str) -> tuple[str, list[QueuedRow], list[dict]]:
        """The in-flight transaction if one failed before (same ID, same rows), else the
        oldest queued PDUs and EDUs topped up with ephemeral EDUs."""
        txn_id, rows = await self.store.in_flight(dest)
        if txn_id is not None:
            return txn_id, rows, []
        pdus, edus = await self.store.next_rows(dest, MAX_PDUS, MAX_EDUS)
        size = 0
        kept: list[QueuedRow] = []
        for row in edus:
            size += len(row.edu_content or "")
            if kept and size > MAX_TXN_EDU_BYTES:
                break
            kept.append(row)
        ephemeral: list[dict] = []
        buffer = self._ephemeral.get(dest)
        while buffer and len(kept) + len(ephemeral) < MAX_EDUS:
            ephemeral.append(buffer.popitem(last=False)[1])
        if buffer is not None and not buffer:
            self._ephemeral.pop(dest, None)
        txn_id = f"{_now_ms()}_{secrets.token_hex(4)}"
        rows = pdus + kept
        if rows:
            await self.store.assign_txn([r.id for r in rows], txn_id)
        return txn_id, rows, ephemeral

    async def _send_transaction(
        self,
        dest: str,
        txn_id: str,
        rows: list[QueuedRow],
        ephemeral: list[dict],
        state: DestinationState,
    ) -> bool:
        """Sends one transaction; True when the destination took it (go on with the next)."""
        pdu_ids = [r.event_id for r in rows if r.event_id is not None]
        stored = await self.hs.event_store.get_events(pdu_ids) if pdu_ids else {}
        body: dict[str, Any] = {
            "origin": self.server_name,
            "origin_server_ts": _now_ms(),
            "pdus": [stored[i].event for i in pdu_ids if i in stored],
        }
        edus = [
            {"edu_type": r.edu_type, "content": orjson.loads(r.edu_content or "{}")}
            for r in rows
            if r.edu_type is not None
        ] + ephemeral
        if edus:
            body["edus"] = edus
        path = f"/_matrix/federation/v1/send/{quote(txn_id, safe='')}"
        try:
            answer = await self.client.put_json(dest, path, body)
        except FederationError as e:
            if e.status in _PERMANENT_STATUSES:
                federation_transactions.labels("sent", "dropped").inc()
                logger.warning(
                    "federation: %s refused transaction %s (%s); dropping its %d items",
                    dest,
                    txn_id,
                    e.status,
                    len(rows) + len(ephemeral),
                )
                await self.store.delete_rows([r.id for r in rows])
                return True
            federation_transactions.labels("sent", "failed").inc()
            federation_destination_failures.labels(dest).inc()
            await self._back_off(dest, state.failures + 1, ephemeral, e)
            return False
        federation_transactions.labels("sent", "ok").inc()
        federation_units_sent.labels("pdu").inc(len(body["pdus"]))
        federation_units_sent.labels("edu").inc(len(edus))
        await self.store.record_success(dest, [r.id for r in rows], _now_ms())
        self._backoff_until.pop(dest, None)
        failed = _failed_pdus(answer)
        if failed:
            logger.info("federation: %s rejected %d of %d PDUs", dest, failed, len(pdu_ids))
        return True

    async def _back_off(self, dest: str, failures: int, ephemeral: list[dict], error) -> None:
        # Ephemeral EDUs were not stored: they go back in front of anything newer.
        if ephemeral:
            buffer = self._ephemeral.setdefault(dest, OrderedDict())
            for edu in reversed(ephemeral):
                k = ("retry", secrets.token_hex(8))
                buffer[k] = edu
                buffer.move_to_end(k, last=False)
            while len(buffer) > MAX_EPHEMERAL_PER_DESTINATION:
                buffer.popitem(last=False)
        delay_ms = self.backoff_ms(failures)
        retry_at = _now_ms() + delay_ms
        count = await self.store.record_failure(dest, retry_at)
        self._backoff_until[dest] = retry_at
        logger.info(
            "federation: sending to %s failed (%s, %d in a row); retrying in %d ms",
            dest,
            error.status or "no answer",
            count,
            delay_ms,
        )

    def backoff_ms(self, failures: int) -> int:
        """The wait after the `failures`-th consecutive failure: doubling, capped."""
        delay = self.min_backoff_s * (2 ** max(0, failures - 1))
        return int(min(delay, self.max_backoff_s) * 1000)

    # --- the poller -------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        """Restarts destinations whose backoff ended, or whose queue another process (or
        an earlier run of this one) left behind; prunes old inbound idempotency records."""
        rounds = 0
        while True:
            try:
                due = set(await self.store.destinations_due(_now_ms()))
                # Ephemeral EDUs that arrived during a backoff wait in memory only.
                due |= set(self._ephemeral)
                self.wake(d for d in sorted(due) if d not in self._tasks)
                if rounds % 360 == 0:
                    now = _now_ms()
                    await self.store.prune_inbound(now - 86_400_000, now - 7 * 86_400_000)
            except Exception:
                logger.exception("federation queue poll failed")
            rounds += 1
            self._poke.clear()
            try:
                await asyncio.wait_for(self._poke.wait(), self.poll_interval_s)
            except TimeoutError:
                pass

    def poke(self) -> None:
        """Runs the poller now (tests, and after the poll interval was changed)."""
        self._poke.set()


def _failed_pdus(answer: Any) -> int:
    pdus = answer.get("pdus") if isinstance(answer, dict) else None
    if not isinstance(pdus, dict):
        return 0
    return sum(1 for r in pdus.values() if isinstance(r, dict) and "error" in r)


def _third_party_invite(event: dict) -> bool:
    content = event.get("content")
    return (
        event.get("type") == "m.room.member"
        and isinstance(content, dict)
        and content.get("membership") == "invite"
        and "third_party_invite" in content
    )


def _kicked_or_banned(event: dict) -> str | None:
    """The user another member kicks or bans (or whose invite is withdrawn) by `event`."""
    target = event.get("state_key")
    content = event.get("content")
    if (
        event.get("type") == "m.room.member"
        and isinstance(target, str)
        and target != event.get("sender")
        and isinstance(content, dict)
        and content.get("membership") in ("leave", "ban")
    ):
        return target
    return None


def _joins(item: PersistItem) -> list[str]:
    """The users whom `item` makes joined members of its room's current state."""
    if item.current_state_delta is not None:
        return [
            sk for t, sk, _, m in item.current_state_delta if t == "m.room.member" and m == "join"
        ]
    event = item.event
    content = event.get("content")
    if (
        event.get("type") == "m.room.member"
        and isinstance(event.get("state_key"), str)
        and isinstance(content, dict)
        and content.get("membership") == "join"
    ):
        return [event["state_key"]]
    return []


def _new_join(item: PersistItem) -> bool:
    """A join of a user who was not joined before it (not a profile change)."""
    event = item.event
    if event.get("type") != "m.room.member" or not isinstance(event.get("state_key"), str):
        return False
    if (event.get("content") or {}).get("membership") != "join":
        return False
    prev = (item.unsigned or {}).get("prev_content")
    return not (isinstance(prev, dict) and prev.get("membership") == "join")
