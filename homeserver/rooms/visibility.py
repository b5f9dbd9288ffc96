"""History visibility: which events of a room a user may see (spec: "Room History Visibility")."""

from __future__ import annotations

from storage.events import EventStore, StoredEvent

_HV = ("m.room.history_visibility", "")
# Most permissive first.
_PERMISSIVENESS = ("world_readable", "shared", "invited", "joined")


async def filter_visible(
    store: EventStore,
    user_id: str,
    events: list[StoredEvent],
    current_membership: str | None,
    joined_at: int | None = None,
) -> list[StoredEvent]:
    """Keeps the events `user_id` may see.

    `joined_at` is the stream ordering of the user's current join, when known: every event
    after it is visible without looking up the state at the event.
    """
    needs_state = [
        e
        for e in events
        if not (
            joined_at is not None
            and current_membership == "join"
            and e.stream_ordering >= joined_at
        )
    ]
    if not needs_state:
        return events
    groups = await store.state_groups(
        [e.state_group_before for e in needs_state],
        types=[_HV, ("m.room.member", user_id)],
    )
    ids = {eid for g in groups.values() for eid in g.values()}
    state_events = await store.get_events(ids)
    decided: dict[str, bool] = {}
    for e in needs_state:
        state = groups.get(e.state_group_before, {}) if e.state_group_before else {}
        hv_ev = state_events.get(state.get(_HV, ""))
        visibility = hv_ev.content.get("history_visibility", "shared") if hv_ev else "shared"
        if e.type == "m.room.history_visibility" and e.state_key == "":
            # A change of visibility is seen under the more permissive of the old and new
            # settings (as Synapse): who may read from now on sees that they may.
            visibility = min(
                (visibility, e.content.get("history_visibility", "shared")),
                key=lambda v: _PERMISSIVENESS.index(v) if v in _PERMISSIVENESS else 1,
            )
        mem_ev = state_events.get(state.get(("m.room.member", user_id), ""))
        membership = mem_ev.content.get("membership") if mem_ev else None
        decided[e.event_id] = _visible(e, user_id, visibility, membership, current_membership)
    return [e for e in events if decided.get(e.event_id, True)]


def _visible(
    ev: StoredEvent,
    user_id: str,
    visibility: str,
    membership_then: str | None,
    membership_now: str | None,
) -> bool:
    if ev.type == "m.room.member" and ev.state_key == user_id:
        return True
    if visibility == "world_readable":
        return True
    if membership_then == "join":
        return True
    if visibility == "shared" and membership_now == "join":
        return True
    if visibility == "invited" and membership_then == "invite":
        return True
    return False
