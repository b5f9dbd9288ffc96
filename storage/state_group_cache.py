"""Resolved state groups of big rooms, kept in process memory.

A state group never changes once written, and every member's initial /sync of a big room
resolves the same one (the state at the start of the same timeline): in a room of 10,000
members, 10,000 rows read and turned into a map for each of them. Groups of at least
`MIN_ENTRIES` entries are kept, up to `MAX_ENTRIES` entries in all (a few tens of MiB);
smaller ones cost a cheap read and would only crowd the big ones out.

Callers share the maps: they must not change them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from functools import partial

from storage.events import EventStore, StateMap
from storage.shared_reads import SharedReads

MIN_ENTRIES = 1_000
MAX_ENTRIES = 200_000


class StateGroupCache:
    def __init__(self, events: EventStore, max_entries: int = MAX_ENTRIES):
        self.events = events
        self.max_entries = max_entries
        self._maps: OrderedDict[int, StateMap] = OrderedDict()
        self._entries = 0
        # Members' initial syncs arrive together: the first read is shared while it runs.
        self._reads = SharedReads(size=4, ttl_s=0.0)

    async def resolve(self, group_ids: Iterable[int | None]) -> dict[int, StateMap]:
        """EventStore.state_groups(group_ids), from memory where kept."""
        found: dict[int, StateMap] = {}
        missing = []
        for group in sorted({g for g in group_ids if g is not None}):
            known = self._maps.get(group)
            if known is None:
                missing.append(group)
            else:
                self._maps.move_to_end(group)
                found[group] = known
        if missing:
            loaded = await self._reads.get(
                tuple(missing), partial(self.events.state_groups, missing)
            )
            for group, state in loaded.items():
                found[group] = state
                if len(state) >= MIN_ENTRIES and group not in self._maps:
                    self._keep(group, state)
        return found

    def _keep(self, group: int, state: StateMap) -> None:
        self._maps[group] = state
        self._entries += len(state)
        while self._entries > self.max_entries and len(self._maps) > 1:
            _, dropped = self._maps.popitem(last=False)
            self._entries -= len(dropped)
        if self._entries > self.max_entries:  # one group bigger than the whole budget
            self._maps.clear()
            self._entries = 0
