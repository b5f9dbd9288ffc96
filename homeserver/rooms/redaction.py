"""Redacting events: who may, and the redaction event that does it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.events.auth import get_named_level, get_power_level
from homeserver.http.auth import Requester
from homeserver.http.errors import MatrixError, forbidden, not_found

if TYPE_CHECKING:
    from homeserver.app import Homeserver


async def redact_event(
    hs: Homeserver,
    requester: Requester,
    room_id: str,
    event_id: str,
    reason: str | None,
    txn_id: str | None,
) -> str:
    """`txn_id` None: the legacy POST form, which has no idempotency."""
    target = await hs.event_store.get_event(event_id)
    if target is None:
        raise not_found("Event not found")
    if target.room_id != room_id:
        # A client's mistake, not a missing event (Synapse answers 400 too).
        raise MatrixError(400, "M_INVALID_PARAM", "The event is not in this room")
    if target.sender != requester.user_id:
        # From room version 3 the auth rules leave this to the server (spec: "Redactions").
        version = await hs.events.room_version(room_id)
        state = await hs.events.current_state(
            room_id,
            [
                ("m.room.power_levels", ""),
                ("m.room.create", ""),
                ("m.room.member", requester.user_id),
            ],
        )
        auth_state = {k: v.event for k, v in state.items()}
        create = auth_state.get(("m.room.create", ""))
        level = get_power_level(version, requester.user_id, auth_state, create)
        pl = auth_state.get(("m.room.power_levels", ""))
        needed = get_named_level(version, "redact", pl["content"] if pl else None)
        if level < needed:
            raise forbidden("You may not redact other users' events")
    content = {"reason": reason} if reason is not None else {}
    return await hs.events.create_and_send(
        requester.user_id,
        room_id,
        "m.room.redaction",
        content,
        txn=(requester.device_id, txn_id) if txn_id is not None else None,
        redacts=event_id,
    )
