"""Relations between events: the bundled aggregations every event-serving endpoint adds,
the /relations pages and the thread list.

`bundle` is the one batched step: given every event a response will carry, it reads the
thread summaries, latest edits and references of all of them (and of the threads' latest
events) in one query, loads the events those name in one batch, and
returns `unsigned["m.relations"]` per event for `client_event(..., relations=...)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from homeserver.accounts.ignored import drop_ignored, ignored_users
from homeserver.http.errors import MatrixError, not_found
from homeserver.rooms.history import readable_membership, visible_event, visible_events
from homeserver.rooms.serialize import client_event
from homeserver.tokens import encode_pagination_token
from storage.events import EventStore, StoredEvent
from storage.relations import (
    ANNOTATION,
    REFERENCE,
    REPLACE,
    THREAD,
    Aggregation,
    RelationsStore,
    annotation_key,
    relation_of,
)
from storage.shared_reads import SharedReads

if TYPE_CHECKING:
    from homeserver.app import Homeserver

Bundles = dict[str, dict[str, Any]]

# How many levels of relations `recurse=true` follows (the spec asks for at least 3).
RECURSION_DEPTH = 3


@dataclass(frozen=True)
class Page:
    """Where a page of /relations starts and ends and which way it runs."""

    from_pos: int | None
    to_pos: int | None
    limit: int
    backwards: bool


class RelationsService:
    def __init__(self, hs: Homeserver, store: RelationsStore, events: EventStore):
        self.hs = hs
        self.store = store
        self.events = events
        self.shared = SharedReads()

    # ---- bundled aggregations -------------------------------------------------------------

    async def bundle(
        self,
        events: Iterable[StoredEvent],
        user_id: str,
        device_id: str | None = None,
        *,
        with_room_id: bool = True,
        ignored: Sequence[str] = (),
        position: int | None = None,
    ) -> Bundles:
        """event id -> its `unsigned["m.relations"]`, for those of `events` that have one.
        State events get none (spec: "Aggregations of child events"). `position`: the
        events stream position the caller reads up to; given, which of the events have
        relations at all is asked once for every caller at that position (every member's
        /sync woken by one message asks it of the same events, and mostly none has)."""
        parents = {e.event_id: e for e in events if e.state_key is None}
        if parents and position is not None:
            ids = tuple(sorted(parents))
            related = await self.shared.get(
                ("related", ids, position), partial(self.store.related, ids)
            )
            parents = {i: e for i, e in parents.items() if i in related}
        if not parents:
            return {}
        # One query: the parents' aggregations and those of their threads' latest events,
        # which are served inside the thread summary with their own (their edits, say);
        # m.thread cannot nest, so one level is all there is.
        found = await self.store.aggregations(list(parents), user_id, ignored)
        if not found:
            return {}
        aggs = {i: a for i, a in found.items() if i in parents}
        latest_ids = {a.thread_latest for a in aggs.values() if a.thread_latest}
        nested = {i: a for i, a in found.items() if i in latest_ids}
        wanted = {*latest_ids, *(a.edit for a in found.values() if a.edit)}
        loaded = await self.events.get_events(wanted)

        def render(agg: Aggregation, parent: StoredEvent, inner: Bundles) -> dict[str, Any]:
            out: dict[str, Any] = {}
            latest = loaded.get(agg.thread_latest) if agg.thread_latest else None
            if latest is not None:
                out[THREAD] = {
                    "latest_event": client_event(
                        latest, device_id, with_room_id=with_room_id, relations=inner
                    ),
                    "count": agg.thread_count,
                    "current_user_participated": agg.thread_participated
                    or parent.sender == user_id,
                }
            edit = loaded.get(agg.edit) if agg.edit else None
            # No edit is bundled with a redacted original (spec: "Event replacements").
            if edit is not None and parent.redacted_by is None:
                out[REPLACE] = client_event(edit, device_id, with_room_id=with_room_id)
            if agg.references:
                out[REFERENCE] = {"chunk": [{"event_id": i} for i in agg.references]}
            return out

        inner: Bundles = {}
        for event_id, agg in nested.items():
            ev = loaded.get(event_id)
            if ev is not None and (rendered := render(agg, ev, {})):
                inner[event_id] = rendered
        result: Bundles = {}
        for event_id, agg in aggs.items():
            rendered = render(agg, parents[event_id], inner)
            if rendered:
                result[event_id] = rendered
        return result

    async def serialize(
        self,
        events: Sequence[StoredEvent],
        user_id: str,
        device_id: str | None,
        ignored: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """`events` in the client format with their bundled aggregations (in which the
        events of `ignored` users count in no thread)."""
        bundles = await self.bundle(events, user_id, device_id, ignored=ignored)
        return [client_event(e, device_id, relations=bundles) for e in events]

    # ---- GET /relations ------------------------------------------------------------------

    async def relations(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        parent_id: str,
        rel_type: str | None,
        event_type: str | None,
        page: Page,
        recurse: bool,
    ) -> dict[str, Any]:
        """The events relating to a parent the user can see (404 otherwise), newest first
        when paginating backwards, with next_batch while there are more."""
        try:
            await visible_event(self.hs, user_id, room_id, parent_id)
        except MatrixError as e:
            # An unknown room or one the user is not in: as for an event they cannot see.
            raise not_found("Event not found") from e
        ids = await self.store.children(
            room_id,
            parent_id,
            rel_type=rel_type,
            event_type=event_type,
            after=page.to_pos if page.backwards else page.from_pos,
            upto=page.from_pos if page.backwards else page.to_pos,
            limit=page.limit + 1,
            backwards=page.backwards,
            depth=RECURSION_DEPTH if recurse else 1,
        )
        more = len(ids) > page.limit
        ids = ids[: page.limit]
        found = await self.events.get_events(ids)
        events = [found[i] for i in ids if i in found]
        ignored = await ignored_users(self.hs.accounts.account_data, user_id)
        shown = drop_ignored(await visible_events(self.hs, user_id, room_id, events), ignored)
        result: dict[str, Any] = {
            "chunk": await self.serialize(shown, user_id, device_id, sorted(ignored))
        }
        if more and events:
            last = events[-1].stream_ordering
            result["next_batch"] = encode_pagination_token(last - 1 if page.backwards else last)
        if page.from_pos is not None:
            result["prev_batch"] = encode_pagination_token(page.from_pos)
        return result

    # ---- GET /threads --------------------------------------------------------------------

    async def threads(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        *,
        participated: bool,
        from_pos: int | None,
        limit: int,
    ) -> dict[str, Any]:
        """The room's thread roots by latest activity, newest first (M_FORBIDDEN for a
        room the user cannot read)."""
        await readable_membership(self.hs, user_id, room_id)
        rows = await self.store.threads(
            room_id,
            before=None if from_pos is None else from_pos + 1,
            limit=limit + 1,
            participant=user_id if participated else None,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        found = await self.events.get_events(r.root_id for r in rows)
        roots = [found[r.root_id] for r in rows if r.root_id in found]
        roots = [e for e in roots if e.room_id == room_id]
        # A thread whose root an ignored user sent is not listed (as Synapse).
        ignored = await ignored_users(self.hs.accounts.account_data, user_id)
        shown = drop_ignored(await visible_events(self.hs, user_id, room_id, roots), ignored)
        result: dict[str, Any] = {
            "chunk": await self.serialize(shown, user_id, device_id, sorted(ignored))
        }
        if more and rows:
            result["next_batch"] = encode_pagination_token(rows[-1].latest_ordering - 1)
        return result

    # ---- sending -------------------------------------------------------------------------

    async def check_receipt_thread(self, event_id: str, thread_id: str) -> None:
        """Refuses (400 M_INVALID_PARAM) a receipt in a thread for an event outside it: the
        root, its m.thread events and what relates to those are in the thread (spec:
        "Threaded read receipts"). 'main' is not checked: clients (matrix-nio) send it for
        every event, and reading up to a thread event in the main timeline is harmless."""
        if thread_id == "main" or event_id == thread_id:
            return
        rel = await self.store.relation_of_event(event_id)
        if rel is not None and rel[0] != THREAD:
            # An edit or a reaction is in the thread of the event it relates to.
            rel = await self.store.relation_of_event(rel[1])
        if rel != (THREAD, thread_id):
            raise MatrixError(400, "M_INVALID_PARAM", "The event is not in that thread")

    async def check_new_relation(
        self, sender: str, event_type: str, content: dict[str, Any]
    ) -> None:
        """Refuses, before anything is written, what the spec has servers refuse of a
        client: a thread off an event that itself relates to another ("Validation of
        m.thread relationships": 400 M_UNKNOWN), and a second annotation by the same user
        with the same type and key ("Avoiding duplicate annotations")."""
        rel = relation_of({"content": content})
        if rel is None:
            return
        rel_type, parent = rel
        if rel_type == THREAD and await self.store.relation_of_event(parent) is not None:
            raise MatrixError(
                400, "M_UNKNOWN", "Cannot start a thread from an event with a relation"
            )
        if rel_type == ANNOTATION:
            key = annotation_key({"content": content})
            if key is not None and await self.store.has_annotation(parent, sender, event_type, key):
                raise MatrixError(400, "M_DUPLICATE_ANNOTATION", "You already sent this annotation")
