"""The room-events stream (Dendrite's PDU stream): the rooms section of /sync, join,
invite, knock and leave, with timelines, state, summaries and unread counts.

Every step queries all the rooms at once (no query per room): timelines through one
LATERAL query, state through one recursive query over state groups, counts grouped.
It runs first and leaves the user's room sets in the context for the other streams.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from homeserver.accounts.ignored import drop_ignored
from homeserver.rooms.filtering import SyncFilter
from homeserver.rooms.serialize import client_event
from homeserver.rooms.visibility import filter_visible
from homeserver.sync.caches import SyncCaches
from homeserver.sync.context import SyncContext
from homeserver.sync.lazy_members import LazyMembersSent
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider
from homeserver.sync.unread import UnreadCounter
from homeserver.tokens import encode_pagination_token
from storage.events import EventStore, StoredEvent
from storage.membership import MembershipStore
from storage.out_of_band import OutOfBandMembership, OutOfBandStore
from storage.shared_reads import SharedReads
from storage.state_group_cache import StateGroupCache

if TYPE_CHECKING:
    from homeserver.relations.service import RelationsService

DEFAULT_TIMELINE_LIMIT = 10
# A timeline filter that selects events scans back this many more batches at most (each
# four times the last, up to the cap) to fill its limit with events it keeps.
FILTERED_SCAN_ROUNDS = 4
FILTERED_SCAN_MAX_BATCH = 1000
# A timeline whose events history visibility hides scans back at most this many batches
# of max(2 * limit, 10) events (as Synapse) for events the user may see: rare (a rejoin
# or a fresh join to a "joined"/"invited" room), and bounded, as most of what lies
# behind is hidden too.
VISIBILITY_SCAN_ROUNDS = 5


def stripped_membership_state(
    member_ev: StoredEvent, out_of_band: dict[str, OutOfBandMembership]
) -> list[dict[str, Any]]:
    """The stripped room state an invitee or knocker is shown, ending with their member
    event. `out_of_band`: the user's out-of-band memberships, read when `member_ev` is an
    outlier (the membership reached us without the room)."""
    stripped = (member_ev.unsigned or {}).get("invite_room_state")
    if member_ev.status is not None:
        oob = out_of_band.get(member_ev.room_id)
        stripped = oob.stripped_state if oob is not None else []
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
    return stripped


class RoomsStream(StreamProvider):
    stream = "events"

    def __init__(
        self,
        events: EventStore,
        memberships: MembershipStore,
        out_of_band: OutOfBandStore,
        caches: SyncCaches,
        unread: UnreadCounter,
        notifier: Notifier,
        relations: RelationsService,
    ):
        self.events = events
        self.relations = relations
        self.memberships = memberships
        self.out_of_band = out_of_band
        self.caches = caches
        self.unread = unread
        self.notifier = notifier
        self.lazy_sent = LazyMembersSent()
        self.shared = SharedReads()
        self.state_groups = StateGroupCache(events)

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
        ctx.ignored = await self.caches.ignored(ctx.user_id)
        ctx.joined_room_ids = {r for r, (m, _, _) in memberships.items() if m == "join"}
        changes: list[StoredEvent] = []
        joined_since: set[str] = set()  # rooms the user (re)joined in this batch
        # The user's own member events wake them: without one, there is nothing to look up.
        if ctx.since is not None and self.notifier.changed_since(
            ctx.user_id, "events", ctx.since["events"]
        ):
            changes = await self._membership_changes(ctx, ctx.since["events"])
            for ev in changes:
                if ev.content.get("membership") == "join":
                    prev = (ev.unsigned or {}).get("prev_content", {}).get("membership")
                    if prev != "join":
                        joined_since.add(ev.room_id)
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
                *self.notifier.changed_among(ctx.joined_room_ids, "events", ctx.since["events"]),
                *(ctx.newly_joined_room_ids & ctx.joined_room_ids),
            }
        candidates = {r for r in candidates if rooms_filter.allows_room(r)}
        if candidates:
            await self._joined_rooms(ctx, sorted(candidates), memberships, join_section)
        if ctx.since is not None and not ctx.full_state:
            await self._read_rooms(ctx, candidates, memberships, join_section)

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
            if member_ev is None or (membership == "invite" and member_ev.sender in ctx.ignored):
                continue  # an invite from an ignored user is not shown (spec)
            if member_ev.status is not None and out_of_band is None:
                out_of_band = await self.out_of_band.for_user(ctx.user_id)
            stripped = stripped_membership_state(member_ev, out_of_band or {})
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
            # A room joined and left within the batch is new to the client: its whole state.
            await self._left_rooms(
                ctx, sorted(left), memberships, leave_section, left & joined_since
            )

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
        timeline_filter = ctx.sync_filter.timeline
        selective = timeline_filter.selects_events()
        for (room_after, room_upto), ids in groups.items():
            if room_after is None:
                recent = await self.events.recent_events_for_rooms(
                    ids, room_after, room_upto, limit + 1
                )
            else:
                # An incremental sync's timelines: the same for every member woken by
                # the same change.
                recent = await self.shared.get(
                    ("timelines", tuple(ids), room_after, room_upto, limit + 1),
                    partial(
                        self.events.recent_events_for_rooms, ids, room_after, room_upto, limit + 1
                    ),
                )
            for room_id in ids:
                events = recent.get(room_id, [])
                if selective:
                    events = await self._filtered_recent(
                        room_id, events, room_after, limit, timeline_filter.apply
                    )
                limited = len(events) > limit
                shown = events[-limit:] if limit else []
                if ctx.since is not None and room_id in fresh:
                    # A room newly joined in an incremental sync: its history before the
                    # timeline is unknown to the client, so limited unless the timeline
                    # starts at the room's creation (as Synapse marks it; SyTest).
                    limited = limited or not shown or shown[0].type != "m.room.create"
                result[room_id] = (shown, limited)
        return result

    async def _filtered_recent(
        self,
        room_id: str,
        fetched: list[StoredEvent],
        after: int | None,
        limit: int,
        keep: Callable[[list[StoredEvent]], list[StoredEvent]],
    ) -> list[StoredEvent]:
        """The newest `limit + 1` events the timeline filter keeps, oldest first: the limit
        counts the events shown, not the events scanned (spec: the filter applies before
        the limit). Scans back in growing batches, a bounded number of times."""
        kept = keep(fetched)
        batch = limit + 1
        for _ in range(FILTERED_SCAN_ROUNDS):
            if len(kept) > limit or len(fetched) < batch or not fetched:
                break
            batch = min(batch * 4, FILTERED_SCAN_MAX_BATCH)
            older = (
                await self.events.recent_events_for_rooms(
                    [room_id], after, fetched[0].stream_ordering - 1, batch
                )
            ).get(room_id, [])
            fetched = older
            kept = keep(older) + kept
        return kept

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
            events, limited = timelines[room_id]
            shown = await self._visible(ctx, room_id, events, memberships, upto[room_id])
            if limited and len(shown) < len(events):
                # History visibility hid part of a full timeline: older events the user
                # may see take their places (the limit counts events shown, as Synapse).
                events, shown, limited = await self._page_back_visible(
                    ctx, room_id, events, shown, limit, memberships, upto[room_id], fresh
                )
                timelines[room_id] = (events, limited)
            visible[room_id] = drop_ignored(shown, ctx.ignored)

        # State: at the start of the timeline; for a limited incremental sync, what changed
        # between `since` and the start of the timeline.
        need_full = {r for r in room_ids if ctx.since is None or ctx.full_state or r in fresh}
        need_diff = {r for r in room_ids if r not in need_full and timelines[r][1]}
        lazy = f.lazy_load_members
        # Lazy loading, an incremental sync sends its senders' member events too: the
        # state at the timeline's start is needed for every room with a timeline.
        need_senders = {r for r in room_ids if r not in need_full and visible[r]} if lazy else set()
        start_groups: dict[str, int | None] = {}
        for room_id in need_full | need_diff | need_senders:
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
        # Rooms needing their senders' member events alone resolve just those entries: a
        # message to a room of 10,000 members must not read 10,000 rows for every member's
        # /sync it wakes.
        senders_only = need_senders - need_full - need_diff
        resolved = await self.state_groups.resolve(
            [
                *(g for r, g in start_groups.items() if r not in senders_only),
                *since_groups.values(),
            ]
        )
        if senders_only:
            wanted = sorted({e.sender for r in senders_only for e in visible[r]})
            groups = sorted({g for r in senders_only if (g := start_groups[r]) is not None})
            # State groups never change: every member woken by one message asks this.
            senders_state = await self.shared.get(
                ("senders", tuple(groups), tuple(wanted)),
                partial(
                    self.events.state_groups,
                    groups,
                    [("m.room.member", sender) for sender in wanted],
                ),
            )
            resolved = {**senders_state, **resolved}

        def state_of(group: int | None) -> dict:
            return resolved.get(group, {}) if group is not None else {}

        state_ids: dict[str, dict] = {}
        for room_id in need_full:
            state_ids[room_id] = state_of(start_groups.get(room_id))
        for room_id in need_diff:
            start = state_of(start_groups.get(room_id))
            before = state_of(since_groups.get(room_id))
            state_ids[room_id] = {k: v for k, v in start.items() if before.get(k) != v}

        for room_id, ids in state_ids.items():
            timeline_ids = {e.event_id for e in visible[room_id]}
            senders = {e.sender for e in visible[room_id]} | {ctx.user_id}
            state_ids[room_id] = {
                k: v
                for k, v in ids.items()
                if v not in timeline_ids
                # A gap's state changes are all sent, members included (spec: lazy
                # loading sends "the membership events of the senders" in addition).
                and (not lazy or room_id in need_diff or k[0] != "m.room.member" or k[1] in senders)
            }
        if lazy:
            self._add_lazy_members(
                ctx, f, visible, need_full, need_senders, state_ids, state_of, start_groups
            )
        state_events = await self.events.get_events(
            {v for ids in state_ids.values() for v in ids.values()}
        )

        shown_by_room = {r: f.timeline.apply(visible[r]) for r in room_ids}
        # Bundled aggregations of every room's timeline in one batch.
        bundles = await self.relations.bundle(
            (e for shown in shown_by_room.values() for e in shown),
            ctx.user_id,
            ctx.device_id,
            with_room_id=False,
            ignored=sorted(ctx.ignored),
            position=ctx.now["events"],
        )

        def as_format(served: dict[str, Any], ev: StoredEvent) -> dict[str, Any]:
            return _as_format(f, served, ev)

        entries: dict[str, dict[str, Any]] = {}
        for room_id in room_ids:
            events, limited = timelines[room_id]
            shown = shown_by_room[room_id]
            prev = (events[0].stream_ordering - 1) if events else upto[room_id]
            whole_history = bool(events) and events[0].type == "m.room.create"
            if not limited and (ctx.since is None or ctx.full_state) and whole_history:
                # The room's whole history is in the timeline. Synapse hands out the
                # sync's own position then, from which /messages pages back over the
                # same events; clients and SyTest (10apidoc/34room-messages) expect a
                # page of events from it, not an empty one. A room joined over
                # federation has history before the join to backfill: paged from there.
                prev = upto[room_id]
            state = [
                state_events[v] for v in state_ids.get(room_id, {}).values() if v in state_events
            ]
            entries[room_id] = {
                "timeline": {
                    "events": [
                        as_format(
                            client_event(e, ctx.device_id, with_room_id=False, relations=bundles),
                            e,
                        )
                        for e in shown
                    ],
                    "limited": limited,
                    "prev_batch": encode_pagination_token(prev),
                },
                "state": {
                    "events": [
                        as_format(client_event(e, with_room_id=False), e)
                        for e in f.state.apply(state)
                    ]
                },
            }
        return entries

    async def _visible(
        self,
        ctx: SyncContext,
        room_id: str,
        events: list[StoredEvent],
        memberships: dict[str, tuple[str, str, int]],
        upto: int,
    ) -> list[StoredEvent]:
        """The events of `events` the user may see (current state always, for a member)."""
        membership, _, ordering = memberships.get(room_id, (None, "", 0))
        shown = await filter_visible(
            self.events,
            ctx.user_id,
            events,
            membership,
            ordering if membership == "join" else None,
        )
        if membership == "join" and len(shown) < len(events):
            shown = await self._with_current_state(room_id, events, shown, upto)
        return shown

    async def _page_back_visible(
        self,
        ctx: SyncContext,
        room_id: str,
        events: list[StoredEvent],
        shown: list[StoredEvent],
        limit: int,
        memberships: dict[str, tuple[str, str, int]],
        upto: int,
        fresh: set[str],
    ) -> tuple[list[StoredEvent], list[StoredEvent], bool]:
        """(timeline events, those shown, limited) after scanning back before `events`
        (VISIBILITY_SCAN_ROUNDS batches at most) until `limit` events are shown. Runs
        only when history visibility hid events of a full timeline."""
        after = None
        if ctx.since is not None and not ctx.full_state and room_id not in fresh:
            after = ctx.since["events"]  # as _timelines bounds it
        timeline_filter = ctx.sync_filter.timeline
        selective = timeline_filter.selects_events()
        batch = min(max(2 * limit, 10), FILTERED_SCAN_MAX_BATCH)
        more = True
        for _ in range(VISIBILITY_SCAN_ROUNDS):
            if len(shown) >= limit or not events:
                break
            older = (
                await self.events.recent_events_for_rooms(
                    [room_id], after, events[0].stream_ordering - 1, batch
                )
            ).get(room_id, [])
            more = len(older) == batch
            if selective:
                older = timeline_filter.apply(older)
            shown = await self._visible(ctx, room_id, older, memberships, upto) + shown
            events = older + events
            if not more:
                break
        if len(shown) > limit:
            shown = shown[-limit:]
            more = True
        if shown:
            # The timeline starts at its first event shown.
            first = shown[0].stream_ordering
            more = more or any(e.stream_ordering < first for e in events)
            events = [e for e in events if e.stream_ordering >= first]
        if ctx.since is not None and room_id in fresh:
            more = more or not events or events[0].type != "m.room.create"
        return events, shown, more

    async def _with_current_state(
        self, room_id: str, events: list[StoredEvent], shown: list[StoredEvent], upto: int
    ) -> list[StoredEvent]:
        """A member sees the room's current state even where history visibility hides the
        moment it was set (a join while they were away from a "joined" room): hidden
        timeline events that are current state are shown (as Synapse does)."""
        shown_ids = {e.event_id for e in shown}
        hidden_state = [
            e for e in events if e.state_key is not None and e.event_id not in shown_ids
        ]
        if not hidden_state:
            return shown
        group = (await self.events.last_state_groups_before([room_id], upto)).get(room_id)
        current = (await self.events.state_groups([group])).get(group, {}) if group else {}
        current_ids = set(current.values())
        keep = shown_ids | {e.event_id for e in hidden_state if e.event_id in current_ids}
        return [e for e in events if e.event_id in keep]

    def _add_lazy_members(
        self,
        ctx: SyncContext,
        f: SyncFilter,
        visible: dict[str, list[StoredEvent]],
        need_full: set[str],
        need_senders: set[str],
        state_ids: dict[str, dict],
        state_of: Callable[[int | None], dict],
        start_groups: dict[str, int | None],
    ) -> None:
        """Lazy loading: an incremental sync adds its timeline senders' member events the
        device has not had (all of them with include_redundant_members), and what each
        device was sent is remembered."""
        device = ctx.device_id or ""
        redundant = f.state.include_redundant_members
        for room_id in need_senders:
            timeline_ids = {e.event_id for e in visible[room_id]}
            start = state_of(start_groups.get(room_id))
            already = self.lazy_sent.sent(ctx.user_id, device, room_id)
            ids = state_ids.setdefault(room_id, {})
            for sender in {e.sender for e in visible[room_id]}:
                event_id = start.get(("m.room.member", sender))
                if event_id is None or event_id in timeline_ids:
                    continue
                if redundant or already.get(sender) != event_id:
                    ids[("m.room.member", sender)] = event_id
        for room_id in need_full | need_senders | set(state_ids):
            members = {
                k[1]: v for k, v in state_ids.get(room_id, {}).items() if k[0] == "m.room.member"
            }
            members.update(
                {
                    e.state_key: e.event_id
                    for e in visible[room_id]
                    if e.type == "m.room.member" and e.state_key is not None
                }
            )
            self.lazy_sent.record(ctx.user_id, device, room_id, members, room_id in need_full)

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
        by_thread = ctx.sync_filter.unread_thread_notifications
        joined_at = [memberships.get(r, (None, "", 0))[2] for r in room_ids]
        member_counts = {r: s.get("m.joined_member_count", 0) for r, s in summaries.items()}
        counts = await self.unread.counts(
            ctx.user_id, room_ids, joined_at, member_counts, by_thread, ctx.ignored
        )
        for room_id in room_ids:
            entry = entries[room_id]
            entry["summary"] = summaries.get(room_id, {})
            room_counts = counts[room_id]
            entry["unread_notifications"] = room_counts.main
            if by_thread and room_counts.threads:
                entry["unread_thread_notifications"] = room_counts.threads
            entry.setdefault("ephemeral", {"events": []})
            entry.setdefault("account_data", {"events": []})
            section[room_id] = entry

    async def _read_rooms(
        self, ctx: SyncContext, shown: set[str], memberships: dict, section: dict[str, Any]
    ) -> None:
        """Joined rooms where nothing happened but the user's own read receipt moved: their
        unread counts changed, and a client takes the counts of any entry it gets (the
        receipts provider would otherwise add one claiming zero)."""
        since = ctx.since["receipts"] if ctx.since is not None else 0
        if not self.notifier.changed_since(ctx.user_id, "receipts", since):
            return
        rest = [
            r for r in sorted(ctx.joined_room_ids - shown) if ctx.sync_filter.rooms.allows_room(r)
        ]
        read = await self.unread.rooms_read(ctx.user_id, rest, since, ctx.now["receipts"])
        if not read:
            return
        summaries = await self._summaries(ctx, read)
        by_thread = ctx.sync_filter.unread_thread_notifications
        counts = await self.unread.counts(
            ctx.user_id,
            read,
            [memberships.get(r, (None, "", 0))[2] for r in read],
            {r: s.get("m.joined_member_count", 0) for r, s in summaries.items()},
            by_thread,
            ctx.ignored,
        )
        for room_id in read:
            entry: dict[str, Any] = {
                "timeline": {"events": [], "limited": False},
                "state": {"events": []},
                "ephemeral": {"events": []},
                "account_data": {"events": []},
                "summary": {},
                "unread_notifications": counts[room_id].main,
            }
            if by_thread and counts[room_id].threads:
                entry["unread_thread_notifications"] = counts[room_id].threads
            section[room_id] = entry

    async def _left_rooms(
        self,
        ctx: SyncContext,
        room_ids: list[str],
        memberships: dict,
        section: dict[str, Any],
        fresh: set[str],
    ) -> None:
        # A left room we are not in (an invite rejected or a knock retracted through
        # another server, or here only when none took it): the timeline is the user's
        # own leave, which no room timeline of ours holds (as Synapse shows it; SyTest
        # 35room-invite "can receive invite and reject when remote ...").
        member_events = await self.events.get_events(memberships[r][1] for r in room_ids)
        out_of_band = {
            r: ev
            for r in room_ids
            if (ev := member_events.get(memberships[r][1])) is not None and ev.status is not None
        }
        in_room = [r for r in room_ids if r not in out_of_band]
        upto = {r: memberships[r][2] for r in in_room}
        entries = await self._room_entries(ctx, in_room, memberships, upto, fresh)
        for room_id in in_room:
            section[room_id] = {**entries[room_id], "account_data": {"events": []}}
        for room_id, ev in out_of_band.items():
            f = ctx.sync_filter
            section[room_id] = {
                "timeline": {
                    "events": [
                        _as_format(f, client_event(e, ctx.device_id, with_room_id=False), e)
                        for e in f.timeline.apply([ev])
                    ],
                    "limited": False,
                    "prev_batch": encode_pagination_token(memberships[room_id][2] - 1),
                },
                "state": {"events": []},
                "account_data": {"events": []},
            }

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


def _as_format(f: SyncFilter, served: dict[str, Any], ev: StoredEvent) -> dict[str, Any]:
    """event_format "federation": the PDU as servers exchange it, with its ID and the
    client's unsigned data."""
    if f.event_format != "federation":
        return served
    return {**ev.event, "event_id": ev.event_id, "unsigned": served.get("unsigned", {})}
