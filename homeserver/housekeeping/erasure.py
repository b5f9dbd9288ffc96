"""Erasure of a deactivated user's events (POST /account/deactivate with `erase: true`).

The spec (account_deactivation.yaml, `erase`): users and servers that join later are served
redacted copies of the user's events; no redaction events are sent and the erasure is not
federated. Here the user's events are rewritten in place to their redacted form, as a
redaction does to its target (storage/events.py): hashes and signatures stay, so the copy
remains verifiable, and everyone who reads it from now on gets the redacted copy. Those who
fetched the events before keep their own copies.

Which events: every non-state event (messages, reactions, ...) and every membership event
the user sent (their displayname and avatar; redaction keeps `membership`, all that auth
needs). Other state events stay whole: the rewritten JSON is also what auth checks and
clients' room state read, and redaction keeps too little of some of them: `m.room.create`
before room version 11 keeps only `creator` (losing `m.federate`), and
`m.room.encryption` keeps nothing, so a client could take the room for unencrypted.

Deactivation only records the request (a `user_erasures` row, in the same transaction as
the deactivation); this task does the work in batches, each batch and the cursor moving in
one transaction, so a restart resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from homeserver.events.redaction import prune_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.jsonutil import canonical_str
from storage.housekeeping import ErasureRow, HousekeepingStore


class Eraser:
    def __init__(
        self,
        store: HousekeepingStore,
        invalidate_event: Callable[[str], None],
        batch: int,
        max_batches_per_run: int = 50,
    ):
        self.store = store
        # The event cache of this process; see the README's gaps for other processes.
        self.invalidate_event = invalidate_event
        self.batch = batch
        self.max_batches_per_run = max_batches_per_run

    async def run(self, _now_ms: int) -> int:
        """Advances the pending erasures, oldest request first, by at most
        max_batches_per_run batches in all (the rest waits for the next run); events done."""
        done = 0
        budget = self.max_batches_per_run
        for user_id in await self.store.pending_erasures():
            while budget > 0:
                budget -= 1
                count = await self.step(user_id)
                done += count
                if count == 0:
                    break
            if budget <= 0:
                break
        return done

    async def step(self, user_id: str) -> int:
        """Rewrites the user's next batch of events; 0 (and the erasure finished) when no
        event is left."""
        rows = await self.store.erasure_batch(user_id, self.batch)
        if not rows:
            await self.store.finish_erasure(user_id)
            return 0
        rewrites = [redacted_copy(row) for row in rows]
        await self.store.apply_erasure(user_id, rewrites, rows[-1].stream_ordering)
        for row in rows:
            self.invalidate_event(row.event_id)
        return len(rows)


def redacted_copy(row: ErasureRow) -> tuple[str, str, str | None]:
    """(event_id, redacted JSON, unsigned without prev_content) of one stored event."""
    version = KNOWN_ROOM_VERSIONS.get(row.room_version)
    event = orjson.loads(row.json)
    json = canonical_str(prune_event(event, version)) if version is not None else row.json
    unsigned = orjson.loads(row.unsigned_json) if row.unsigned_json else {}
    # prev_content is the user's own earlier state (their previous displayname, say).
    unsigned.pop("prev_content", None)
    return row.event_id, json, orjson.dumps(unsigned).decode() if unsigned else None
