"""Checking a send_join answer before we build a room on it.

Every state and auth-chain event must pass the PDU checks (hashes, signatures) and the
auth rules against its own auth events, which must be among the answer's events that
passed. The state must name one create event, of this room and this room version, and our
join must be allowed by that state. Events that fail are left out (as rejected); a state
without its create event, or one our join is not allowed by, refuses the whole answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federation.events.checks import auth_order
from federation.membership.pdus import InvalidPdu, check_pdu, signature_checker
from homeserver.events.auth import AuthError, check_auth, check_auth_events_list
from homeserver.events.hashing import room_id_from_create_event
from homeserver.events.room_versions import RoomVersion
from homeserver.events.state_res import auth_event_ids
from storage.events import StateMap

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

# A send_join answer holds the room's state and auth chain: bounded, generously.
MAX_ANSWER_EVENTS = 200_000


class InvalidJoinAnswer(ValueError):
    pass


@dataclass
class JoinedState:
    state: StateMap  # the state before our join
    outliers: list[tuple[str, dict[str, Any]]]  # every accepted state and auth event
    creator: str


async def checked_join_state(
    hs: Homeserver,
    server: str,
    version: RoomVersion,
    room_id: str,
    join_id: str,
    join: dict[str, Any],
    answer: Any,
) -> JoinedState:
    if not isinstance(answer, dict):
        raise InvalidJoinAnswer("not an object")
    state_pdus, chain_pdus = answer.get("state"), answer.get("auth_chain")
    if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
        raise InvalidJoinAnswer("state and auth_chain must be lists")
    if len(state_pdus) + len(chain_pdus) > MAX_ANSWER_EVENTS:
        raise InvalidJoinAnswer("too many events")
    events: dict[str, dict[str, Any]] = {}
    state_ids: list[str] = []
    for i, pdu in enumerate([*state_pdus, *chain_pdus]):
        try:
            event_id, event = await check_pdu(hs, server, pdu, version)
        except InvalidPdu as e:
            logger.info("send_join answer from %s: dropping an invalid event: %s", server, e)
            continue
        events[event_id] = event
        if i < len(state_pdus):
            state_ids.append(event_id)

    creates = [
        eid
        for eid in state_ids
        if events[eid].get("type") == "m.room.create" and events[eid].get("state_key") == ""
    ]
    if len(creates) != 1 or not _create_of_room(events[creates[0]], room_id, version):
        raise InvalidJoinAnswer("the state must hold this room's one create event")
    create = events[creates[0]]
    accepted = authorised_events(version, events, create)
    state: StateMap = {}
    for event_id in state_ids:
        state_event = accepted.get(event_id)
        if state_event is None or not isinstance(state_event.get("state_key"), str):
            continue
        key = (state_event["type"], state_event["state_key"])
        if state.get(key, event_id) != event_id:
            raise InvalidJoinAnswer(f"two state events for {key}")
        state[key] = event_id
    if state.get(("m.room.create", "")) != creates[0]:
        raise InvalidJoinAnswer("the room's create event fails the auth rules")
    verify = await signature_checker(hs, join, version)
    try:
        check_auth(
            version,
            join,
            {key: accepted[event_id] for key, event_id in state.items()},
            create_event=create,
            verify_signature=verify,
        )
    except AuthError as e:
        raise InvalidJoinAnswer(f"our join is not allowed by the returned state: {e}") from None
    outliers = [(eid, ev) for eid, ev in accepted.items() if eid != join_id]
    return JoinedState(state, outliers, create["sender"])


def _create_of_room(create: dict[str, Any], room_id: str, version: RoomVersion) -> bool:
    if create.get("content", {}).get("room_version", "1") != version.identifier:
        return False
    if version.room_id_is_create_event_hash:
        return room_id_from_create_event(create, version) == room_id
    return create.get("room_id") == room_id


def authorised_events(
    version: RoomVersion, events: dict[str, dict[str, Any]], create: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The events that pass the auth rules against their own auth events, checked in an
    order where auth events come first; an event citing a missing or failed one fails."""
    accepted: dict[str, dict[str, Any]] = {}
    for event_id in auth_order(events):
        event = events[event_id]
        auth_ids = auth_event_ids(event)
        if any(a not in accepted for a in auth_ids):
            continue
        auth = [accepted[a] for a in auth_ids]
        try:
            if event.get("type") != "m.room.create":
                check_auth_events_list(version, event, auth)
            check_auth(
                version,
                event,
                {(a["type"], str(a.get("state_key"))): a for a in auth},
                create_event=create,
            )
        except AuthError as e:
            logger.info("send_join answer: %s fails auth: %s", event_id, e)
            continue
        accepted[event_id] = event
    return accepted
