"""Asking another server for room events, and validating what it answers.

Every PDU that comes back goes through checks 1-3 (federation.events.validation) and must
belong to the room asked about; anything else is dropped and logged. Answers are bounded
by the HTTP client's response size limit and by the counts given here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from federation.client import FederationError
from federation.events.validation import InvalidPdu, validate_pdu
from homeserver.events.hashing import room_id_from_create_event
from homeserver.events.room_versions import RoomVersion

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
# Parallel /event requests when filling in state; more missing than MAX_EVENT_FETCHES
# and we ask for the whole state in one /state request instead.
FETCH_CONCURRENCY = 5
MAX_EVENT_FETCHES = 50

Fetched = dict[str, dict[str, Any]]  # event_id -> validated event


@dataclass(frozen=True)
class Room:
    room_id: str
    version: RoomVersion


def _q(value: str) -> str:
    return quote(value, safe="")


def event_room_id(event: dict[str, Any], version: RoomVersion) -> str | None:
    if version.room_id_is_create_event_hash and event.get("type") == "m.room.create":
        return room_id_from_create_event(event, version)
    return event.get("room_id")


class RemoteEvents:
    def __init__(self, hs: Homeserver):
        self.hs = hs

    @property
    def client(self):
        return self.hs.federation.client

    async def validate(
        self, room: Room, pdus: Any, *, limit_references: bool = False, what: str = "answer"
    ) -> Fetched:
        """The valid PDUs of `pdus` that belong to `room` (invalid ones are dropped).

        Historical answers (/event, /state, /event_auth, /backfill) are not held to the
        prev_events/auth_events counts; new events (/send, get_missing_events) are."""
        if not isinstance(pdus, list):
            return {}
        valid: Fetched = {}
        for pdu in pdus:
            try:
                event_id, event = await validate_pdu(
                    self.hs.federation.keys, pdu, room.version, limit_references=limit_references
                )
            except InvalidPdu as e:
                logger.info("dropping a PDU of %s in %s: %s", room.room_id, what, e)
                continue
            if event_room_id(event, room.version) != room.room_id:
                logger.info("dropping a PDU of another room in %s", what)
                continue
            valid[event_id] = event
        return valid

    async def event(self, dest: str, room: Room, event_id: str) -> dict[str, Any] | None:
        try:
            answer = await self.client.get_json(dest, f"{V1}/event/{_q(event_id)}")
        except FederationError as e:
            logger.info("GET /event from %s failed: %s", dest, e)
            return None
        pdus = answer.get("pdus") if isinstance(answer, dict) else None
        return (await self.validate(room, pdus, what="/event")).get(event_id)

    async def events(self, dest: str, room: Room, event_ids: set[str]) -> Fetched:
        """Each of `event_ids` by GET /event, a few at a time."""
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(event_id: str):
            async with gate:
                return event_id, await self.event(dest, room, event_id)

        results = await asyncio.gather(*(one(e) for e in sorted(event_ids)))
        return {event_id: ev for event_id, ev in results if ev is not None}

    async def auth_chain(self, dest: str, room: Room, event_id: str) -> Fetched:
        try:
            answer = await self.client.get_json(
                dest, f"{V1}/event_auth/{_q(room.room_id)}/{_q(event_id)}"
            )
        except FederationError as e:
            logger.info("GET /event_auth from %s failed: %s", dest, e)
            return {}
        chain = answer.get("auth_chain") if isinstance(answer, dict) else None
        return await self.validate(room, chain, what="/event_auth")

    async def state_before(
        self, dest: str, room: Room, event_id: str
    ) -> tuple[list[str], Fetched] | None:
        """The state before `event_id` as (state event ids, fetched events): the state and
        auth chain events we do not have are fetched. None if `dest` cannot tell us."""
        query = {"event_id": event_id}
        try:
            answer = await self.client.get_json(
                dest, f"{V1}/state_ids/{_q(room.room_id)}", query=query
            )
            state_ids = answer["pdu_ids"]
            chain_ids = answer["auth_chain_ids"]
            if not all(isinstance(i, str) for i in [*state_ids, *chain_ids]):
                raise TypeError
        except FederationError as e:
            logger.info("GET /state_ids from %s failed: %s", dest, e)
            return None
        except (KeyError, TypeError):
            logger.info("malformed /state_ids answer from %s", dest)
            return None
        wanted = set(state_ids) | set(chain_ids)
        wanted -= (await self.hs.event_store.get_events(wanted)).keys()
        if len(wanted) <= MAX_EVENT_FETCHES:
            return state_ids, await self.events(dest, room, wanted)
        try:
            answer = await self.client.get_json(dest, f"{V1}/state/{_q(room.room_id)}", query=query)
        except FederationError as e:
            logger.info("GET /state from %s failed: %s", dest, e)
            return None
        if not isinstance(answer, dict):
            return None
        fetched = await self.validate(room, answer.get("pdus"), what="/state")
        fetched.update(await self.validate(room, answer.get("auth_chain"), what="/state"))
        return state_ids, fetched

    async def missing_events(
        self, dest: str, room: Room, earliest: list[str], latest: list[str], limit: int
    ) -> Fetched:
        body = {"earliest_events": earliest, "latest_events": latest, "limit": limit}
        try:
            answer = await self.client.post_json(
                dest, f"{V1}/get_missing_events/{_q(room.room_id)}", body
            )
        except FederationError as e:
            logger.info("get_missing_events from %s failed: %s", dest, e)
            return {}
        events = answer.get("events") if isinstance(answer, dict) else None
        if isinstance(events, list):
            events = events[:limit]
        return await self.validate(room, events, limit_references=True, what="get_missing_events")

    async def backfill(self, dest: str, room: Room, from_ids: list[str], limit: int) -> Fetched:
        query = {"v": from_ids, "limit": str(limit)}
        try:
            answer = await self.client.get_json(
                dest, f"{V1}/backfill/{_q(room.room_id)}", query=query
            )
        except FederationError as e:
            logger.info("backfill from %s failed: %s", dest, e)
            return {}
        pdus = answer.get("pdus") if isinstance(answer, dict) else None
        if isinstance(pdus, list):
            pdus = pdus[:limit]
        return await self.validate(room, pdus, what="/backfill")
