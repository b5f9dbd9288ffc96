"""Notification and highlight counts per room (and per thread), for /sync v2 and sliding
sync alike."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from homeserver.accounts.ignored import hidden
from homeserver.metrics import process_cache_lookups
from homeserver.push.evaluator import PushContext, evaluate, highlights, notifies
from homeserver.push.rules import PushRules
from homeserver.sync.caches import SyncCaches
from homeserver.sync.notifier import Notifier
from storage.ephemeral import EphemeralStore
from storage.events import EventStore

# Unread counts look at this many of the newest unread events per room at most.
MAX_UNREAD = 100
# (user, room, by thread) entries of the unread counts cache.
UNREAD_CACHE_SIZE = 100_000
# (user, event) push rule verdicts kept for unread events.
VERDICT_CACHE_SIZE = 50_000
_unread_hits = process_cache_lookups.labels("unread_counts", "hit")
_unread_misses = process_cache_lookups.labels("unread_counts", "miss")


@dataclass
class UnreadCounts:
    """A room's unread counts: the room's (or only its main timeline's, when counted by
    thread) and those of each thread root with any."""

    main: dict[str, int] = field(
        default_factory=lambda: {"notification_count": 0, "highlight_count": 0}
    )
    threads: dict[str, dict[str, int]] = field(default_factory=dict)


class UnreadCounter:
    def __init__(
        self,
        ephemeral: EphemeralStore,
        events: EventStore,
        push_rules: PushRules,
        caches: SyncCaches,
        notifier: Notifier,
    ):
        self.ephemeral = ephemeral
        self.events = events
        self.push_rules = push_rules
        self.caches = caches
        self.notifier = notifier
        # (user, room, by_thread) -> (positions of events, receipts and account_data when
        # counted, joined_at, member count, counts). Everything a count depends on moves
        # one of them: an event in the room (messages, redactions, state, the user's
        # display name), a receipt of the user's, their push rules (account data); other
        # processes' commits arrive through the notifier too.
        self._cached: OrderedDict[tuple[str, str, bool], tuple] = OrderedDict()
        # (user, event) -> (what the verdict was reached from, (notifies, highlights)).
        self._verdicts: OrderedDict[tuple[str, str], tuple] = OrderedDict()

    def _valid(self, user_id: str, room_id: str, entry: tuple, joined: int, members: int) -> bool:
        (events_pos, receipts_pos, account_pos), cached_joined, cached_members, _ = entry
        changed = self.notifier.changed_since
        return (
            cached_joined == joined
            and cached_members == members
            and not changed(room_id, "events", events_pos)
            and not changed(user_id, "receipts", receipts_pos)
            and not changed(user_id, "account_data", account_pos)
        )

    async def rooms_read(
        self, user_id: str, room_ids: Sequence[str], after: int, upto: int
    ) -> list[str]:
        """Those of the rooms where the user's own read receipt moved in (after, upto]."""
        if not room_ids or upto <= after:
            return []
        return await self.ephemeral.rooms_read_by(user_id, room_ids, after, upto)

    async def counts(
        self,
        user_id: str,
        room_ids: Sequence[str],
        joined_at: Sequence[int],
        member_counts: Mapping[str, int],
        by_thread: bool = False,
        ignored: Collection[str] = (),
    ) -> dict[str, UnreadCounts]:
        """As `count`, from the cache where nothing the counts depend on has moved (the
        ignore list is account data, whose position the entries keep)."""
        found: dict[str, UnreadCounts] = {}
        missing: list[tuple[str, int]] = []
        for room_id, joined in zip(room_ids, joined_at, strict=True):
            key = (user_id, room_id, by_thread)
            entry = self._cached.get(key)
            if entry is not None and self._valid(
                user_id, room_id, entry, joined, member_counts.get(room_id, 0)
            ):
                self._cached.move_to_end(key)
                found[room_id] = _copy(entry[3])
            else:
                missing.append((room_id, joined))
        _unread_hits.inc(len(found))
        _unread_misses.inc(len(missing))
        if not missing:
            return found
        # Read the positions first: a change committed meanwhile invalidates the entry.
        positions = self.notifier.positions
        at = (positions["events"], positions["receipts"], positions["account_data"])
        counted = await self.count(
            user_id,
            [r for r, _ in missing],
            [j for _, j in missing],
            member_counts,
            by_thread,
            ignored,
        )
        for room_id, joined in missing:
            members = member_counts.get(room_id, 0)
            self._cached[(user_id, room_id, by_thread)] = (
                at,
                joined,
                members,
                _copy(counted[room_id]),
            )
            found[room_id] = counted[room_id]
        while len(self._cached) > UNREAD_CACHE_SIZE:
            self._cached.popitem(last=False)
        return found

    async def count(
        self,
        user_id: str,
        room_ids: Sequence[str],
        joined_at: Sequence[int],
        member_counts: Mapping[str, int],
        by_thread: bool = False,
        ignored: Collection[str] = (),
    ) -> dict[str, UnreadCounts]:
        """The user's push rules evaluated over the events from others after their read
        receipts (and after they joined: `joined_at`, the ordering of their membership per
        room), at most 100 per room. Membership changes are left out: they notify no one
        but their target (.m.rule.member_event; the push worker evaluates them for their
        target alone), and counting them would re-evaluate a big room's every join on
        each member's /sync. With `by_thread`, events in threads are counted per
        thread root instead of in the room's counts (the main timeline's). Events of
        `ignored` users count nowhere."""
        rows = await self.ephemeral.unread_event_ids(
            list(room_ids), user_id, list(joined_at), MAX_UNREAD
        )
        counts = {r: UnreadCounts() for r in room_ids}
        if not rows:
            return counts
        rules = await self.push_rules.ranked_rules(user_id)
        events = await self.events.get_events(event_id for _, event_id, _ in rows)
        unread_rooms = sorted({room_id for room_id, _, _ in rows})
        power_levels = await self.caches.power_levels(unread_rooms)
        display_name = await self.caches.display_name(user_id)
        contexts = {
            room_id: PushContext(
                user_id=user_id,
                room_member_count=member_counts.get(room_id, 0),
                display_name=display_name,
                power_levels=power_levels.get(room_id),
            )
            for room_id in unread_rooms
        }
        for room_id, event_id, thread_id in rows:
            ev = events.get(event_id)
            if ev is None or hidden(ev.sender, ev.state_key, ignored):
                continue
            notify, highlight = self._verdict(user_id, event_id, ev.event, rules, contexts[room_id])
            if notify:
                room = counts[room_id]
                target = room.main
                if by_thread and thread_id is not None:
                    target = room.threads.setdefault(
                        thread_id, {"notification_count": 0, "highlight_count": 0}
                    )
                target["notification_count"] += 1
                if highlight:
                    target["highlight_count"] += 1
        return counts

    def _verdict(
        self, user_id: str, event_id: str, event: dict, rules: list, ctx: PushContext
    ) -> tuple[bool, bool]:
        """(notifies, highlights) of an event for the user. Remembered: an unread message
        is counted on every /sync until it is read, and evaluating the rules is most of
        what counting costs. A verdict holds while its inputs are the very same objects
        (the cached rules, power levels and event, which are replaced when they change;
        holding them keeps them from being mistaken for new ones) and the same values."""
        key = (user_id, event_id)
        fingerprint = (rules, ctx.power_levels, event, ctx.room_member_count, ctx.display_name)
        known = self._verdicts.get(key)
        if known is not None:
            seen = known[0]
            if (
                seen[0] is rules
                and seen[1] is ctx.power_levels
                and seen[2] is event
                and seen[3:] == fingerprint[3:]
            ):
                self._verdicts.move_to_end(key)
                return known[1]
        actions = evaluate(rules, event, ctx)
        verdict = (notifies(actions), highlights(actions))
        self._verdicts[key] = (fingerprint, verdict)
        if len(self._verdicts) > VERDICT_CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return verdict


def _copy(counts: UnreadCounts) -> UnreadCounts:
    """Callers put these dicts in responses (and may change them): the cache keeps its own."""
    return UnreadCounts(dict(counts.main), {t: dict(c) for t, c in counts.threads.items()})
