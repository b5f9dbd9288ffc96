"""The room-events stream (Dendrite's PDU stream): the rooms section of /sync, join,
invite, knock and leave, with timelines, state, summaries and unread counts.

Every step queries all the rooms at once (no query per room): timelines through one
LATERAL query, state through one recursive query over state groups, counts grouped.
It runs first and leaves the user's room sets in the context for the other streams.
"""

from __future__ import annotations

from typing import Any

from homeserver.push.evaluator import PushContext, evaluate, highlights, notifies
from homeserver.push.rules import PushRules
from homeserver.rooms.serialize import client_event
from homeserver.rooms.visibility import filter_visible
from homeserver.sync.caches import SyncCaches
from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider
from homeserver.tokens import encode_pagination_token
from storage.ephemeral import EphemeralStore
from storage.events import EventStore, StoredEvent
from storage.membership import MembershipStore
from storage.out_of_band import OutOfBandStore

DEFAULT_TIMELINE_LIMIT = 10
# Unread counts look at this many of the newest unread events per room at most.
MAX_UNREAD = 100


class RoomsStream(StreamProvider):
    stream = "events"

    def __init__(
        self,
        events: EventStore,
        memberships: MembershipStore,
        out_of_band: OutOfBandStore,
        ephemeral: EphemeralStore,
        caches: SyncCaches,
        push_rules: PushRules,
        notifier: Notifier,
    ):
        self.events = events
        self.memberships = memberships
        self.out_of_band = out_of_band
        self.ephemeral = ephemeral
        self.caches = caches
        self.push_rules = push_rules
        self.notifier = notifier

    async def _membership_changes(self, ctx: SyncContext, since: int) -> list[StoredEvent]:
        """The user's member events since the token: in rooms we are in, and out of band."""
        upto = ctx.now["events"]
        ids = await self.memberships.member_event_ids_between(ctx.user_id, since, upto)
        found = await self.events.get_events(ids)
        changes = [found[i] for i in ids if i in found]
        oob = await self.out_of_band.changed(ctx.user_id, since, upto)
        if oob:
            events = await self.events.get_events(o.event_id for o in oob)
            changes.extend(events[o.event_id] for o in oob if o.event_id in events)
        return changes

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        memberships = await self.caches.memberships(ctx.user_id)
        ctx.joined_room_ids = {r for r, (m, _, _) in memberships.items() if m == "join"}
        changes: list[StoredEvent] = []
        # The user's own member events wake them: without one, there is nothing to look up.
        if ctx.since is not None and self.notifier.changed_since(
            ctx.user_id, "events", ctx.since["events"]
        ):
            changes = await self._membership_changes(ctx, ctx.since["events"])
            for ev in changes:
                if ev.content.get("membership") == "join":
                    prev = (ev.unsigned or {}).get("prev_content", {}).get("membership")
                    if prev != "join" and ev.room_id in ctx.joined_room_ids:
                        ctx.newly_joined_room_ids.add(ev.room_id)
                elif ev.room_id not in ctx.joined_room_ids:
                    ctx.newly_left_room_ids.add(ev.room_id)

        rooms_filter = ctx.sync_filter.rooms
        join_section: dict[str, Any] = {}
        if ctx.since is None or ctx.full_state:
            candidates = set(ctx.joined_room_ids)
        else:
            candidates = {
                r
                for r in ctx.joined_room_ids
                if ctx.newly_joined_room_ids.__contains__(r)
                or self.notifier.changed_since(r, "events", ctx.since["events"])
            }
        candidates = {r for r in candidates if rooms_filter.allows_room(r)}
        if candidates:
            await self._joined_rooms(ctx, sorted(candidates), memberships, join_section)

        # Invites and knocks: the stripped room state with the membership event itself.
        stripped_sections: dict[str, dict[str, Any]] = {"invite": {}, "knock": {}}
        out_of_band = None
        for room_id, (membership, event_id, ordering) in memberships.items():
            section = stripped_sections.get(membership)
            if section is None or not rooms_filter.allows_room(room_id):
                continue
            if ctx.since is not None and not ctx.full_state and ordering <= ctx.since["events"]:
                continue
            if ordering > ctx.now["events"]:
                continue
            member_ev = await self.events.get_event(event_id)
            if member_ev is None:
                continue
            stripped = (member_ev.unsigned or {}).get("invite_room_state")
            if member_ev.status is not None:  # an outlier: the membership is out of band
                if out_of_band is None:
                    out_of_band = await self.out_of_band.for_user(ctx.user_id)
                stripped = out_of_band[room_id].stripped_state if room_id in out_of_band else []
            stripped = list(stripped or [])
            stripped.append(
                {
                    "type": member_ev.type,
                    "state_key": member_ev.state_key,
                    "sender": member_ev.sender,
                    "content": member_ev.content,
                    "event_id": member_ev.event_id,
                    "origin_server_ts": member_ev.event["origin_server_ts"],
                }
            )
            key = "invite_state" if membership == "invite" else "knock_state"
            section[room_id] = {key: {"events": stripped}}

        leave_section: dict[str, Any] = {}
        left = set(ctx.newly_left_room_ids)
        if ctx.since is None and ctx.sync_filter.include_leave:
            left |= {r for r, (m, _, _) in memberships.items() if m in ("leave", "ban")}
        left = {
            r
            for r in left
            if rooms_filter.allows_room(r) and memberships.get(r, ("",))[0] in ("leave", "ban")
        }
        if left:
            left -= await self.memberships.forgotten_rooms(ctx.user_id)
        if left:
            await self._left_rooms(ctx, sorted(left), memberships, leave_section)

        rooms = response.setdefault("rooms", {})
        rooms["join"] = join_section
        rooms["invite"] = stripped_sections["invite"]
        rooms["knock"] = stripped_sections["knock"]
        rooms["leave"] = leave_section

    async def _timelines(
        self,
        ctx: SyncContext,
        room_ids: list[str],
        upto: dict[str, int],
        fresh: set[str],
        limit: int,
    ) -> dict[str, tuple[list[StoredEvent], bool]]:
        """Per room: (timeline events oldest first, limited)."""
        after = None if ctx.since is None or ctx.full_state else ctx.since["events"]
        result: dict[str, tuple[list[StoredEvent], bool]] = {}
        groups: dict[tuple[int | None, int], list[str]] = {}
        for room_id in room_ids:
            room_after = None if room_id in fresh else after
            groups.setdefault((room_after, upto[room_id]), []).append(room_id)
        for (room_after, room_upto), ids in groups.items():
            recent = await self.events.recent_events_for_rooms(
                ids, room_after, room_upto, limit + 1
            )
            for room_id in ids:
                events = recent.get(room_id, [])
                limited = len(events) > limit
                result[room_id] = (events[-limit:] if limit else [], limited)
        return result

    async def _room_entries(
        self,
        ctx: SyncContext,
        room_ids: list[str],
        memberships: dict[str, tuple[str, str, int]],
        upto: dict[str, int],
        fresh: set[str],
    ) -> dict[str, dict[str, Any]]:
        f = ctx.sync_filter
        limit = f.timeline.limit if f.timeline.limit is not None else DEFAULT_TIMELINE_LIMIT
        timelines = await self._timelines(ctx, room_ids, upto, fresh, limit)

        visible: dict[str, list[StoredEvent]] = {}
        for room_id in room_ids:
            events, _ = timelines[room_id]
            membership, _, ordering = memberships.get(room_id, (None, "", 0))
            events = await filter_visible(
                self.events,
                ctx.user_id,
                events,
                membership,
                ordering if membership == "join" else None,
            )
            visible[room_id] = events

        # State: at the start of the timeline; for a limited incremental sync, what changed
        # between `since` and the start of the timeline.
        need_full = {r for r in room_ids if ctx.since is None or ctx.full_state or r in fresh}
        need_diff = {r for r in room_ids if r not in need_full and timelines[r][1]}
        start_groups: dict[str, int | None] = {}
        for room_id in need_full | need_diff:
            events, _ = timelines[room_id]
            start_groups[room_id] = events[0].state_group_before if events else None
        empty_timeline = [r for r in need_full if not timelines[r][0]]
        if empty_timeline:
            last = await self.events.last_state_groups_before(
                empty_timeline, upto[empty_timeline[0]]
            )
            start_groups.update(last)
        since_groups: dict[str, int | None] = {}
        if need_diff and ctx.since is not None:  # need_diff is empty on an initial sync
            since_groups = await self.events.last_state_groups_before(
                sorted(need_diff), ctx.since["events"]
            )
        resolved = await self.events.state_groups([*start_groups.values(), *since_groups.values()])

        def state_of(group: int | None) -> dict:
            return resolved.get(group, {}) if group is not None else {}

        state_ids: dict[str, dict] = {}
        for room_id in need_full:
            state_ids[room_id] = state_of(start_groups.get(room_id))
        for room_id in need_diff:
            start = state_of(start_groups.get(room_id))
            before = state_of(since_groups.get(room_id))
            state_ids[room_id] = {k: v for k, v in start.items() if before.get(k) != v}

        lazy = f.lazy_load_members
        for room_id, ids in state_ids.items():
            timeline_ids = {e.event_id for e in visible[room_id]}
            senders = {e.sender for e in visible[room_id]} | {ctx.user_id}
            state_ids[room_id] = {
                k: v
                for k, v in ids.items()
                if v not in timeline_ids
                and (not lazy or k[0] != "m.room.member" or k[1] in senders)
            }
        state_events = await self.events.get_events(
            {v for ids in state_ids.values() for v in ids.values()}
        )

        entries: dict[str, dict[str, Any]] = {}
        for room_id in room_ids:
            events, limited = timelines[room_id]
            shown = f.timeline.apply(visible[room_id])
            prev = (events[0].stream_ordering - 1) if events else upto[room_id]
            state = [
                state_events[v] for v in state_ids.get(room_id, {}).values() if v in state_events
            ]
            entries[room_id] = {
                "timeline": {
                    "events": [client_event(e, ctx.device_id, with_room_id=False) for e in shown],
                    "limited": limited,
                    "prev_batch": encode_pagination_token(prev),
                },
                "state": {
                    "events": [client_event(e, with_room_id=False) for e in f.state.apply(state)]
                },
            }
        return entries

    async def _joined_rooms(
        self,
        ctx: SyncContext,
        room_ids: list[str],
        memberships: dict,
        section: dict[str, Any],
    ) -> None:
        upto = dict.fromkeys(room_ids, ctx.now["events"])
        entries = await self._room_entries(
            ctx, room_ids, memberships, upto, ctx.newly_joined_room_ids
        )
        summaries = await self._summaries(ctx, room_ids)
        counts = await self._unread_counts(ctx.user_id, room_ids, memberships, summaries)
        for room_id in room_ids:
            entry = entries[room_id]
            entry["summary"] = summaries.get(room_id, {})
            entry["unread_notifications"] = counts.get(
                room_id, {"notification_count": 0, "highlight_count": 0}
            )
            entry.setdefault("ephemeral", {"events": []})
            entry.setdefault("account_data", {"events": []})
            section[room_id] = entry

    async def _left_rooms(
        self,
        ctx: SyncContext,
        room_ids: list[str],
        memberships: dict,
        section: dict[str, Any],
    ) -> None:
        upto = {r: memberships[r][2] for r in room_ids}
        entries = await self._room_entries(ctx, room_ids, memberships, upto, set())
        for room_id in room_ids:
            section[room_id] = {**entries[room_id], "account_data": {"events": []}}

    async def _summaries(self, ctx: SyncContext, room_ids: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for room_id, summary in (await self.caches.room_summaries(room_ids)).items():
            entry = {
                "m.joined_member_count": summary["joined"],
                "m.invited_member_count": summary["invited"],
            }
            # Heroes only matter for rooms that have neither a name nor a canonical alias.
            heroes = [u for u in summary["candidates"] if u != ctx.user_id][:5]
            if heroes:
                entry["m.heroes"] = heroes
            out[room_id] = entry
        return out

    async def _unread_counts(
        self, user_id: str, room_ids: list[str], memberships: dict, summaries: dict
    ) -> dict[str, dict[str, int]]:
        """Notification and highlight counts: the user's push rules evaluated over the events
        from others after their read receipt (and after they joined), at most 100 per room."""
        joined_at = [memberships.get(r, (None, "", 0))[2] for r in room_ids]
        rows = await self.ephemeral.unread_event_ids(room_ids, user_id, joined_at, MAX_UNREAD)
        counts = {r: {"notification_count": 0, "highlight_count": 0} for r in room_ids}
        if not rows:
            return counts
        rules = await self.push_rules.ranked_rules(user_id)
        events = await self.events.get_events(event_id for _, event_id in rows)
        unread_rooms = sorted({room_id for room_id, _ in rows})
        power_levels = await self.caches.power_levels(unread_rooms)
        display_name = await self.caches.display_name(user_id)
        contexts = {
            room_id: PushContext(
                user_id=user_id,
                room_member_count=summaries.get(room_id, {}).get("m.joined_member_count", 0),
                display_name=display_name,
                power_levels=power_levels.get(room_id),
            )
            for room_id in unread_rooms
        }
        for room_id, event_id in rows:
            ev = events.get(event_id)
            if ev is None:
                continue
            actions = evaluate(rules, ev.event, contexts[room_id])
            if notifies(actions):
                counts[room_id]["notification_count"] += 1
                if highlights(actions):
                    counts[room_id]["highlight_count"] += 1
        return counts
