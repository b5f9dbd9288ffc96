"""Delivering the appservice outbox: `PUT /_matrix/app/v1/transactions/{txnId}`, in order.

One task per appservice sends at a time, across processes too (a lease row in
appservice_state). A transaction carries the oldest queued rows (at most MAX_ITEMS);
the events are read when it is built, in the client format. When it fails the
appservice backs off exponentially (capped) and the very same transaction (same ID, same
rows) is retried: the appservice drops a transaction ID it has seen. The poller restarts
appservices whose backoff ended or whose queue another process (or an earlier run of
this one) left behind, so a restart resumes where the last run stopped.

MSC3202 appservices also get, in each transaction, the one-time key counts and unused
fallback key types of their users' devices, and the users whose device lists changed
since the last transaction they took (a device_lists stream position kept per
appservice, stored with the acknowledgement).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from homeserver.appservice.client import AppServiceClient, AppServiceError
from homeserver.appservice.registration import AppService
from homeserver.rooms.serialize import client_event
from storage.appservice import AppServiceStore, QueuedItem
from storage.e2ee_device_lists import DeviceListStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver
    from storage.streams import StreamChange

logger = logging.getLogger(__name__)

MAX_ITEMS = 100
# Streams whose change by another process may have queued something for an appservice.
_QUEUEING_STREAMS = frozenset({"events", "to_device", "typing", "receipts", "presence"})
MSC3202 = "org.matrix.msc3202"


def _now_ms() -> int:
    return int(time.time() * 1000)


class AppServiceSender:
    def __init__(
        self,
        hs: Homeserver,
        store: AppServiceStore,
        services: tuple[AppService, ...],
        client: AppServiceClient,
    ):
        self.hs = hs
        self.store = store
        self.services = {svc.id: svc for svc in services if svc.url}
        self.client = client
        self.device_lists = DeviceListStore(hs.db)
        self.owner = f"{hs.streams.instance}-{secrets.token_hex(4)}"
        # Tunable (tests shorten them).
        self.min_backoff_s = 2.0
        self.max_backoff_s = 600.0
        self.poll_interval_s = 10.0
        self.lease_s = 120.0
        self._tasks: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        self._poller: asyncio.Task | None = None
        self._poke = asyncio.Event()
        self.running = False

    async def start(self) -> None:
        if not self.services:
            return
        self.running = True
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop())
        previous = self.hs.streams.on_change

        def on_change(change: StreamChange) -> None:
            # Another process queued something (its own sender may hold the lease, or
            # may have died), or device lists moved (MSC3202): look at the queues.
            if (change.remote and change.stream in _QUEUEING_STREAMS) or (
                change.stream == "device_lists"
            ):
                self.poke()
            previous(change)

        self.hs.streams.on_change = on_change

    async def stop(self) -> None:
        self.running = False
        tasks = [t for t in (self._poller,) if t is not None] + list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._poller = None
        self._tasks.clear()
        if tasks:
            await self.store.release_all(self.owner)

    def poke(self) -> None:
        """Runs the poller now."""
        self._poke.set()

    def wake(self, as_ids: Iterable[str]) -> None:
        """Makes sure each appservice's sending task runs (or runs once more)."""
        if not self.running:
            return
        for as_id in as_ids:
            if as_id not in self.services:
                continue
            if as_id in self._tasks:
                self._again.add(as_id)
            else:
                task = asyncio.get_running_loop().create_task(self._run(as_id))
                self._tasks[as_id] = task

    async def _run(self, as_id: str) -> None:
        try:
            await self._send_all(self.services[as_id])
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("appservice sender for %s failed", as_id)
        finally:
            self._tasks.pop(as_id, None)
            if as_id in self._again and self.running:
                self._again.discard(as_id)
                self.wake([as_id])

    async def _send_all(self, svc: AppService) -> None:
        claimed = False
        try:
            while self.running:
                self._again.discard(svc.id)
                state = await self.store.state(svc.id)
                if state.retry_at_ts > _now_ms():
                    return  # backing off: the poller wakes us
                if not await self.store.claim(
                    svc.id, self.owner, _now_ms(), int(self.lease_s * 1000)
                ):
                    return  # another process is sending to it
                claimed = True
                device_lists, new_pos = await self._device_lists(svc, state.key_positions)
                txn_id, items = await self.store.next_transaction(
                    svc.id, MAX_ITEMS, force=bool(device_lists)
                )
                if txn_id is None:
                    if new_pos is not None and new_pos != state.key_positions:
                        await self.store.set_key_positions(svc.id, new_pos)
                    return
                body = await self._body(svc, items, device_lists)
                try:
                    await self.client.put_transaction(svc, txn_id, body)
                except AppServiceError as e:
                    await self._back_off(svc, state.failures + 1, e)
                    return
                await self.store.record_success(svc.id, [i.id for i in items], new_pos)
        finally:
            if claimed and self.running:
                await self.store.release(svc.id, self.owner)

    async def _back_off(self, svc: AppService, failures: int, error: AppServiceError) -> None:
        delay_ms = self.backoff_ms(failures)
        count = await self.store.record_failure(svc.id, _now_ms() + delay_ms)
        logger.info(
            "appservice %s: transaction failed (%s, %d in a row); retrying in %d ms",
            svc.id,
            error.status or "no answer",
            count,
            delay_ms,
        )

    def backoff_ms(self, failures: int) -> int:
        """The wait after the `failures`-th consecutive failure: doubling, capped."""
        delay = self.min_backoff_s * (2 ** max(0, failures - 1))
        return int(min(delay, self.max_backoff_s) * 1000)

    async def _body(
        self, svc: AppService, items: list[QueuedItem], device_lists: dict | None
    ) -> dict[str, Any]:
        event_ids = [i.event_id for i in items if i.kind == "event" and i.event_id]
        stored = await self.hs.event_store.get_events(event_ids) if event_ids else {}
        body: dict[str, Any] = {
            "events": [client_event(stored[e]) for e in event_ids if e in stored]
        }
        ephemeral = [orjson.loads(i.content) for i in items if i.kind == "ephemeral" and i.content]
        if svc.receive_ephemeral:
            body["ephemeral"] = ephemeral
            body["de.sorunome.msc2409.ephemeral"] = ephemeral
        if svc.receive_to_device:
            body["de.sorunome.msc2409.to_device"] = [
                orjson.loads(i.content) for i in items if i.kind == "to_device" and i.content
            ]
        if svc.msc3202:
            users = await self._device_users(svc)
            counts, fallback = await self.store.key_counts(users) if users else ({}, {})
            body[f"{MSC3202}.device_one_time_keys_count"] = counts
            # Synapse's spelling too, which some SDKs read.
            body[f"{MSC3202}.device_one_time_key_counts"] = counts
            body[f"{MSC3202}.device_unused_fallback_key_types"] = fallback
            body[f"{MSC3202}.device_lists"] = device_lists or {"changed": [], "left": []}
        return body

    async def _device_users(self, svc: AppService) -> list[str]:
        """The appservice's users that have a device with keys."""
        rows = await self.store.local_users_with_devices(":" + self.hs.server_name)
        return [u for u in rows if svc.is_user(u)]

    async def _device_lists(
        self, svc: AppService, since: tuple[int, int] | None
    ) -> tuple[dict | None, tuple[int, int] | None]:
        """MSC3202, as /sync tells a client: the users sharing a room with the appservice's
        devices whose device lists changed after `since` (device_lists, events positions),
        those who no longer share one, and the positions reached."""
        if not svc.msc3202:
            return None, None
        positions = await self.hs.streams.current_positions()
        now = (positions.get("device_lists", 0), positions.get("events", 0))
        if since is None or since == now:
            return None, now  # first run: the appservice's crypto starts from a full query
        own = await self._device_users(svc)
        if not own:
            return None, now
        members = self.hs.membership_store
        changed: set[str] = set()
        if now[0] > since[0]:
            found = await self.device_lists.changed_between(since[0], now[0])
            changed = (
                found
                if found is not None
                else await members.members_of(
                    {
                        room
                        for rooms in (await members.memberships_of(own)).values()
                        for room in rooms
                    }
                )
            )
        left = await self._left(own, since[1], now[1]) if now[1] > since[1] else set()
        sharing: set[str] = set(own)
        for user_id in own:
            sharing |= await members.sharing_a_room(user_id, changed | left)
        changed &= sharing
        left -= sharing
        if not changed and not left:
            return None, now
        return {"changed": sorted(changed), "left": sorted(left)}, now

    async def _left(self, own: list[str], since: int, now: int) -> set[str]:
        """Users who may have stopped sharing a room with the appservice's devices in
        (since, now]: those who left a room of theirs, and the members of rooms they left."""
        members = self.hs.membership_store
        rooms_of = await members.memberships_of(own)
        rooms = {room for by_room in rooms_of.values() for room in by_room}
        if not rooms:
            return set()
        candidates = {
            user
            for user, membership in await members.membership_changes(rooms, since, now)
            if membership not in ("join", "invite")
        }
        rooms_left = {
            room
            for by_room in rooms_of.values()
            for room, (membership, _event_id, ordering) in by_room.items()
            if membership in ("leave", "ban") and since < ordering <= now
        }
        if rooms_left:
            candidates |= await members.members_of(rooms_left)
        return candidates

    async def _poll_loop(self) -> None:
        while True:
            try:
                due = await self.store.services_due(list(self.services), _now_ms())
                msc3202 = [i for i, s in self.services.items() if s.msc3202]
                self.wake(a for a in sorted(set(due) | set(msc3202)) if a not in self._tasks)
            except Exception:
                logger.exception("appservice queue poll failed")
            self._poke.clear()
            try:
                await asyncio.wait_for(self._poke.wait(), self.poll_interval_s)
            except TimeoutError:
                pass
