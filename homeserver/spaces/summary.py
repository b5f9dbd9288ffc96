"""What the space hierarchy says about a room, and who may see it.

A room's summary is the public room list's chunk (homeserver/directory/public_rooms.py)
plus the fields the hierarchy adds (room_summary.yaml): `room_version`, `encryption`,
`allowed_room_ids`. Facts about local rooms are loaded in batches (`LocalRooms.load`), a
constant number of queries per batch, so that a walk costs queries per level of the tree,
not per room.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from homeserver.directory.public_rooms import summary_entry
from storage.events import StoredEvent

if TYPE_CHECKING:
    from homeserver.app import Homeserver

SPACE = "m.space"
MEGOLM = "m.megolm.v1.aes-sha2"
# Join rules under which anyone may ask to join (or knock), so anyone may see the room.
_OPEN_RULES = ("public", "knock", "knock_restricted")
_RESTRICTED_RULES = ("restricted", "knock_restricted")
# The spec's `order` of m.space.child: at most 50 characters from \x20 to \x7E.
_MAX_ORDER_LENGTH = 50


def _allowed_room_ids(join_rules: dict[str, Any]) -> list[str]:
    allow = join_rules.get("allow")
    if not isinstance(allow, list):
        return []
    return [
        a["room_id"]
        for a in allow
        if isinstance(a, dict)
        and a.get("type") == "m.room_membership"
        and isinstance(a.get("room_id"), str)
    ]


def room_summary(room_id: str, joined: int, version: str, state: dict[str, dict]) -> dict[str, Any]:
    entry = summary_entry(room_id, joined, state)
    entry["room_version"] = version
    if state.get("m.room.encryption", {}).get("algorithm") == MEGOLM:
        entry["encryption"] = MEGOLM
    if entry["join_rule"] in _RESTRICTED_RULES:
        entry["allowed_room_ids"] = _allowed_room_ids(state.get("m.room.join_rules", {}))
    return entry


def user_may_see(entry: dict[str, Any], membership: str | None, joined: Collection[str]) -> bool:
    """The spec's list (space_hierarchy.yaml): members and invitees; rooms anyone may join
    or knock on; world-readable rooms; restricted rooms whose conditions the user meets
    (`joined`: the rooms the user is joined to). A banned user sees none of it."""
    if membership == "ban":
        return False
    if membership in ("join", "invite"):
        return True
    if entry.get("join_rule") in _OPEN_RULES or entry.get("world_readable") is True:
        return True
    if entry.get("join_rule") in _RESTRICTED_RULES:
        allowed = entry.get("allowed_room_ids")
        return isinstance(allowed, list) and any(r in joined for r in allowed)
    return False


def server_may_see(entry: dict[str, Any], server_in_room: bool) -> bool:
    """What another server may be told of (federation hierarchy): rooms one of its users
    is in, rooms anyone may join or see, and restricted rooms (the asking server checks
    `allowed_room_ids` against its user, who may meet them)."""
    if server_in_room:
        return True
    rule = entry.get("join_rule")
    return rule in _OPEN_RULES or rule in _RESTRICTED_RULES or entry.get("world_readable") is True


def valid_via(content: dict[str, Any]) -> list[str] | None:
    """A child link's servers; None when the link is void (no `via`: the way a child is
    removed from a space)."""
    via = content.get("via")
    if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
        return None
    return via


def _valid_order(content: dict[str, Any]) -> str | None:
    order = content.get("order")
    if (
        isinstance(order, str)
        and len(order) <= _MAX_ORDER_LENGTH
        and all("\x20" <= c <= "\x7e" for c in order)
    ):
        return order
    return None


def child_sort_key(event: dict[str, Any]) -> tuple:
    """The spec's "Ordering of children within a space": children with a valid `order`
    first, by it (code points); then by the event's origin_server_ts; then by room ID."""
    content = event.get("content")
    order = _valid_order(content) if isinstance(content, dict) else None
    ts = event.get("origin_server_ts")
    return (
        order is None,
        order or "",
        ts if isinstance(ts, int) else 0,
        str(event.get("state_key")),
    )


def stripped_child(event: StoredEvent) -> dict[str, Any]:
    """A children_state entry: stripped state plus origin_server_ts."""
    return {
        "type": event.type,
        "state_key": event.state_key,
        "content": event.content,
        "sender": event.sender,
        "origin_server_ts": event.event.get("origin_server_ts", 0),
    }


def children_of(children_state: Iterable[dict[str, Any]], suggested_only: bool) -> list[dict]:
    """The live child links (a `via`; `suggested` when asked), in the spec's order."""
    live = [
        c
        for c in children_state
        if isinstance(c, dict)
        and c.get("type") == "m.space.child"
        and isinstance(c.get("state_key"), str)
        and isinstance(c.get("content"), dict)
        and valid_via(c["content"]) is not None
        and (not suggested_only or c["content"].get("suggested") is True)
    ]
    return sorted(live, key=child_sort_key)


class LocalRooms:
    """Facts about the rooms this server is in, loaded in batches and kept for one walk."""

    def __init__(self, hs: Homeserver):
        self.hs = hs
        self.summaries: dict[str, dict[str, Any]] = {}
        self.children_state: dict[str, list[dict[str, Any]]] = {}
        self.servers: dict[str, set[str]] = {}
        self._asked: set[str] = set()

    def is_local(self, room_id: str) -> bool:
        """Known here with a current state we can trust: one of our users is joined, or
        this server does not federate (then our copy is all there is)."""
        if room_id not in self.summaries:
            return False
        servers = self.servers.get(room_id, set())
        return self.hs.server_name in servers or not self.hs.federation.policy.federates

    async def load(self, room_ids: Iterable[str]) -> None:
        wanted = [r for r in dict.fromkeys(room_ids) if r not in self._asked]
        if not wanted:
            return
        self._asked.update(wanted)
        hs = self.hs
        versions = await hs.event_store.room_versions(wanted)
        known = [r for r in wanted if r in versions]
        if not known:
            return
        state = await hs.directory.summary_state(known)
        counts = await hs.membership_store.member_counts(known)
        self.servers.update(await hs.membership_store.servers_in_rooms(known))
        child_ids = await hs.spaces_store.child_event_ids(known)
        events = await hs.event_store.get_events(i for ids in child_ids.values() for i in ids)
        for room_id in known:
            joined = counts.get(room_id, (0, 0))[0]
            self.summaries[room_id] = room_summary(
                room_id, joined, versions[room_id], state[room_id]
            )
            self.children_state[room_id] = [
                stripped_child(events[i]) for i in child_ids[room_id] if i in events
            ]
