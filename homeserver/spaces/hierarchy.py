"""The space hierarchy (space_hierarchy.yaml, client and server-server).

A walk is depth-first from the requested room over its live m.space.child links, each
room's children in the spec's order. Rooms this server is in are summarised from local
state (`LocalRooms`); others are asked of the servers their link names
(`hs.federation.hierarchy`, GET /_matrix/federation/v1/hierarchy), whose answer also
summarises their children. A room is returned only to a user allowed to see it, and a
room met twice (a loop, or two links) is returned once.

A page stops after `limit` rooms; what is left of the walk (the queue and the rooms seen)
is stored under the page's `next_batch`, with the query it answers: a token used by
another user, for another room, or with another `max_depth`/`suggested_only` is refused
(400 M_INVALID_PARAM), as is one older than SESSION_LIFETIME_MS.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from homeserver.http.errors import forbidden, invalid_param, not_found
from homeserver.spaces.summary import (
    SPACE,
    LocalRooms,
    children_of,
    server_may_see,
    user_may_see,
    valid_via,
)
from storage.spaces import SpacesStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

DEFAULT_LIMIT = 50
MAX_LIMIT = 50
# Deeper trees are cut here (the spec asks servers for a maximum); loops end anyway.
MAX_DEPTH = 50
SESSION_LIFETIME_MS = 5 * 60 * 1000


@dataclass
class _Queued:
    room_id: str
    via: list[str]
    depth: int
    # A remote child's summary from its parent's federation answer: used as is unless
    # the child is a space (whose own children need its own answer).
    summary: dict[str, Any] | None = None


@dataclass
class _Walk:
    queue: list[_Queued]
    seen: list[str] = field(default_factory=list)

    def encode(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def decode(cls, text: str) -> _Walk:
        data = orjson.loads(text)
        return cls([_Queued(**q) for q in data["queue"]], data["seen"])


class SpaceHierarchy:
    def __init__(self, hs: Homeserver, store: SpacesStore):
        self.hs = hs
        self.store = store

    # ---- the client API --------------------------------------------------------------

    async def page(
        self,
        user_id: str,
        room_id: str,
        *,
        suggested_only: bool,
        max_depth: int,
        limit: int,
        from_token: str | None,
    ) -> dict[str, Any]:
        hs = self.hs
        local = LocalRooms(hs)
        memberships = {
            r: m
            for r, (m, _, _) in (await hs.membership_store.memberships_of([user_id]))[
                user_id
            ].items()
        }
        joined = {r for r, m in memberships.items() if m == "join"}
        # Checked on every page: a user banned since the first one gets no more.
        await local.load([room_id])
        root = local.summaries.get(room_id)
        if (
            root is None
            or not local.is_local(room_id)
            or not user_may_see(root, memberships.get(room_id), joined)
        ):
            raise forbidden("You may not view this room's hierarchy")
        if from_token is None:
            walk = _Walk([_Queued(room_id, [], 0)])
        else:
            walk = await self._resume(from_token, user_id, room_id, suggested_only, max_depth)
        seen = set(walk.seen)
        rooms: list[dict[str, Any]] = []
        while walk.queue and len(rooms) < limit:
            entry = walk.queue.pop()
            if entry.room_id in seen:
                continue
            seen.add(entry.room_id)
            walk.seen.append(entry.room_id)
            # This room's facts with those of the next rooms on the stack, in one batch:
            # queries per page, not per room (and none for children a page never reaches).
            upcoming = walk.queue[len(walk.queue) - (limit - len(rooms)) :]
            await local.load([entry.room_id, *(q.room_id for q in upcoming)])
            found = await self._visit(local, entry, suggested_only)
            if found is None:
                continue
            room, children, child_summaries = found
            if not user_may_see(room, memberships.get(entry.room_id), joined):
                continue
            rooms.append(room)
            if entry.depth >= max_depth:
                continue
            queued = [
                _Queued(
                    c["state_key"],
                    valid_via(c["content"]) or [],
                    entry.depth + 1,
                    child_summaries.get(c["state_key"]),
                )
                for c in children
                if c["state_key"] not in seen
            ]
            # A stack: the first child is popped next (depth-first, in the spec's order).
            walk.queue.extend(reversed(queued))
        while walk.queue and walk.queue[-1].room_id in seen:
            walk.queue.pop()  # met already: no page should be spent on them
        result: dict[str, Any] = {"rooms": rooms}
        if walk.queue:
            token = secrets.token_urlsafe(16)
            now = int(time.time() * 1000)
            await self.store.save_session(
                token,
                user_id,
                room_id,
                suggested_only,
                max_depth,
                walk.encode(),
                now - SESSION_LIFETIME_MS,
            )
            result["next_batch"] = token
        return result

    async def _resume(
        self, token: str, user_id: str, room_id: str, suggested_only: bool, max_depth: int
    ) -> _Walk:
        now = int(time.time() * 1000)
        row = await self.store.session(token, now - SESSION_LIFETIME_MS)
        if row is None or row["user_id"] != user_id or row["room_id"] != room_id:
            raise invalid_param("Unknown or expired 'from' token")
        if row["suggested_only"] != suggested_only or row["max_depth"] != max_depth:
            raise invalid_param("suggested_only and max_depth cannot change on paginated requests")
        return _Walk.decode(row["walk"])

    async def _visit(
        self, local: LocalRooms, entry: _Queued, suggested_only: bool
    ) -> tuple[dict[str, Any], list[dict], dict[str, dict]] | None:
        """(the room's entry with children_state, its live child links, summaries of its
        children that a remote server gave) or None when nobody can tell us about it."""
        await local.load([entry.room_id])
        if local.is_local(entry.room_id):
            state = local.children_state[entry.room_id]
            children = children_of(state, suggested_only)
            room = {**local.summaries[entry.room_id], "children_state": children}
            return room, children, {}
        cached = entry.summary
        if cached is not None and cached.get("room_type") != SPACE:
            return {**cached, "children_state": []}, [], {}
        answer = await self.hs.federation.hierarchy.fetch(entry.room_id, entry.via, suggested_only)
        if answer is None:
            return None
        children = children_of(answer["room"]["children_state"], suggested_only)
        inaccessible = set(answer["inaccessible_children"])
        children = [c for c in children if c["state_key"] not in inaccessible]
        room = {**answer["room"], "children_state": children}
        return room, children, {c["room_id"]: c for c in answer["children"]}

    # ---- the federation API ----------------------------------------------------------

    async def for_server(self, origin: str, room_id: str, suggested_only: bool) -> dict[str, Any]:
        """The room and its children, as far as `origin` may know of them; the asking
        server filters further for its user. No pagination (the spec's)."""
        hs = self.hs
        local = LocalRooms(hs)
        await local.load([room_id])
        root = local.summaries.get(room_id)
        if (
            root is None
            or not local.is_local(room_id)
            or not await hs.federation.acl_allows(room_id, origin)
            or not server_may_see(root, origin in local.servers.get(room_id, set()))
        ):
            raise not_found("Unknown room")
        links = children_of(local.children_state[room_id], suggested_only)
        await local.load(c["state_key"] for c in links)
        children: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for link in links:
            child_id = link["state_key"]
            if not local.is_local(child_id):
                continue  # nothing to say about it: the asker tries the link's via
            summary = local.summaries[child_id]
            visible = server_may_see(summary, origin in local.servers.get(child_id, set()))
            if visible and await hs.federation.acl_allows(child_id, origin):
                children.append(summary)
            else:
                inaccessible.append(child_id)
        return {
            "room": {**root, "children_state": links},
            "children": children,
            "inaccessible_children": inaccessible,
        }
