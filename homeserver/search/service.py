"""POST /search over room events: matches from the index (storage/search.py) in the rooms
the user is or was in, then the same history visibility as /messages
(homeserver/rooms/history.py), ignored users, and the request's filter."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from homeserver.accounts.ignored import drop_ignored, ignored_users
from homeserver.http.auth import Requester
from homeserver.rooms.history import events_around, visible_events
from homeserver.rooms.serialize import client_event
from homeserver.search.request import Criteria, Cursor
from homeserver.tokens import encode_pagination_token
from storage.events import StoredEvent
from storage.search import Hit, SearchQuery

if TYPE_CHECKING:
    from homeserver.app import Homeserver

# Memberships whose rooms are searched: former members find what they saw while in.
_SEARCHED_MEMBERSHIPS = ("join", "leave", "ban")
# How many index reads one request may make to fill a page whose matches are hidden.
_MAX_ROUNDS = 5


class SearchService:
    def __init__(self, hs: Homeserver):
        self.hs = hs
        self.store = hs.search_store

    async def room_events(
        self, requester: Requester, criteria: Criteria, cursor: Cursor | None
    ) -> dict[str, Any]:
        hs, user_id = self.hs, requester.user_id
        memberships = (await hs.membership_store.memberships_of([user_id]))[user_id]
        event_filter = criteria.event_filter
        rooms = [
            r
            for r, (m, _, _) in memberships.items()
            if m in _SEARCHED_MEMBERSHIPS and event_filter.allows_room(r)
        ]
        senders = event_filter.senders
        group = cursor.group if cursor is not None else None
        if group is not None:
            key, value = group
            if key == "room_id":
                rooms = [r for r in rooms if r == value]
            else:
                senders = [s for s in senders if s == value] if senders is not None else [value]
        ignored = await ignored_users(hs.accounts.account_data, user_id)
        query = SearchQuery(
            term=criteria.term,
            keys=criteria.keys,
            room_ids=sorted(rooms),
            senders=senders,
            not_senders=sorted(set(event_filter.not_senders) | ignored),
            by_rank=criteria.by_rank,
        )
        after = (cursor.rank, cursor.ordering) if cursor is not None else None
        # Counted first: how many matches each room holds decides how recent order reads.
        counts = await self.store.count_by_room(query) if rooms else {}
        found, last, exhausted = await self._page(user_id, query, criteria, ignored, after, counts)
        out: dict[str, Any] = {
            "count": sum(counts.values()),
            "highlights": await self.store.highlights(criteria.term),
        }
        contexts = (
            {hit.event_id: await self._context(user_id, ev, criteria, ignored) for hit, ev in found}
            if criteria.context is not None
            else {}
        )
        all_events = [ev for _, ev in found]
        for ctx in contexts.values():
            all_events.extend(ctx["events_before"])
            all_events.extend(ctx["events_after"])
        device_id = requester.device_id
        bundles = await hs.relations.bundle(all_events, user_id, device_id, ignored=sorted(ignored))
        results = []
        for hit, ev in found:
            result: dict[str, Any] = {
                "rank": hit.rank,
                "result": client_event(ev, device_id, relations=bundles),
            }
            context = contexts.get(hit.event_id)
            if context is not None:
                for side in ("events_before", "events_after"):
                    context[side] = [
                        client_event(e, device_id, relations=bundles) for e in context[side]
                    ]
                result["context"] = context
            results.append(result)
        out["results"] = results
        if not exhausted and last is not None:
            out["next_batch"] = Cursor(
                criteria.by_rank, last.rank, last.stream_ordering, group
            ).encode()
        if criteria.include_state:
            out["state"] = await self._state(user_id, memberships, [ev for _, ev in found])
        if criteria.group_by:
            out["groups"] = self._groups(criteria, found, exhausted)
        return out

    async def _page(
        self,
        user_id: str,
        query: SearchQuery,
        criteria: Criteria,
        ignored: frozenset[str],
        after: tuple[float, int] | None,
        counts: dict[str, int],
    ) -> tuple[list[tuple[Hit, StoredEvent]], Hit | None, bool]:
        """(matches the user may see with their events, the last match read, whether the
        index has no more)."""
        found: list[tuple[Hit, StoredEvent]] = []
        last: Hit | None = None
        if not query.room_ids:
            return found, last, True
        for _ in range(_MAX_ROUNDS):
            want = criteria.limit - len(found)
            hits = await self.store.search(query, after, want, counts)
            if hits:
                last = hits[-1]
                after = (last.rank, last.stream_ordering)
            kept = await self._visible(user_id, hits, criteria, ignored)
            found.extend((h, kept[h.event_id]) for h in hits if h.event_id in kept)
            if len(hits) < want:
                return found, last, True
            if len(found) >= criteria.limit:
                break
        return found, last, False

    async def _visible(
        self, user_id: str, hits: Sequence[Hit], criteria: Criteria, ignored: frozenset[str]
    ) -> dict[str, StoredEvent]:
        events = await self.hs.event_store.get_events(h.event_id for h in hits)
        by_room: dict[str, list[StoredEvent]] = defaultdict(list)
        for h in hits:
            ev = events.get(h.event_id)
            if ev is not None and ev.redacted_by is None:
                by_room[h.room_id].append(ev)
        kept: dict[str, StoredEvent] = {}
        for room_id, room_events in by_room.items():
            room_events = drop_ignored(criteria.event_filter.apply(room_events), ignored)
            for ev in await visible_events(self.hs, user_id, room_id, room_events):
                kept[ev.event_id] = ev
        return kept

    async def _context(
        self, user_id: str, ev: StoredEvent, criteria: Criteria, ignored: frozenset[str]
    ) -> dict[str, Any]:
        assert criteria.context is not None
        before_n, after_n, include_profile = criteria.context
        hs, room_id = self.hs, ev.room_id
        before, after = await events_around(hs, ev, before_n, after_n)
        # The filter's types and senders apply to the context too (as Synapse does).
        event_filter = criteria.event_filter
        before = await visible_events(
            hs, user_id, room_id, drop_ignored(event_filter.apply(before), ignored)
        )
        after = await visible_events(
            hs, user_id, room_id, drop_ignored(event_filter.apply(after), ignored)
        )
        ctx: dict[str, Any] = {
            "start": encode_pagination_token(
                before[-1].stream_ordering - 1 if before else ev.stream_ordering - 1
            ),
            "end": encode_pagination_token(
                after[-1].stream_ordering if after else ev.stream_ordering
            ),
            "events_before": before,
            "events_after": after,
        }
        if include_profile:
            ctx["profile_info"] = await self._profiles(ev, [*before, ev, *after])
        return ctx

    async def _profiles(self, ev: StoredEvent, events: Sequence[StoredEvent]) -> dict[str, Any]:
        """The senders' display names and avatars as the room's state had them at the
        matched event (historic, not current, profiles)."""
        group = ev.state_group_before
        senders = sorted({e.sender for e in events})
        if group is None:
            return {}
        state = (
            await self.hs.event_store.state_groups(
                [group], types=[("m.room.member", s) for s in senders]
            )
        ).get(group, {})
        members = await self.hs.event_store.get_events(state.values())
        profiles: dict[str, Any] = {}
        for (_, sender), event_id in state.items():
            member = members.get(event_id)
            if member is None:
                continue
            profile = {}
            name, avatar = member.content.get("displayname"), member.content.get("avatar_url")
            if isinstance(name, str):
                profile["displayname"] = name
            if isinstance(avatar, str) and avatar.startswith("mxc://"):
                profile["avatar_url"] = avatar
            profiles[sender] = profile
        return profiles

    async def _state(
        self,
        user_id: str,
        memberships: dict[str, tuple[str, str, int]],
        events: Sequence[StoredEvent],
    ) -> dict[str, list[dict[str, Any]]]:
        """Current state of the results' rooms the user is joined to (a former member is
        not shown what changed after they left)."""
        state: dict[str, list[dict[str, Any]]] = {}
        for room_id in dict.fromkeys(e.room_id for e in events):
            if memberships.get(room_id, ("",))[0] != "join":
                continue
            current = await self.hs.events.current_state(room_id)
            state[room_id] = [client_event(e) for e in current.values()]
        return state

    @staticmethod
    def _groups(
        criteria: Criteria, found: Sequence[tuple[Hit, StoredEvent]], exhausted: bool
    ) -> dict[str, dict[str, Any]]:
        """The page's results by room or sender; each group's next_batch continues the
        search within that group alone."""
        groups: dict[str, dict[str, Any]] = {}
        for key in criteria.group_by:
            by_value: dict[str, dict[str, Any]] = {}
            last: dict[str, Hit] = {}
            for hit, ev in found:
                value = ev.room_id if key == "room_id" else ev.sender
                entry = by_value.setdefault(value, {"order": len(by_value) + 1, "results": []})
                entry["results"].append(ev.event_id)
                last[value] = hit
            if not exhausted:
                for value, entry in by_value.items():
                    hit = last[value]
                    entry["next_batch"] = Cursor(
                        criteria.by_rank, hit.rank, hit.stream_ordering, (key, value)
                    ).encode()
            groups[key] = by_value
        return groups
