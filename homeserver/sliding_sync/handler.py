"""Simplified sliding sync (MSC4186): the room list from summary rows, the rooms a
connection has not seen (or has seen change), and the extensions, from the same stores
and stream providers as /sync v2.

A response is computed against the connection's previous position (what it covered and
what it sent of each room), then recorded as a new position; with nothing to say it
waits on the notifier like /sync v2, keyed by the user and their rooms.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from homeserver.accounts.ignored import drop_ignored
from homeserver.http.auth import Requester
from homeserver.http.errors import MatrixError
from homeserver.relations.service import RelationsService
from homeserver.rooms.filtering import SyncFilter
from homeserver.rooms.serialize import client_event
from homeserver.rooms.visibility import filter_visible
from homeserver.sliding_sync.request import (
    WILDCARD,
    Filters,
    RoomConfig,
    SlidingSyncRequest,
)
from homeserver.sliding_sync.room_list import UserRoomsCache
from homeserver.sync.caches import SyncCaches
from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider
from homeserver.sync.streams.rooms import stripped_membership_state
from homeserver.sync.unread import UnreadCounter
from homeserver.tokens import encode_pagination_token
from storage.account_data import GLOBAL, AccountDataStore
from storage.ephemeral import EphemeralStore
from storage.events import EventStore, StoredEvent
from storage.membership import MembershipStore
from storage.out_of_band import OutOfBandStore
from storage.room_summaries import RoomSummaryStore, UserRoom
from storage.sliding_sync import Position, SlidingSyncStore, UnknownPosition
from storage.spaces import SpacesStore

# A connection unused for this long is forgotten: its `pos` answers M_UNKNOWN_POS.
CONNECTION_LIFETIME_MS = 7 * 24 * 3600 * 1000
_STRIPPED_MEMBERSHIPS = ("invite", "knock")
# Memberships whose room the user no longer sees: shown as it was when they left.
_GONE = ("leave", "ban")
_HEROES = 5


def unknown_pos() -> MatrixError:
    return MatrixError(400, "M_UNKNOWN_POS", "Unknown position: start a new connection")


@dataclass
class _Built:
    body: dict[str, Any]
    tokens: dict[str, int]
    lists: dict[str, list]
    sent: list[tuple[str, int, str, str]] = field(default_factory=list)
    joined: set[str] = field(default_factory=set)

    def is_empty(self, previous: Position | None) -> bool:
        """Nothing worth answering a long-poll with: no rooms, no list moved, and the
        extensions carry only what every answer carries (key counts, the to-device token)."""
        if self.body["rooms"]:
            return False
        for name, section in self.body["extensions"].items():
            if name == "to_device" and not section["events"]:
                continue
            if name == "e2ee" and not any(section["device_lists"].values()):
                continue
            return False
        return previous is not None and previous.lists == self.lists_digest()

    def lists_digest(self) -> str:
        """What the lists showed (counts and room ids), as the position remembers it: a
        digest, since it is only ever compared."""
        return hashlib.sha256(orjson.dumps(self.lists, option=orjson.OPT_SORT_KEYS)).hexdigest()


class SlidingSync:
    def __init__(
        self,
        store: SlidingSyncStore,
        summaries: RoomSummaryStore,
        events: EventStore,
        memberships: MembershipStore,
        out_of_band: OutOfBandStore,
        account_data: AccountDataStore,
        ephemeral: EphemeralStore,
        spaces: SpacesStore,
        caches: SyncCaches,
        unread: UnreadCounter,
        relations: RelationsService,
        notifier: Notifier,
        providers: Mapping[str, StreamProvider],
        max_timeout_ms: int,
    ):
        self.store = store
        self.summaries = summaries
        self.room_list = UserRoomsCache(summaries, notifier)
        self.events = events
        self.memberships = memberships
        self.out_of_band = out_of_band
        self.account_data = account_data
        self.ephemeral = ephemeral
        self.spaces = spaces
        self.caches = caches
        self.unread = unread
        self.relations = relations
        self.notifier = notifier
        # The /sync v2 stream providers, by stream name: the extensions are their sections.
        self.providers = providers
        self.max_timeout_ms = max_timeout_ms

    async def sync(
        self, requester: Requester, pos: str | None, timeout_ms: int, req: SlidingSyncRequest
    ) -> dict[str, Any]:
        user_id, device_id = requester.user_id, requester.device_id
        previous = None
        if pos is not None:
            if not pos.isdigit() or len(pos) > 18:
                raise unknown_pos()
            now_ms = int(time.time() * 1000)
            previous = await self.store.resume(
                user_id, device_id, req.conn_id, int(pos), now_ms, now_ms - CONNECTION_LIFETIME_MS
            )
            if previous is None:
                raise unknown_pos()
        built = await self._build(requester, req, previous)
        deadline = time.monotonic() + min(timeout_ms, self.max_timeout_ms) / 1000
        while built.is_empty(previous):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self.notifier.wait(
                {user_id, *built.joined}, built.tokens, remaining, _streams_of(req)
            )
            if self.notifier.current_token() == built.tokens:
                break
            built = await self._build(requester, req, previous)
        if previous is not None and built.is_empty(previous):
            # Nothing was sent: the client may stay where it is, and the next request
            # looks again from the same place (no position to write).
            return {"pos": str(previous.pos), **built.body}
        now_ms = int(time.time() * 1000)
        try:
            new_pos = await self.store.record(
                user_id,
                device_id,
                req.conn_id,
                previous,
                orjson.dumps(built.tokens).decode(),
                built.lists_digest(),
                built.sent,
                now_ms,
                now_ms - CONNECTION_LIFETIME_MS,
            )
        except UnknownPosition:
            raise unknown_pos() from None
        return {"pos": str(new_pos), **built.body}

    # ---- one computation ------------------------------------------------------------------

    async def _build(
        self, requester: Requester, req: SlidingSyncRequest, previous: Position | None
    ) -> _Built:
        user_id = requester.user_id
        now = self.notifier.current_token()
        since = orjson.loads(previous.tokens) if previous is not None else None
        rooms = await self._user_rooms(user_id, since)
        direct = await self._direct_rooms(user_id)

        configs: dict[str, RoomConfig] = {}
        lists_body: dict[str, Any] = {}
        lists_memory: dict[str, list] = {}
        in_lists: dict[str, set[str]] = {}
        for name, lst in req.lists.items():
            matching = await self._filter(user_id, rooms, direct, lst.filters)
            ordered = sorted(matching, key=lambda r: (_sort_key(r), r.room_id), reverse=True)
            ids = [r.room_id for r in ordered]
            ranges = lst.ranges if lst.ranges is not None else [(0, max(len(ids) - 1, 0))]
            ops = []
            shown: set[str] = set()
            for start, end in ranges:
                window = ids[start : end + 1]
                shown.update(window)
                ops.append({"op": "SYNC", "range": [start, end], "room_ids": window})
            lists_body[name] = {"count": len(ids), "ops": ops}
            lists_memory[name] = [len(ids), [op["room_ids"] for op in ops]]
            in_lists[name] = shown
            for room_id in shown:
                _add_config(configs, room_id, lst.room)
        for room_id, config in req.subscriptions.items():
            if room_id in rooms:
                _add_config(configs, room_id, config)

        built = _Built(
            body={"lists": lists_body, "rooms": {}, "extensions": {}},
            tokens=now,
            lists=lists_memory,
            joined={r for r, ur in rooms.items() if ur.membership == "join"},
        )
        await self._rooms(requester, rooms, direct, configs, previous, since, now, built)
        relevant = self._relevant_rooms(req, in_lists)
        await self._extensions(requester, req, since, now, relevant, rooms, built)
        return built

    async def _user_rooms(self, user_id: str, since: dict | None) -> dict[str, UserRoom]:
        """The rooms a room list may show: joined, invited, knocked, and left or banned
        unless the user left by themselves before this connection's last response."""
        rows = dict(await self.room_list.get(user_id))
        # Invites and knocks that reached us without their room (over federation).
        for room_id, oob in (await self.out_of_band.for_user(user_id)).items():
            known = rows.get(room_id)
            if known is None or known.ordering < oob.stream_ordering:
                rows[room_id] = _out_of_band_room(oob.room_id, oob.membership, oob)
        forgotten = await self.memberships.forgotten_rooms(user_id)
        ignored = await self.caches.ignored(user_id)
        since_events = since["events"] if since else None
        out = {}
        for room_id, r in rows.items():
            if room_id in forgotten:
                continue
            if r.membership == "invite" and r.sender in ignored:
                continue  # invites from ignored users are not shown (spec)
            if r.membership in ("leave", "ban"):
                by_self = r.sender == user_id
                if by_self and (since_events is None or r.ordering <= since_events):
                    continue
            out[room_id] = r
        return out

    async def _direct_rooms(self, user_id: str) -> set[str]:
        raw = await self.account_data.get(user_id, GLOBAL, "m.direct")
        rooms: set[str] = set()
        if raw:
            content = orjson.loads(raw)
            if isinstance(content, dict):
                for ids in content.values():
                    if isinstance(ids, list):
                        rooms.update(i for i in ids if isinstance(i, str))
        return rooms

    async def _filter(
        self, user_id: str, rooms: dict[str, UserRoom], direct: set[str], f: Filters
    ) -> list[UserRoom]:
        out = list(rooms.values())
        if f.is_dm is not None:
            out = [r for r in out if (r.room_id in direct or r.is_direct) == f.is_dm]
        if f.is_encrypted is not None:
            out = [r for r in out if r.encrypted == f.is_encrypted]
        if f.is_invite is not None:
            out = [r for r in out if (r.membership == "invite") == f.is_invite]
        if f.room_types is not None:
            allowed = set(f.room_types)
            out = [r for r in out if r.room_type in allowed]
        if f.not_room_types:
            refused = set(f.not_room_types)
            out = [r for r in out if r.room_type not in refused]
        if f.room_name_like is not None:
            needle = f.room_name_like.casefold()
            out = [r for r in out if r.name is not None and needle in r.name.casefold()]
        if f.spaces is not None:
            spaces = [s for s in f.spaces if s in rooms and rooms[s].membership == "join"]
            children = await self._space_children(spaces) if spaces else set()
            out = [r for r in out if r.room_id in children]
        if f.tags is not None or f.not_tags:
            tags = await self._tags(user_id)
            if f.tags is not None:
                wanted = set(f.tags)
                out = [r for r in out if tags.get(r.room_id, set()) & wanted]
            if f.not_tags:
                unwanted = set(f.not_tags)
                out = [r for r in out if not tags.get(r.room_id, set()) & unwanted]
        return out

    async def _space_children(self, space_ids: list[str]) -> set[str]:
        """Rooms that the spaces' current m.space.child events name with a `via`."""
        by_space = await self.spaces.child_event_ids(space_ids)
        events = await self.events.get_events(i for ids in by_space.values() for i in ids)
        return {
            e.state_key
            for e in events.values()
            if e.state_key and isinstance(e.content.get("via"), list) and e.content["via"]
        }

    async def _tags(self, user_id: str) -> dict[str, set[str]]:
        out = {}
        for room_id, raw in (await self.account_data.of_type(user_id, "m.tag")).items():
            content = orjson.loads(raw)
            tags = content.get("tags") if isinstance(content, dict) else None
            if isinstance(tags, dict):
                out[room_id] = set(tags)
        return out

    # ---- rooms ------------------------------------------------------------------------------

    async def _rooms(
        self,
        requester: Requester,
        rooms: dict[str, UserRoom],
        direct: set[str],
        configs: dict[str, RoomConfig],
        previous: Position | None,
        since: dict | None,
        now: dict[str, int],
        built: _Built,
    ) -> None:
        """Decides which rooms the response carries and builds them."""
        user_id = requester.user_id
        now_events = now["events"]
        initial: list[str] = []
        changed: dict[str, int] = {}  # room -> events position it was last sent up to
        refreshed: list[str] = []  # same events, new required_state or timeline_limit
        # A connection's rooms share a handful of (asked, sent) config pairs.
        expands: dict[tuple[int, str], bool] = {}
        for room_id, config in configs.items():
            r = rooms[room_id]
            sent = previous.rooms.get(room_id) if previous is not None else None
            if sent is None or sent.membership != r.membership:
                initial.append(room_id)
                continue
            moved = r.ordering if r.membership != "join" else (r.last_ordering or 0)
            if moved > sent.sent_upto and sent.sent_upto < now_events:
                changed[room_id] = sent.sent_upto
            else:
                pair = (id(config), sent.config)
                grows = expands.get(pair)
                if grows is None:
                    grows = expands[pair] = config.expands(sent.config)
                if grows:
                    refreshed.append(room_id)
        # A room whose only news is the user's own read receipt: its counts went down.
        read: list[str] = []
        if since is not None:
            handled = {*initial, *changed, *refreshed}
            quiet = [
                r
                for r in self.notifier.changed_among(configs, "receipts", since["receipts"])
                if r not in handled and rooms[r].membership == "join"
            ]
            if quiet:
                read = await self.ephemeral.rooms_read_by(
                    user_id, quiet, since["receipts"], now["receipts"]
                )
        if not (initial or changed or refreshed or read):
            return

        stripped = [r for r in initial if rooms[r].membership in _STRIPPED_MEMBERSHIPS]
        with_timeline = [r for r in initial if r not in stripped] + list(changed)
        ignored = await self.caches.ignored(user_id)
        timelines = await self._timelines(
            user_id, rooms, configs, with_timeline, changed, now, ignored
        )
        # Bundled aggregations (threads, edits, references) of every timeline in one batch.
        bundles = await self.relations.bundle(
            (e for events, _, _ in timelines.values() for e in events),
            user_id,
            requester.device_id,
            with_room_id=False,
            ignored=sorted(ignored),
        )
        full_state_rooms = [r for r in initial if r not in stripped] + refreshed
        state_changes: dict[str, set[tuple[str, str]]] = {}
        by_since: dict[int, list[str]] = {}
        for room_id, upto in changed.items():
            by_since.setdefault(upto, []).append(room_id)
        for upto, ids in by_since.items():
            state_changes.update(await self.summaries.state_changes(ids, upto, now_events))
        required = await self._required_state(
            user_id, configs, rooms, full_state_rooms, state_changes, timelines
        )
        joined = [
            r for r in [*initial, *changed, *refreshed, *read] if rooms[r].membership == "join"
        ]
        counts = await self.unread.counts(
            user_id,
            joined,
            [rooms[r].ordering for r in joined],
            {r: rooms[r].joined_count for r in joined},
            ignored=ignored,
        )
        # Heroes name a room that has no name: sent with the room, and again when its
        # members change.
        hero_rooms = [
            r
            for r in [*initial, *changed]
            if rooms[r].name is None
            and rooms[r].membership not in (*_STRIPPED_MEMBERSHIPS, *_GONE)
            and (r in initial or any(t == "m.room.member" for t, _ in state_changes.get(r, ())))
        ]
        heroes = await self._heroes(user_id, hero_rooms) if hero_rooms else {}
        invite_states = await self._stripped_states(user_id, [rooms[r] for r in stripped])
        since_events = since["events"] if since else None
        out = built.body["rooms"]
        for room_id in [*initial, *changed, *refreshed]:
            r = rooms[room_id]
            entry: dict[str, Any] = {}
            is_initial = room_id in initial
            if is_initial:
                entry["initial"] = True
            changes = state_changes.get(room_id, set())
            # The summary is the room as it is now: nothing of it for a room left.
            current = r.membership not in _GONE
            if current and r.name and (is_initial or ("m.room.name", "") in changes):
                entry["name"] = r.name
            if current and r.avatar and (is_initial or ("m.room.avatar", "") in changes):
                entry["avatar"] = r.avatar
            if current and heroes.get(room_id):
                entry["heroes"] = heroes[room_id]
            if r.membership in _STRIPPED_MEMBERSHIPS:
                entry["invite_state"] = invite_states.get(room_id, [])
            else:
                events, limited, prev = timelines.get(room_id, ([], False, 0))
                if (
                    room_id in changed
                    and configs[room_id].timeline_limit
                    and not events
                    and not required.get(room_id)
                ):
                    continue  # moved past what `now` covers; the next response has it
                if events:
                    entry["timeline"] = [
                        client_event(e, requester.device_id, with_room_id=False, relations=bundles)
                        for e in events
                    ]
                if room_id in timelines:
                    entry["limited"] = limited
                    entry["prev_batch"] = encode_pagination_token(prev)
                    entry["num_live"] = (
                        sum(1 for e in events if e.stream_ordering > since_events)
                        if since_events is not None
                        else 0
                    )
                if required.get(room_id):
                    entry["required_state"] = [
                        client_event(e, with_room_id=False) for e in required[room_id]
                    ]
                if current:
                    entry["joined_count"] = r.joined_count
                    entry["invited_count"] = r.invited_count
            if r.membership == "join":
                entry.update(counts[room_id].main)
            else:
                entry.update({"notification_count": 0, "highlight_count": 0})
            entry["bump_stamp"] = _sort_key(r)
            if room_id in direct or r.is_direct:
                entry["is_dm"] = True
            out[room_id] = entry
            built.sent.append((room_id, now_events, r.membership, configs[room_id].key()))
        for room_id in read:
            out[room_id] = {**counts[room_id].main, "bump_stamp": _sort_key(rooms[room_id])}

    async def _timelines(
        self,
        user_id: str,
        rooms: dict[str, UserRoom],
        configs: dict[str, RoomConfig],
        room_ids: list[str],
        changed: dict[str, int],
        now: dict[str, int],
        ignored: frozenset[str],
    ) -> dict[str, tuple[list[StoredEvent], bool, int]]:
        """room -> (visible timeline oldest first, limited, prev_batch ordering): the newest
        events (after what the connection had, for rooms it had), one query per group of
        rooms sharing limit and bounds; none of `ignored` users' but their state events."""
        groups: dict[tuple[int | None, int, int], list[str]] = {}
        for room_id in room_ids:
            r = rooms[room_id]
            upto = now["events"] if r.membership == "join" else min(r.ordering, now["events"])
            key = (changed.get(room_id), upto, configs[room_id].timeline_limit)
            groups.setdefault(key, []).append(room_id)
        out: dict[str, tuple[list[StoredEvent], bool, int]] = {}
        for (after, upto, limit), ids in groups.items():
            recent = (
                await self.events.recent_events_for_rooms(ids, after, upto, limit + 1)
                if limit
                else {}
            )
            for room_id in ids:
                events = recent.get(room_id, [])
                # With no timeline asked for, there is always more than was sent.
                limited = len(events) > limit if limit else True
                events = events[-limit:] if limit else []
                r = rooms[room_id]
                events = await filter_visible(
                    self.events,
                    user_id,
                    events,
                    r.membership,
                    r.ordering if r.membership == "join" else None,
                )
                events = drop_ignored(events, ignored)
                prev = (events[0].stream_ordering - 1) if events else upto
                out[room_id] = (events, limited, prev)
        return out

    async def _required_state(
        self,
        user_id: str,
        configs: dict[str, RoomConfig],
        rooms: dict[str, UserRoom],
        full_rooms: list[str],
        state_changes: dict[str, set[tuple[str, str]]],
        timelines: dict[str, tuple[list[StoredEvent], bool, int]],
    ) -> dict[str, list[StoredEvent]]:
        """room -> the current state events its config asks for: all of them for rooms
        new to the connection (or with a new config), those that changed otherwise.
        $LAZY members are those of the timeline's senders. One query for all rooms."""
        wanted_rooms = [*full_rooms, *(r for r in state_changes if r not in full_rooms)]
        lazy_rooms = [r for r in timelines if configs[r].lazy_members]
        rooms_to_read = sorted(set(wanted_rooms) | set(lazy_rooms))
        if not rooms_to_read:
            return {}
        pairs: set[tuple[str, str]] = set()
        any_key: set[str] = set()
        everything = False
        for room_id in rooms_to_read:
            for t, sk in configs[room_id].required_state:
                if t == WILDCARD:
                    everything = True
                elif sk == WILDCARD:
                    any_key.add(t)
                else:
                    pairs.add((t, user_id if sk == "$ME" else sk))
            if room_id in lazy_rooms:
                pairs.update(("m.room.member", e.sender) for e in timelines[room_id][0])
        state = await self.summaries.current_state_ids(
            rooms_to_read, sorted(pairs), sorted(any_key), everything
        )
        # A room the user left (or was removed from) shows its state as of their leaving,
        # never what changed after.
        gone = [r for r in rooms_to_read if rooms[r].membership in _GONE]
        if gone:
            member_events = await self.events.get_events(rooms[r].event_id for r in gone)
            groups = {
                r: member_events[rooms[r].event_id].state_group_before
                for r in gone
                if rooms[r].event_id in member_events
            }
            resolved = await self.events.state_groups(groups.values())
            for room_id in gone:
                group = groups.get(room_id)
                at_leave = dict(resolved.get(group, {})) if group is not None else {}
                at_leave[("m.room.member", user_id)] = rooms[room_id].event_id
                state[room_id] = at_leave
        chosen: dict[str, list[str]] = {}
        for room_id in rooms_to_read:
            config = configs[room_id]
            senders = {e.sender for e in timelines.get(room_id, ([], False, 0))[0]}
            full = room_id in full_rooms
            changes = state_changes.get(room_id, set())
            ids = []
            for (t, sk), event_id in state[room_id].items():
                lazy = config.lazy_members and t == "m.room.member" and sk in senders
                if not (lazy or config.wants(t, sk, user_id)):
                    continue
                if full or (t, sk) in changes or lazy:
                    ids.append(event_id)
            chosen[room_id] = ids
        events = await self.events.get_events({i for ids in chosen.values() for i in ids})
        return {r: [events[i] for i in ids if i in events] for r, ids in chosen.items()}

    async def _heroes(self, user_id: str, room_ids: list[str]) -> dict[str, list[dict]]:
        summaries = await self.caches.room_summaries(room_ids)
        picked = {
            r: [u for u in (s or {}).get("candidates", []) if u != user_id][:_HEROES]
            for r, s in summaries.items()
        }
        contents = await self.summaries.member_contents(
            (r, u) for r, users in picked.items() for u in users
        )
        out: dict[str, list[dict]] = {}
        for room_id, users in picked.items():
            heroes = []
            for u in users:
                hero: dict[str, Any] = {"user_id": u}
                content = contents.get((room_id, u), {})
                if isinstance(content.get("displayname"), str):
                    hero["displayname"] = content["displayname"]
                if isinstance(content.get("avatar_url"), str):
                    hero["avatar_url"] = content["avatar_url"]
                heroes.append(hero)
            out[room_id] = heroes
        return out

    async def _stripped_states(self, user_id: str, invites: list[UserRoom]) -> dict[str, list]:
        """room -> the stripped state shown with an invite or knock, for all at once."""
        if not invites:
            return {}
        member_events = await self.events.get_events(r.event_id for r in invites)
        outliers = any(e.status is not None for e in member_events.values())
        oob = await self.out_of_band.for_user(user_id) if outliers else {}
        return {
            r.room_id: stripped_membership_state(member_events[r.event_id], oob)
            for r in invites
            if r.event_id in member_events
        }

    # ---- extensions -------------------------------------------------------------------------

    @staticmethod
    def _relevant_rooms(req: SlidingSyncRequest, in_lists: dict[str, set[str]]) -> dict:
        """Per scoped extension, the rooms its `lists` and `rooms` select."""
        out = {}
        for name in ("account_data", "receipts", "typing"):
            ext = req.extensions.get(name)
            if ext is None:
                continue
            rooms: set[str] = set()
            for list_name in ext.lists:
                if list_name == WILDCARD:
                    for shown in in_lists.values():
                        rooms |= shown
                elif list_name in in_lists:
                    rooms |= in_lists[list_name]
            for room_id in ext.rooms:
                if room_id == WILDCARD:
                    rooms |= set(req.subscriptions)
                elif room_id in req.subscriptions:
                    rooms.add(room_id)
            out[name] = rooms
        return out

    def _context(
        self,
        requester: Requester,
        since: dict[str, int] | None,
        now: dict[str, int],
        joined: set[str],
        fresh: set[str],
    ) -> SyncContext:
        ctx = SyncContext(
            user_id=requester.user_id,
            device_id=requester.device_id,
            since=since,
            now=now,
            full_state=False,
            filter={},
            sync_filter=SyncFilter({}),
        )
        ctx.joined_room_ids = set(joined)
        ctx.newly_joined_room_ids = set(fresh)
        return ctx

    async def _extensions(
        self,
        requester: Requester,
        req: SlidingSyncRequest,
        since: dict[str, int] | None,
        now: dict[str, int],
        relevant: dict[str, set[str]],
        rooms: dict[str, UserRoom],
        built: _Built,
    ) -> None:
        out = built.body["extensions"]
        # Rooms this response sends as new: their receipts, typing and account data are
        # sent whole, as /sync v2 does for newly joined rooms.
        fresh = {r for r, e in built.body["rooms"].items() if e.get("initial")}
        ext = req.extensions.get("to_device")
        if ext is not None:
            scratch: dict[str, Any] = {}
            to_device_since = {"to_device": ext.since} if ext.since is not None else None
            ctx = self._context(requester, to_device_since, now, set(), set())
            await self.providers["to_device"].fill(ctx, scratch)
            events = scratch["to_device"]["events"]
            out["to_device"] = {"next_batch": str(now["to_device"]), "events": events}
        if "e2ee" in req.extensions:
            out["e2ee"] = await self._e2ee(requester, since, now, rooms)
        for name in ("account_data", "receipts", "typing"):
            if name not in req.extensions:
                continue
            scope = relevant[name] & built.joined
            ctx = self._context(
                requester,
                since,
                now,
                scope if name != "account_data" else built.joined,
                fresh & scope,
            )
            scratch = {}
            await self.providers[name].fill(ctx, scratch)
            section = _extension_section(name, scratch, scope)
            if section is not None:
                out[name] = section

    async def _e2ee(
        self,
        requester: Requester,
        since: dict[str, int] | None,
        now: dict[str, int],
        rooms: dict[str, UserRoom],
    ) -> dict[str, Any]:
        joined = {r for r, ur in rooms.items() if ur.membership == "join"}
        ctx = self._context(requester, since, now, joined, set())
        if since is not None:
            moved = {r for r, ur in rooms.items() if ur.ordering > since["events"]}
            ctx.newly_joined_room_ids = moved & joined
            ctx.newly_left_room_ids = {r for r in moved if rooms[r].membership in ("leave", "ban")}
        scratch: dict[str, Any] = {}
        await self.providers["device_lists"].fill(ctx, scratch)
        return {
            "device_lists": scratch["device_lists"],
            "device_one_time_keys_count": scratch.get("device_one_time_keys_count", {}),
            "device_unused_fallback_key_types": scratch.get("device_unused_fallback_key_types", []),
        }


def _extension_section(name: str, scratch: dict[str, Any], scope: set[str]) -> dict | None:
    """An extension's section from the /sync v2 response section its provider wrote."""
    joined = scratch.get("rooms", {}).get("join", {})
    if name == "account_data":
        global_events = scratch.get("account_data", {}).get("events", [])
        per_room = {
            r: entry["account_data"]["events"]
            for r, entry in joined.items()
            if r in scope and entry.get("account_data", {}).get("events")
        }
        if not global_events and not per_room:
            return None
        return {"global": global_events, "rooms": per_room}
    wanted = "m.receipt" if name == "receipts" else "m.typing"
    found = {}
    for room_id, entry in joined.items():
        for ev in entry.get("ephemeral", {}).get("events", []):
            if ev.get("type") == wanted and room_id in scope:
                found[room_id] = ev
    return {"rooms": found} if found else None


def _add_config(configs: dict[str, RoomConfig], room_id: str, config: RoomConfig) -> None:
    """A room in several lists and subscriptions is sent with the union of their configs."""
    known = configs.get(room_id)
    configs[room_id] = config if known is None or known == config else known.merge(config)


def _streams_of(req: SlidingSyncRequest) -> frozenset[str]:
    """The streams whose changes can change this request's answer: room events (lists,
    rooms) and receipts (the user's own lower their unread counts) always; the others
    only for the extensions that read them, and account data for the filters that do."""
    streams = {"events", "receipts"}
    by_extension = {
        "to_device": ("to_device",),
        "e2ee": ("device_lists",),
        "account_data": ("account_data",),
        "typing": ("typing",),
    }
    for name in req.extensions:
        streams.update(by_extension.get(name, ()))
    if any(
        lst.filters.is_dm is not None or lst.filters.tags is not None or lst.filters.not_tags
        for lst in req.lists.values()
    ):
        streams.add("account_data")  # m.direct and m.tag decide these lists
    return frozenset(streams)


def _sort_key(r: UserRoom) -> int:
    """Where a room sits in a list: its latest bump while joined, else its membership
    (also for a room joined over federation whose bumps all predate what we hold)."""
    if r.membership == "join" and r.bump_stamp:
        return r.bump_stamp
    return r.ordering


def _out_of_band_room(room_id: str, membership: str, oob: Any) -> UserRoom:
    """A room known only from an invite (or knock) over federation: its stripped state
    is all we know of it."""
    state = {
        (e.get("type"), e.get("state_key")): e.get("content") or {}
        for e in oob.stripped_state
        if isinstance(e, dict)
    }
    name = state.get(("m.room.name", ""), {}).get("name")
    avatar = state.get(("m.room.avatar", ""), {}).get("url")
    room_type = state.get(("m.room.create", ""), {}).get("type")
    return UserRoom(
        room_id=room_id,
        membership=membership,
        event_id=oob.event_id,
        sender="",
        ordering=oob.stream_ordering,
        is_direct=False,
        bump_stamp=None,
        last_ordering=None,
        name=name if isinstance(name, str) else None,
        avatar=avatar if isinstance(avatar, str) else None,
        encrypted=("m.room.encryption", "") in state,
        room_type=room_type if isinstance(room_type, str) else None,
        joined_count=0,
        invited_count=0,
    )
