"""Notifications: evaluating each new event's push rules for the room's local users,
keeping those that notify (GET /notifications), and sending them to the users' http
pushers (push gateway API: `POST /_matrix/push/v1/notify` at the pusher's data.url).

One process at a time does this (a lease row in push_worker_state), following the events
stream from a stored position, so a restart resumes where the last run stopped and two
workers never notify twice. The stream is read after commit, so event persistence never
waits for it. Sending runs in one task per pusher, fed through a bounded queue: a slow
or dead gateway delays only its own pushers. A failed send is retried with backoff a few
times, then dropped (a phone notification hours late is worse than none); a gateway
answering that a pushkey is `rejected` gets that pusher deleted (push.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from homeserver.metrics import push_rule_evaluations
from homeserver.push.evaluator import PushContext, highlights, notifies
from storage.push_notifications import PushNotificationStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver
    from storage.streams import StreamChange

logger = logging.getLogger(__name__)

BATCH = 200
YIELD_EVERY = 200
# Notifications waiting per pusher; beyond, the oldest-first queue drops the newest.
QUEUE_SIZE = 100
MAX_ATTEMPTS = 5


def _now_ms() -> int:
    return int(time.time() * 1000)


def tweaks(actions: list) -> dict:
    out: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            name = action["set_tweak"]
            out[name] = action.get("value", True if name == "highlight" else None)
    return {k: v for k, v in out.items() if v is not None}


def _device(pusher: dict, actions: list) -> dict:
    return {
        "app_id": pusher["app_id"],
        "pushkey": pusher["pushkey"],
        "pushkey_ts": pusher["pushkey_ts"] // 1000,
        "data": {k: v for k, v in pusher["data"].items() if k not in ("url", "format")},
        "tweaks": tweaks(actions),
    }


def notification_body(
    event_id: str, event: dict, pusher: dict, actions: list, unread: int, room: dict[str, str]
) -> dict:
    """The `notification` object for one pusher (push gateway API), per its data.format:
    "event_id_only" leaves out everything but the IDs and counts (the gateway's app then
    fetches the event itself, so nothing of it passes through the gateway)."""
    data = pusher["data"]
    device = _device(pusher, actions)
    body: dict[str, Any] = {
        "event_id": event_id,
        "room_id": event["room_id"],
        "counts": {"unread": unread},
        "devices": [device],
        "prio": "high" if notifies(actions) else "low",
    }
    if data.get("format") == "event_id_only":
        return body
    # The name this field had before event_id; SyTest and older gateways read it.
    body["id"] = event_id
    body["type"] = event["type"]
    body["sender"] = event["sender"]
    body.update(room)
    if event["type"] == "m.room.member" and event.get("state_key") == pusher["user_id"]:
        body["user_is_target"] = True
        body["membership"] = event.get("content", {}).get("membership")
    body["content"] = event.get("content", {})
    return body


def room_fields(name: dict, canonical_alias: dict) -> dict[str, str]:
    """room_name and room_alias of a notification, from those state events' contents."""
    out: dict[str, str] = {}
    if isinstance(name.get("name"), str):
        out["room_name"] = name["name"]
    if isinstance(canonical_alias.get("alias"), str):
        out["room_alias"] = canonical_alias["alias"]
        # A room without a name is called by its alias (the room's display name).
        out.setdefault("room_name", out["room_alias"])
    return out


class PushWorker:
    def __init__(self, hs: Homeserver):
        self.hs = hs
        self.store = PushNotificationStore(hs.db)
        self.owner = f"{hs.streams.instance}-{secrets.token_hex(4)}"
        self.suffix = ":" + hs.config.server_name
        # Tunable (tests shorten them).
        self.poll_interval_s = 5.0
        self.lease_s = 60.0
        self.min_backoff_s = 1.0
        self._receipts_at: int | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._senders: dict[tuple[str, str, str], tuple[asyncio.Queue, asyncio.Task]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.running = False

    async def start(self) -> None:
        self.running = True
        ca_bundle = self.hs.config.push.ca_bundle
        context = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else None
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30),
            # A connection per notification: gateways (SyTest's among them) may not expect
            # a second request on a kept-alive connection.
            connector=aiohttp.TCPConnector(ssl=context if context else True, force_close=True),
        )
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())
        previous = self.hs.streams.on_change

        def on_change(change: StreamChange) -> None:
            if change.stream in ("events", "receipts"):
                self._wake.set()
            previous(change)

        self.hs.streams.on_change = on_change

    async def stop(self) -> None:
        self.running = False
        tasks = [t for t in (self._loop_task,) if t is not None]
        tasks += [task for _, task in self._senders.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._senders.clear()
        if self._session is not None:
            await self._session.close()
        if self._loop_task is not None:
            await self.store.release(self.owner)
        self._loop_task = None

    async def _loop(self) -> None:
        while self.running:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("push worker step failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _step(self) -> None:
        upto = self.hs.notifier.positions["events"]
        position = await self.store.claim(
            self.owner, _now_ms(), int(self.lease_s * 1000), start_at=upto
        )
        if position is None:
            self._receipts_at = None
            return  # another process holds the lease
        await self._badges()
        while self.running:
            rows = await self.store.new_events(position, upto, BATCH)
            if not rows:
                return
            await self._evaluate(rows)
            position = rows[-1][0]
            if not await self.store.advance(self.owner, position):
                return

    async def _badges(self) -> None:
        """A read receipt lowers the unread count: each pusher of its user is sent the new
        count alone, so the phone's badge follows (push gateway API: counts only)."""
        upto = self.hs.notifier.positions["receipts"]
        after, self._receipts_at = self._receipts_at, upto
        if after is None or upto <= after:
            return
        readers = await self.store.readers_with_pushers(after, upto)
        for pusher in await self.store.http_pushers(readers):
            unread = await self.store.unread_count(pusher["user_id"])
            body = {"counts": {"unread": unread}, "devices": [_device(pusher, [])], "prio": "high"}
            self._enqueue(pusher, body)

    async def _evaluate(self, rows: list[tuple[int, str, str]]) -> None:
        hs = self.hs
        events = await hs.event_store.get_events(event_id for _, event_id, _ in rows)
        room_ids = sorted({room_id for _, _, room_id in rows})
        members = await hs.membership_store.joined_members_by_room(room_ids)
        power_levels = await hs.sync_caches.power_levels(room_ids)
        found: list[tuple[str, int, str, str, list, bool, int]] = []
        to_evaluate: list[tuple[int, str, str, dict, int, set[str]]] = []
        for ordering, event_id, room_id in rows:
            stored = events.get(event_id)
            if stored is None:
                continue
            event = stored.event
            joined = members.get(room_id, set())
            state_key = event.get("state_key")
            if event.get("type") == "m.room.member" and isinstance(state_key, str):
                # A membership change concerns its target alone: the default rules
                # silence everyone else's (.m.rule.member_event), and evaluating a join
                # for every member makes a room's filling quadratic (10,000 joins to a
                # 10,000-member room would be 50 million evaluations).
                targets = {state_key} if state_key.endswith(self.suffix) else set()
            else:
                targets = {u for u in joined if u.endswith(self.suffix)}
            targets.discard(event.get("sender"))
            to_evaluate.append((ordering, event_id, room_id, event, len(joined), targets))
        # Every member's rules and display name at once (a few queries, not a few per
        # member); each member's /sync, woken by the same event, asks the same caches.
        everyone = sorted({u for *_, targets in to_evaluate for u in targets})
        rules_of = await hs.push_rules.ranked_rules_of(everyone)
        names = await hs.sync_caches.display_names(everyone)
        evaluated = 0
        for ordering, event_id, room_id, event, member_count, targets in to_evaluate:
            for user_id in sorted(targets):
                evaluated += 1
                if evaluated % YIELD_EVERY == 0:
                    # A message to a large room is thousands of evaluations: let the
                    # requests waiting on this process run in between.
                    await asyncio.sleep(0)
                ctx = PushContext(
                    user_id=user_id,
                    room_member_count=member_count,
                    display_name=names[user_id],
                    power_levels=power_levels.get(room_id),
                )
                rules = rules_of[user_id]
                # Through the unread counter's cache: each member's /sync asks the same.
                actions = hs.unread_counts.actions(user_id, event_id, event, rules, ctx)
                if notifies(actions):
                    assert actions is not None
                    found.append(
                        (
                            user_id,
                            ordering,
                            event_id,
                            room_id,
                            actions,
                            highlights(actions),
                            _now_ms(),
                        )
                    )
        push_rule_evaluations.inc(evaluated)
        if not found:
            return
        await self.store.add(found)
        await self._dispatch(found, {e: s.event for e, s in events.items()})

    async def _dispatch(self, found: list, events: dict[str, dict]) -> None:
        pushers = await self.store.http_pushers(sorted({row[0] for row in found}))
        if not pushers:
            return
        by_user: dict[str, list[dict]] = {}
        for p in pushers:
            by_user.setdefault(p["user_id"], []).append(p)
        rooms: dict[str, dict[str, str]] = {}
        unread: dict[str, int] = {}
        for user_id, _, event_id, room_id, actions, _, _ in found:
            if user_id not in by_user:
                continue
            event = events[event_id]
            if room_id not in rooms:
                rooms[room_id] = await self._room_fields(room_id)
            if user_id not in unread:
                unread[user_id] = await self.store.unread_count(user_id)
            room = dict(rooms[room_id])
            if not room and event.get("state_key") == user_id:
                # An invite to a room this server is not in: named by its stripped state.
                room = await self._invite_room_fields(user_id, room_id)
            name = await self._sender_name(room_id, event["sender"])
            if name:
                room["sender_display_name"] = name
            for pusher in by_user[user_id]:
                body = notification_body(event_id, event, pusher, actions, unread[user_id], room)
                self._enqueue(pusher, body)

    async def _room_fields(self, room_id: str) -> dict[str, str]:
        name = await self.hs.event_store.state_contents([room_id], "m.room.name")
        alias = await self.hs.event_store.state_contents([room_id], "m.room.canonical_alias")
        return room_fields(name.get(room_id, {}), alias.get(room_id, {}))

    async def _invite_room_fields(self, user_id: str, room_id: str) -> dict[str, str]:
        membership = await self.hs.out_of_band.get(user_id, room_id)
        state = {
            e.get("type"): e.get("content")
            for e in (membership.stripped_state if membership else [])
            if isinstance(e, dict)
            and e.get("state_key") == ""
            and isinstance(e.get("content"), dict)
        }
        return room_fields(
            state.get("m.room.name") or {}, state.get("m.room.canonical_alias") or {}
        )

    async def _sender_name(self, room_id: str, sender: str) -> str | None:
        member = await self.hs.event_store.state_contents([room_id], "m.room.member", sender)
        name = member.get(room_id, {}).get("displayname")
        return name if isinstance(name, str) else None

    def _enqueue(self, pusher: dict, body: dict) -> None:
        key = (pusher["user_id"], pusher["app_id"], pusher["pushkey"])
        entry = self._senders.get(key)
        if entry is None or entry[1].done():
            queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
            task = asyncio.get_running_loop().create_task(self._send_loop(key, queue))
            entry = self._senders[key] = (queue, task)
        try:
            entry[0].put_nowait((pusher, body))
        except asyncio.QueueFull:
            logger.warning("push queue full for a pusher of %s: dropped", pusher["user_id"])

    async def _send_loop(self, key: tuple[str, str, str], queue: asyncio.Queue) -> None:
        try:
            while self.running:
                try:
                    pusher, body = await asyncio.wait_for(queue.get(), 60)
                except TimeoutError:
                    return  # idle: the next notification starts a new task
                if not await self._send(pusher, body):
                    return  # the pusher is gone
        finally:
            if self._senders.get(key, (None, None))[1] is asyncio.current_task():
                del self._senders[key]

    async def _send(self, pusher: dict, body: dict) -> bool:
        """Delivers one notification; False when the gateway rejected the pushkey."""
        assert self._session is not None
        url = pusher["data"]["url"]
        if not self.hs.config.push.allows(url):
            return True  # the operator has since dropped this gateway
        delay = self.min_backoff_s
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with self._session.post(url, json={"notification": body}) as resp:
                    if resp.status == 200:
                        answer = await resp.json(content_type=None)
                        rejected = answer.get("rejected") if isinstance(answer, dict) else None
                        if isinstance(rejected, list) and pusher["pushkey"] in rejected:
                            await self.store.delete_rejected(
                                pusher["app_id"], pusher["pushkey"], pusher["user_id"]
                            )
                            return False
                        return True
                    if 400 <= resp.status < 500 and resp.status != 429:
                        logger.warning("push gateway refused a notification: %s", resp.status)
                        return True  # sending it again would be refused again
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                logger.info("push gateway unreachable (attempt %d): %s", attempt + 1, e)
            await asyncio.sleep(delay)
            delay *= 2
        logger.warning("push notification dropped after %d attempts", MAX_ATTEMPTS)
        return True
