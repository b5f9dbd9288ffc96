"""Notification and highlight counts per room (and per thread), for /sync v2 and sliding
sync alike."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from homeserver.accounts.ignored import hidden
from homeserver.metrics import process_cache_lookups
from homeserver.push.evaluator import PushContext, evaluate, highlights, notifies
from homeserver.push.rules import PushRules
from homeserver.sync.caches import SyncCaches
from homeserver.sync.notifier import Notifier, state_key_of
from storage.ephemeral import EphemeralStore
from storage.events import EventStore
from storage.shared_reads import SharedReads

# Unread counts look at this many of the newest unread events per room at most.
MAX_UNREAD = 100
# A window's verdict bits per event.
_NOTIFIES = 1
_HIGHLIGHTS = 2
# (user, room, by thread) entries of the unread counts cache.
UNREAD_CACHE_SIZE = 100_000
# (user, event) push rule verdicts kept for unread events.
VERDICT_CACHE_SIZE = 50_000
# Events whose evaluation memos are kept (the newest: what woken /syncs count).
_MEMOS = 1_024
_unread_hits = process_cache_lookups.labels("unread_counts", "hit")
_unread_misses = process_cache_lookups.labels("unread_counts", "miss")
# Entries brought up to date with the events since, without counting afresh.
_unread_grown = process_cache_lookups.labels("unread_counts", "grown")


@dataclass
class UnreadCounts:
    """A room's unread counts: the room's (or only its main timeline's, when counted by
    thread) and those of each thread root with any."""

    main: dict[str, int] = field(
        default_factory=lambda: {"notification_count": 0, "highlight_count": 0}
    )
    threads: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    # Positions of events, receipts and account data when counted.
    at: tuple[int, int, int]
    joined: int
    members: int
    counts: UnreadCounts
    # The verdicts on the unread events from others that the counts were taken over (the
    # newest MAX_UNREAD), oldest first, one byte each (_NOTIFIES, _HIGHLIGHTS): new
    # events slide the window forward without evaluating the older ones again.
    window: bytes
    # Per event of the window, its thread root (None: the main timeline); None when
    # counted without threads or when none of them is in a thread.
    threads: tuple[str | None, ...] | None


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
        self._cached: OrderedDict[tuple[str, str, bool], _Entry] = OrderedDict()
        self.shared = SharedReads()
        # (user, event) -> (what the verdict was reached from, (notifies, highlights)).
        self._verdicts: OrderedDict[tuple[str, str], tuple] = OrderedDict()
        # event ID -> (the event, its evaluation memo).
        self._memos: OrderedDict[str, tuple[dict, dict[int, bool]]] = OrderedDict()

    def _valid(self, user_id: str, room_id: str, entry: _Entry, joined: int, members: int) -> bool:
        changed = self.notifier.changed_since
        return self._extendable(user_id, room_id, entry, joined, members) and not changed(
            room_id, "events", entry.at[0]
        )

    def _extendable(
        self, user_id: str, room_id: str, entry: _Entry, joined: int, members: int
    ) -> bool:
        """Whether the entry's counts plus those of the room's events since hold: the
        user's receipts and push rules, the room's state (power levels, the user's display
        name, the member count) unchanged."""
        events_pos, receipts_pos, account_pos = entry.at
        changed = self.notifier.changed_since
        return (
            entry.joined == joined
            and entry.members == members
            and not changed(user_id, "receipts", receipts_pos)
            and not changed(user_id, "account_data", account_pos)
            and not changed(state_key_of(room_id), "events", events_pos)
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
        """The user's push rules evaluated over the events from others after their read
        receipts (and after they joined: `joined_at`, the ordering of their membership per
        room), at most MAX_UNREAD per room. Membership changes are left out: they notify
        no one but their target (.m.rule.member_event; the push worker evaluates them for
        their target alone), and counting them would re-evaluate a big room's every join
        on each member's /sync. With `by_thread`, events in threads are counted per
        thread root instead of in the room's counts (the main timeline's). Events of
        `ignored` users count nowhere.

        Cached per (user, room): while nothing the counts depend on moved, the entry
        answers; when only new events arrived, they are added to it, from one read of
        the room's new events that every member's /sync woken by them shares."""
        # Read the positions first: a change committed meanwhile invalidates the entries.
        positions = self.notifier.positions
        at = (positions["events"], positions["receipts"], positions["account_data"])
        found: dict[str, UnreadCounts] = {}
        grown: list[tuple[str, int, _Entry]] = []
        missing: list[tuple[str, int]] = []
        for room_id, joined in zip(room_ids, joined_at, strict=True):
            entry = self._cached.get((user_id, room_id, by_thread))
            members = member_counts.get(room_id, 0)
            if entry is None or not self._extendable(user_id, room_id, entry, joined, members):
                missing.append((room_id, joined))
            elif self._valid(user_id, room_id, entry, joined, members):
                self._cached.move_to_end((user_id, room_id, by_thread))
                found[room_id] = _copy(entry.counts)
            else:
                grown.append((room_id, joined, entry))
        _unread_hits.inc(len(found))
        windows: dict[str, tuple[bytes, tuple[str | None, ...] | None]] = {}
        if grown:
            since = tuple((room_id, entry.at[0]) for room_id, _, entry in grown)
            new_rows = await self.shared.get(
                ("unread since", since, at[0]),
                partial(self.ephemeral.events_for_unread_between, since, at[0], MAX_UNREAD + 1),
            )
            per_room: dict[str, list[tuple[str, str, str | None]]] = {}
            # Rooms where counting afresh is needed: a redaction changes what an earlier
            # event counts for, and more new events than were read may hide others.
            recount: set[str] = set()
            fetched: dict[str, int] = {}
            for room_id, event_id, event_type, sender, thread_id in new_rows:
                fetched[room_id] = fetched.get(room_id, 0) + 1
                if event_type == "m.room.redaction" or fetched[room_id] > MAX_UNREAD:
                    recount.add(room_id)
                if sender != user_id:
                    per_room.setdefault(room_id, []).append((room_id, event_id, thread_id))
            adding: list[tuple[str, str, str | None]] = []
            for room_id, joined, entry in grown:
                if room_id in recount:
                    missing.append((room_id, joined))
                else:
                    windows[room_id] = (entry.window, entry.threads)
                    adding.extend(per_room.get(room_id, []))
            codes = await self._codes(user_id, adding, member_counts, ignored)
            _slide(windows, adding, codes, by_thread)
            _unread_grown.inc(len(windows))
        _unread_misses.inc(len(missing))
        if missing:
            rows = await self.ephemeral.unread_event_ids(
                [r for r, _ in missing], user_id, [j for _, j in missing], MAX_UNREAD, at[0]
            )
            codes = await self._codes(user_id, rows, member_counts, ignored)
            for room_id, _ in missing:
                windows[room_id] = (b"", None)
            _slide(windows, rows, codes, by_thread)
        joined_of = dict(zip(room_ids, joined_at, strict=True))
        for room_id, (window, threads) in windows.items():
            counts = _window_counts(window, threads)
            self._cached[(user_id, room_id, by_thread)] = _Entry(
                at, joined_of[room_id], member_counts.get(room_id, 0), counts, window, threads
            )
            found[room_id] = _copy(counts)
        while len(self._cached) > UNREAD_CACHE_SIZE:
            self._cached.popitem(last=False)
        return found

    async def _codes(
        self,
        user_id: str,
        rows: Sequence[tuple[str, str, str | None]],
        member_counts: Mapping[str, int],
        ignored: Collection[str],
    ) -> list[int]:
        """The verdicts of the user's push rules on `rows` (room, event id, thread root),
        as window bits: 0 for an event that does not notify (or is gone, or from an
        ignored user)."""
        if not rows:
            return []
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
        codes: list[int] = []
        for room_id, event_id, _ in rows:
            ev = events.get(event_id)
            if ev is None or hidden(ev.sender, ev.state_key, ignored):
                codes.append(0)
                continue
            notify, highlight = self.verdict(user_id, event_id, ev.event, rules, contexts[room_id])
            codes.append((_NOTIFIES | (_HIGHLIGHTS if highlight else 0)) if notify else 0)
        return codes

    def verdict(
        self, user_id: str, event_id: str, event: dict, rules: list, ctx: PushContext
    ) -> tuple[bool, bool]:
        """(notifies, highlights) of an event for the user (see `actions`)."""
        return self._evaluated(user_id, event_id, event, rules, ctx)[1]

    def actions(
        self, user_id: str, event_id: str, event: dict, rules: list, ctx: PushContext
    ) -> list | None:
        """The actions of the user's push rules on an event. Remembered: an unread message
        is counted on every /sync until it is read, the push worker asks the same of every
        message for every member, and evaluating the rules is most of what either costs.
        An answer holds while its inputs are the very same objects (the cached rules,
        power levels and event, which are replaced when they change; holding them keeps
        them from being mistaken for new ones) and the same values."""
        return self._evaluated(user_id, event_id, event, rules, ctx)[0]

    def _evaluated(
        self, user_id: str, event_id: str, event: dict, rules: list, ctx: PushContext
    ) -> tuple[list | None, tuple[bool, bool]]:
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
        actions = evaluate(rules, event, ctx, self._memo(event_id, event))
        answer = (actions, (notifies(actions), highlights(actions)))
        self._verdicts[key] = (fingerprint, answer)
        if len(self._verdicts) > VERDICT_CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return answer

    def _memo(self, event_id: str, event: dict) -> dict[int, bool]:
        """The evaluation memo of an event (see push.evaluator.evaluate), kept while the
        very same event object is asked about (a redaction replaces it)."""
        known = self._memos.get(event_id)
        if known is not None and known[0] is event:
            self._memos.move_to_end(event_id)
            return known[1]
        memo: dict[int, bool] = {}
        self._memos[event_id] = (event, memo)
        if len(self._memos) > _MEMOS:
            self._memos.popitem(last=False)
        return memo


def _slide(
    windows: dict[str, tuple[bytes, tuple[str | None, ...] | None]],
    rows: Sequence[tuple[str, str, str | None]],
    codes: Sequence[int],
    by_thread: bool,
) -> None:
    """Appends the verdicts on `rows` (oldest first per room) to their rooms' windows,
    which keep their newest MAX_UNREAD: what counting the newest MAX_UNREAD unread events
    afresh would look at, as long as nothing older changed (a redaction, a receipt)."""
    added: dict[str, tuple[bytearray, list[str | None]]] = {}
    for (room_id, _, thread_id), code in zip(rows, codes, strict=True):
        window, threads = added.setdefault(room_id, (bytearray(), []))
        window.append(code)
        threads.append(thread_id if by_thread else None)
    for room_id, (window, threads) in added.items():
        old_window, old_threads = windows[room_id]
        kept = ((old_threads or (None,) * len(old_window)) + tuple(threads))[-MAX_UNREAD:]
        windows[room_id] = ((old_window + window)[-MAX_UNREAD:], kept if any(kept) else None)


def _window_counts(window: bytes, threads: tuple[str | None, ...] | None) -> UnreadCounts:
    counts = UnreadCounts()
    for i, code in enumerate(window):
        if not code & _NOTIFIES:
            continue
        thread_id = threads[i] if threads is not None else None
        target = counts.main
        if thread_id is not None:
            target = counts.threads.setdefault(
                thread_id, {"notification_count": 0, "highlight_count": 0}
            )
        target["notification_count"] += 1
        if code & _HIGHLIGHTS:
            target["highlight_count"] += 1
    return counts


def _copy(counts: UnreadCounts) -> UnreadCounts:
    """Callers put these dicts in responses (and may change them): the cache keeps its own."""
    return UnreadCounts(dict(counts.main), {t: dict(c) for t, c in counts.threads.items()})
