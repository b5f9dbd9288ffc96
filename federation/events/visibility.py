"""What another server may see of a room's events, and in which form.

A server may see an event when the room's history visibility at that event lets one of
its users see it (spec: "Room History Visibility", applied to the server's users):
`world_readable` and `shared` always (the server is in the room, checked by the caller);
`invited` when one of its users was invited or joined at the event; `joined` when one
was joined. The server's users' own membership events are always visible, and a
history_visibility event is visible if the setting before or after it allows. Events a
server may not see are sent redacted, so the room's DAG stays whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.events.redaction import prune_event
from homeserver.events.room_versions import RoomVersion
from storage.events import StoredEvent

if TYPE_CHECKING:
    from homeserver.app import Homeserver

_HV = ("m.room.history_visibility", "")
_OPEN = ("world_readable", "shared")


def _allows(visibility: str, memberships: set[str | None]) -> bool:
    if visibility in _OPEN:
        return True
    if visibility == "invited":
        return bool(memberships & {"invite", "join"})
    return "join" in memberships  # "joined"


def _hv_value(ev: StoredEvent | None) -> str:
    value = ev.content.get("history_visibility") if ev is not None else None
    return value if value in ("world_readable", "shared", "invited", "joined") else "shared"


async def events_for_server(
    hs: Homeserver, origin: str, room_version: RoomVersion, events: list[StoredEvent]
) -> list[dict[str, Any]]:
    """The PDUs of `events` as `origin` may see them: whole, or redacted."""
    if not events:
        return []
    store = hs.event_store
    groups = {e.state_group_before for e in events if e.state_group_before is not None}
    hv_state = await store.state_groups(groups, types=[_HV])
    # Events stored without a state (outliers) are judged on the current state.
    current_hv = await hs.events.current_state_event(events[0].room_id, *_HV)
    hv_ids = {eid for g in hv_state.values() for eid in g.values()}
    hv_events = await store.get_events(hv_ids)

    def visibility_at(e: StoredEvent) -> str:
        if e.state_group_before is None:
            return _hv_value(current_hv)
        hv_id = hv_state.get(e.state_group_before, {}).get(_HV)
        return _hv_value(hv_events.get(hv_id) if hv_id else None)

    restricted = [e for e in events if visibility_at(e) not in _OPEN]
    memberships: dict[int | None, set[str | None]] = {}
    users = []
    if restricted:
        users = await hs.membership_store.server_members(events[0].room_id, origin)
    if users:
        member_keys = [("m.room.member", u) for u in users]
        member_groups = await store.state_groups(
            {e.state_group_before for e in restricted if e.state_group_before is not None},
            types=member_keys,
        )
        member_events = await store.get_events(
            {eid for g in member_groups.values() for eid in g.values()}
        )
        for group, state in member_groups.items():
            memberships[group] = {
                member_events[eid].content.get("membership")
                for eid in state.values()
                if eid in member_events
            }
        if any(e.state_group_before is None for e in restricted):
            current = await hs.events.current_state(events[0].room_id, member_keys)
            memberships[None] = {ev.content.get("membership") for ev in current.values()}

    result = []
    for e in events:
        visible = _visible(
            e, origin, visibility_at(e), memberships.get(e.state_group_before, set())
        )
        result.append(e.event if visible else prune_event(e.event, room_version))
    return result


def _visible(e: StoredEvent, origin: str, visibility: str, memberships: set[str | None]) -> bool:
    if _allows(visibility, memberships):
        return True
    if e.type == "m.room.member" and (e.state_key or "").split(":", 1)[-1] == origin:
        return True
    if (e.type, e.state_key) == _HV:
        return _allows(_hv_value(e), memberships)
    return False
