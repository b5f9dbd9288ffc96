"""Invites across servers (server-server spec "Inviting to a room", invite v2).

Receiving: we are the invitee's server. We check the event, countersign it, and store it:
through the room's own graph when we are in the room, else out of band (an outlier plus
an out_of_band_memberships row) so that the invitee's /sync lists it with the stripped
room state, and a later join goes through make_join at the inviting server.

Sending: one of our users invites a user of another server. The event is built on our
room's head, countersigned by the invitee's server, then stored and sent like any event
of ours.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from federation.client import FederationError
from federation.membership.pdus import (
    server_of,
    signed_by,
    stripped_state_pdus,
    valid_stripped_state,
)
from federation.membership.resident import (
    Resident,
    check_membership_pdu,
    checked_handshake_event,
    on_top_of_current_state,
)
from federation.membership.v1_fallback import put_v2_or_v1
from homeserver.events.auth import AuthError
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import sign_event
from homeserver.events.storable import canonical_json_problem
from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.rooms.membership import valid_user_id

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)


def remote_error(e: FederationError, what: str) -> MatrixError:
    """What a client sees when another server refused or failed a request we made for it.
    The remote's 4xx errors pass through (the spec asks so for joins and invites), except
    M_MISSING_PARAM / M_INVALID_PARAM, which would blame the client for our request."""
    body = e.body if isinstance(e.body, dict) else {}
    errcode = body.get("errcode")
    if e.status is not None and 400 <= e.status < 500 and isinstance(errcode, str):
        if errcode not in ("M_MISSING_PARAM", "M_INVALID_PARAM"):
            extra = {}
            if isinstance(body.get("room_version"), str):
                extra["room_version"] = body["room_version"]
            error = body.get("error")
            message = error if isinstance(error, str) else what
            return MatrixError(e.status, errcode, message[:500], **extra)
    return MatrixError(502, "M_UNKNOWN", f"{what} failed: the remote server did not accept it")


def _essence(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("signatures", "unsigned")}


async def is_countersigned(
    hs: Homeserver, ours: dict[str, Any], theirs: Any, version: RoomVersion, server: str
) -> bool:
    """`theirs` is `ours` with `server`'s valid signature added and nothing else changed."""
    if not isinstance(theirs, dict) or _essence(theirs) != _essence(ours):
        return False
    mine = ours["signatures"][hs.server_name]
    if (theirs.get("signatures") or {}).get(hs.server_name) != mine:
        return False
    return await signed_by(hs, theirs, version, server)


class Invites:
    def __init__(self, hs: Homeserver, resident: Resident):
        self.hs = hs
        self.resident = resident

    async def receive(self, origin: str, room_id: str, event_id: str, body: Any) -> dict[str, Any]:
        """v2 invite: {room_version, event, invite_room_state}."""
        if not isinstance(body, dict):
            raise bad_json("The body must be a JSON object")
        version_id = body.get("room_version")
        version = KNOWN_ROOM_VERSIONS.get(version_id) if isinstance(version_id, str) else None
        if version is None:
            raise MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                "This server does not support that room version",
                room_version=str(version_id),
            )
        return await self._receive(
            origin, room_id, event_id, body.get("event"), body.get("invite_room_state"), version
        )

    async def receive_v1(self, origin: str, room_id: str, event_id: str, body: Any) -> dict:
        """v1 invite (deprecated, still sent by older servers): the body is the event, its
        stripped state in unsigned.invite_room_state, and no room version: the room's when
        this server knows the room, else "1" (v1 was only meant for rooms v1 and v2)."""
        if not isinstance(body, dict):
            raise bad_json("The body must be a JSON object")
        known = (await self.hs.events.store.room_versions([room_id])).get(room_id)
        version = KNOWN_ROOM_VERSIONS.get(known or "1", KNOWN_ROOM_VERSIONS["1"])
        unsigned = body.get("unsigned")
        stripped = unsigned.get("invite_room_state") if isinstance(unsigned, dict) else None
        return await self._receive(origin, room_id, event_id, body, stripped, version)

    async def _receive(
        self,
        origin: str,
        room_id: str,
        event_id: str,
        pdu_in: Any,
        invite_room_state: Any,
        version: RoomVersion,
    ) -> dict[str, Any]:
        hs = self.hs
        # Server ACLs apply to /invite (server-server API, "Server Access Control Lists"):
        # a denied server learns nothing else, not even whether the invitee exists.
        await self.resident.check_acl(room_id, origin)
        pdu = check_membership_pdu(pdu_in, room_id, "invite", origin)
        target = pdu.get("state_key")
        if (
            not (isinstance(target, str) and valid_user_id(target))
            or server_of(target) != hs.server_name
        ):
            raise invalid_param("The invitee is not a user of this server")
        resident = await self.resident.is_resident(room_id)
        # In a room we are in, the invite joins the room's graph whatever we answer (its
        # server sends it in a transaction too): it is countersigned even for a user we do
        # not have, as Synapse does. Out of band, it would only be kept for nobody.
        if not resident and not await hs.accounts.users.is_active(target):
            raise not_found("No such user")
        checked_id, event = await checked_handshake_event(hs, origin, pdu, version)
        if checked_id != event_id:
            raise invalid_param("The event ID does not match the event")
        stripped = await valid_stripped_state(hs, origin, invite_room_state, room_id, version)
        if stripped is None:
            raise invalid_param("invite_room_state must be a list holding the room's create event")
        if not resident:
            # (A room we are in is judged on its full state, by admit.)
            try:
                await hs.policy.check_invite(event, stripped)
            except AuthError as e:
                raise forbidden(str(e)) from None
        signed = sign_event(event, hs.server_name, hs.signing_key, version)
        if resident:
            await self.resident.admit(origin, room_id, version, event_id, signed, forward=False)
        else:
            await record_out_of_band(hs, target, room_id, version, event_id, signed, stripped)
        return {"event": signed}

    async def send(self, sender: str, room_id: str, target: str, content: dict[str, Any]) -> str:
        """Invites `target` (a user of another server) on behalf of our user `sender`."""
        hs = self.hs
        item, state_before = await hs.events.prepare_event(
            sender, room_id, "m.room.member", content, target
        )
        version = await hs.events.room_version(room_id)
        destination = server_of(target)
        body = {
            "room_version": version.identifier,
            "event": item.event,
            "invite_room_state": await stripped_state_pdus(hs, state_before, sender),
        }
        path = f"/_matrix/federation/v2/invite/{quote(room_id, safe='')}/{quote(item.event_id, safe='')}"
        # v1's body is the event, its stripped state in unsigned.invite_room_state.
        unsigned = {
            **item.event.get("unsigned", {}),
            "invite_room_state": body["invite_room_state"],
        }
        v1_body = {**item.event, "unsigned": unsigned}
        v1_path = path.replace("/federation/v2/", "/federation/v1/", 1)
        try:
            answer = await put_v2_or_v1(hs, destination, path, body, v1_path, v1_body)
        except FederationError as e:
            logger.info("invite to %s failed: %s", destination, e)
            raise remote_error(e, "Inviting the user") from None
        signed = answer.get("event") if isinstance(answer, dict) else None
        if version.strict_canonical_json and canonical_json_problem(signed) is not None:
            # What a server of this room version could not have signed (a float, an
            # integer out of range): bad JSON, as Synapse answers (SyTest 35room-invite).
            raise bad_json("The invitee's server answered with an event that is not canonical JSON")
        if not isinstance(signed, dict) or not await is_countersigned(
            hs, item.event, signed, version, destination
        ):
            raise MatrixError(502, "M_UNKNOWN", "The invitee's server answered with another event")
        signed = _essence(signed) | {"signatures": signed["signatures"]}
        await hs.events.persist_federated(
            room_id,
            signed,
            item.event_id,
            state_before=state_before,
            current_state=on_top_of_current_state(item.event_id, signed),
            federated=False,
        )
        return item.event_id


async def record_out_of_band(
    hs: Homeserver,
    user_id: str,
    room_id: str,
    version: RoomVersion,
    event_id: str,
    event: dict[str, Any],
    stripped: list[dict[str, Any]] | None,
) -> None:
    """A membership of our user in a room we are not in: the event as an outlier, and the
    row that puts it in the user's /sync."""
    await hs.events.persist_outliers(room_id, [(event_id, event)])
    await hs.out_of_band.record(
        user_id, room_id, event["content"]["membership"], event_id, version.identifier, stripped
    )
