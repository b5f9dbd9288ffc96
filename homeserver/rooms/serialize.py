"""Events as clients see them: the client event format, with per-requester unsigned data."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from storage.events import StoredEvent

# Top-level keys of the client event format; the rest (hashes, signatures, prev_events,
# auth_events, depth, origin) is federation detail.
_CLIENT_KEYS = (
    "content",
    "event_id",
    "origin_server_ts",
    "room_id",
    "sender",
    "state_key",
    "type",
    "redacts",
)


def client_event(
    ev: StoredEvent,
    device_id: str | None = None,
    *,
    with_room_id: bool = True,
    redaction: StoredEvent | None = None,
    relations: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`relations`: bundled aggregations by event id (homeserver/relations, `bundle`)."""
    src = ev.event
    out = {k: src[k] for k in _CLIENT_KEYS if k in src}
    out["event_id"] = ev.event_id
    if src["type"] == "m.room.redaction" and "redacts" not in out:
        # v11 moved `redacts` into content; clients still read it at the top level.
        redacts = src.get("content", {}).get("redacts")
        if redacts is not None:
            out["redacts"] = redacts
    if with_room_id:
        out["room_id"] = ev.room_id
    else:
        out.pop("room_id", None)
    unsigned: dict[str, Any] = {"age": max(0, int(time.time() * 1000) - src["origin_server_ts"])}
    if ev.unsigned:
        unsigned.update(ev.unsigned)
    if device_id is not None and ev.txn_device_id == device_id and ev.txn_id is not None:
        unsigned["transaction_id"] = ev.txn_id
    if ev.redacted_by is not None:
        redaction = redaction or ev.redaction  # loaded with the event (EventStore.get_events)
        unsigned["redacted_because"] = (
            client_event(redaction, with_room_id=with_room_id)
            if redaction is not None
            else {"event_id": ev.redacted_by, "type": "m.room.redaction"}
        )
        # Not in the spec, but Synapse serves it and SyTest and some clients read it.
        unsigned["redacted_by"] = ev.redacted_by
        unsigned.pop("prev_content", None)
    if relations is not None and (bundled := relations.get(ev.event_id)):
        unsigned["m.relations"] = bundled
    out["unsigned"] = unsigned
    return out


def client_events(
    events: list[StoredEvent],
    device_id: str | None = None,
    *,
    with_room_id: bool = True,
    relations: Mapping[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    return [
        client_event(e, device_id, with_room_id=with_room_id, relations=relations) for e in events
    ]


def stripped_state(ev: StoredEvent) -> dict[str, Any]:
    return {"type": ev.type, "state_key": ev.state_key, "sender": ev.sender, "content": ev.content}
