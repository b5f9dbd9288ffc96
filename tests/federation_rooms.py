"""Rooms shared by two test servers, before the join endpoints exist.

`remote_join` does what a send_join does for both sides: the resident server receives
the joining user's join as a PDU (through the real inbound pipeline), and the joining
server stores the room's state and auth chain as outliers, then the join on top of it.
`deliver` hands events one server stored to another's inbound pipeline, as /send would.
"""

from __future__ import annotations

import time
from typing import Any

from federation.state import auth_chain_ids
from homeserver.events.auth import auth_types_for_event
from homeserver.events.hashing import compute_event_id
from homeserver.events.signing import hash_and_sign_event


async def make_event(
    head_of,
    signer,
    room_id: str,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    state_key: str | None = None,
    *,
    prev: list[str] | None = None,
    state: dict | None = None,
    depth: int | None = None,
    ts: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """An event built on `head_of`'s view of the room (its extremities, depth and
    current state, unless given) and signed with `signer`'s key."""
    head = await head_of.hs.events._head(room_id)
    version = head.version
    state = head.state if state is None else state
    event: dict[str, Any] = {
        "room_id": room_id,
        "type": event_type,
        "sender": sender,
        "content": content,
        "origin_server_ts": ts if ts is not None else int(time.time() * 1000),
        "depth": depth if depth is not None else head.depth + 1,
        "prev_events": list(head.extremities if prev is None else prev),
    }
    if state_key is not None:
        event["state_key"] = state_key
    event["auth_events"] = [state[k] for k in auth_types_for_event(version, event) if k in state]
    event = hash_and_sign_event(event, signer.server_name, signer.hs.signing_key, version)
    return compute_event_id(event, version), event


async def pdus(server, event_ids: list[str]) -> list[dict[str, Any]]:
    stored = await server.hs.event_store.get_events(event_ids)
    return [stored[e].event for e in event_ids]


async def deliver(src, dst, event_ids: list[str]) -> dict[str, dict]:
    """`dst` receives `src`'s events as PDUs from `src`."""
    return await dst.hs.federation.inbound.handle_pdus(src.server_name, await pdus(src, event_ids))


async def remote_join(resident, joiner, room_id: str, user_id: str) -> str:
    """`user_id` (on `joiner`) joins `resident`'s room; returns the join event id."""
    head = await resident.hs.events._head(room_id)
    state_before = dict(head.state)
    join_id, join = await make_event(
        resident, joiner, room_id, user_id, "m.room.member", {"membership": "join"}, user_id
    )
    result = await resident.hs.federation.inbound.handle_pdus(joiner.server_name, [join])
    assert result == {join_id: {}}, result

    create = await resident.hs.event_store.get_event(state_before[("m.room.create", "")])
    await joiner.hs.events.create_federated_room(
        room_id, head.version.identifier, create.event["sender"]
    )
    ids = set(state_before.values()) | await auth_chain_ids(resident.hs, state_before.values())
    known = await resident.hs.event_store.get_events(ids)
    await joiner.hs.events.persist_outliers(room_id, [(i, e.event) for i, e in known.items()])
    await joiner.hs.events.persist_federated(room_id, join, join_id, state_before=state_before)
    return join_id
