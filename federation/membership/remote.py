"""Our users entering or leaving rooms this server is not in, through a resident server:
joins (make_join / send_join), knocks (make_knock / send_knock), rejecting an invite or
retracting a knock (make_leave / send_leave), and resolving remote room aliases.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from federation.client import FederationError
from federation.membership.invites import is_countersigned, record_out_of_band, remote_error
from federation.membership.joined_state import InvalidJoinAnswer, checked_join_state
from federation.membership.pdus import server_of, valid_stripped_state
from federation.membership.v1_fallback import put_v2_or_v1
from homeserver.events.hashing import compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import hash_and_sign_event
from homeserver.http.errors import MatrixError, not_found
from homeserver.jsonutil import canonical
from homeserver.rooms.events_service import MAX_EVENT_BYTES

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

# Servers tried for one handshake, at most.
MAX_CANDIDATES = 10
_SEND_PATHS = {
    "join": "/_matrix/federation/v2/send_join",
    "leave": "/_matrix/federation/v2/send_leave",
    "knock": "/_matrix/federation/v1/send_knock",
}


class _BadTemplate(Exception):
    pass


def _q(value: str) -> str:
    return quote(value, safe="")


class RemoteMembership:
    def __init__(self, hs: Homeserver):
        self.hs = hs

    # ---- aliases and servers -------------------------------------------------------------

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]]:
        """(room ID, servers in the room) for an alias of another server (query/directory)."""
        try:
            answer = await self.hs.federation.client.get_json(
                server_of(alias), "/_matrix/federation/v1/query/directory", {"room_alias": alias}
            )
        except FederationError as e:
            if e.status == 404:
                raise not_found("Room alias not found") from None
            raise remote_error(e, "Resolving the alias") from None
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        servers = answer.get("servers") if isinstance(answer, dict) else None
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise MatrixError(502, "M_UNKNOWN", "The alias' server gave no room ID")
        servers = [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else []
        return room_id, servers

    async def candidates(self, user_id: str, room_id: str, given: Iterable[str]) -> list[str]:
        """Servers to ask, in order: the ones given (via, server_name, the alias' servers),
        the server that invited us (or the room's servers we knocked through), the servers
        our possibly stale copy of the room has joined, and the room ID's own server
        (rooms before v12 name their creator's server)."""
        hs = self.hs
        found = list(given)
        oob = await hs.out_of_band.get(user_id, room_id)
        if oob is not None:
            ev = await hs.event_store.get_event(oob.event_id)
            if ev is not None:
                found.append(server_of(ev.sender))
            found.extend(server_of(e.get("sender", "")) for e in oob.stripped_state)
        found.extend(sorted(await hs.events.servers_in_room(room_id)))
        if ":" in room_id:
            found.append(server_of(room_id))
        policy = hs.federation.policy
        result = [
            s for s in dict.fromkeys(found) if s and s != hs.server_name and policy.is_allowed(s)
        ]
        return result[:MAX_CANDIDATES]

    # ---- the handshake -------------------------------------------------------------------

    async def _make(
        self, server: str, room_id: str, user_id: str, membership: str
    ) -> tuple[dict[str, Any], RoomVersion]:
        if membership == "leave":
            query = None
        else:
            versions = [
                v.identifier
                for v in KNOWN_ROOM_VERSIONS.values()
                if membership != "knock" or v.knock_join_rule
            ]
            query = {"ver": versions}
        answer = await self.hs.federation.client.get_json(
            server, f"/_matrix/federation/v1/make_{membership}/{_q(room_id)}/{_q(user_id)}", query
        )
        if not isinstance(answer, dict):
            raise _BadTemplate("not an object")
        version = KNOWN_ROOM_VERSIONS.get(answer.get("room_version", "1"))
        template = answer.get("event")
        if version is None:
            raise _BadTemplate("unknown room version")
        # The checks the spec asks of the joining server before it signs anything.
        if not (
            isinstance(template, dict)
            and template.get("room_id") == room_id
            and template.get("sender") == user_id
            and template.get("state_key") == user_id
            and template.get("type") == "m.room.member"
            and isinstance(template.get("content"), dict)
            and template["content"].get("membership") == membership
            and isinstance(template.get("prev_events"), list)
            and isinstance(template.get("auth_events"), list)
            and isinstance(template.get("depth"), int)
        ):
            raise _BadTemplate("the template is not the expected membership event")
        return template, version

    def _sign(
        self, template: dict[str, Any], version: RoomVersion, content: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        hs = self.hs
        event = {
            k: v
            for k, v in template.items()
            if k not in ("event_id", "hashes", "signatures", "unsigned")
        }
        event["content"] = {**template["content"], **content}
        event["origin"] = hs.server_name
        event["origin_server_ts"] = int(time.time() * 1000)
        if version.event_ids_carry_domain:
            event["event_id"] = f"${secrets.token_urlsafe(18)}:{hs.server_name}"
        event = hash_and_sign_event(event, hs.server_name, hs.signing_key, version)
        if len(canonical(event)) > MAX_EVENT_BYTES:
            raise MatrixError(413, "M_TOO_LARGE", "The membership event is too large")
        event_id = (
            event["event_id"]
            if version.event_ids_carry_domain
            else compute_event_id(event, version)
        )
        return event_id, event

    async def _handshake(
        self,
        user_id: str,
        room_id: str,
        membership: str,
        servers: list[str],
        content: dict[str, Any],
    ) -> tuple[str, RoomVersion, str, dict[str, Any], Any]:
        """make_<membership> then send_<membership> through the first server that does
        both: (server, room version, event ID, our signed event, the send answer)."""
        if not servers:
            raise not_found("No server in that room is known to this server")
        last_error: FederationError | None = None
        for server in servers:
            try:
                template, version = await self._make(server, room_id, user_id, membership)
                event_id, event = self._sign(template, version, content)
                path = f"{_SEND_PATHS[membership]}/{_q(room_id)}/{_q(event_id)}"
                if membership == "knock":  # knocking has only v1
                    answer = await self.hs.federation.client.put_json(server, path, event)
                else:
                    v1 = path.replace("/federation/v2/", "/federation/v1/", 1)
                    answer = await put_v2_or_v1(self.hs, server, path, event, v1, event)
                return server, version, event_id, event, answer
            except _BadTemplate as e:
                logger.info("make_%s at %s gave a bad template: %s", membership, server, e)
            except FederationError as e:
                logger.info("%s through %s failed: %s", membership, server, e)
                last_error = e
                if e.errcode == "M_INCOMPATIBLE_ROOM_VERSION":
                    break  # every resident server would say so
        if last_error is not None:
            raise remote_error(last_error, f"The {membership}")
        raise MatrixError(502, "M_UNKNOWN", f"No server could help with the {membership}")

    # ---- join / knock / leave ------------------------------------------------------------

    async def join(
        self, user_id: str, room_id: str, servers: list[str], content: dict[str, Any]
    ) -> None:
        hs = self.hs
        server, version, event_id, event, answer = await self._handshake(
            user_id, room_id, "join", servers, content
        )
        returned = answer.get("event") if isinstance(answer, dict) else None
        if returned is not None and await is_countersigned(hs, event, returned, version, server):
            event = {k: v for k, v in returned.items() if k != "unsigned"}
        try:
            joined = await checked_join_state(hs, server, version, room_id, event_id, event, answer)
        except InvalidJoinAnswer as e:
            logger.warning("send_join answer from %s rejected: %s", server, e)
            raise MatrixError(
                502, "M_UNKNOWN", "The resident server's answer to the join was invalid"
            ) from None
        await hs.events.create_federated_room(room_id, version.identifier, joined.creator)
        await hs.events.forget_extremities(room_id)
        await hs.events.persist_outliers(room_id, joined.outliers)
        await hs.events.persist_federated(room_id, event, event_id, state_before=joined.state)
        await hs.out_of_band.forget(user_id, room_id)

    async def knock(
        self, user_id: str, room_id: str, servers: list[str], content: dict[str, Any]
    ) -> None:
        server, version, event_id, event, answer = await self._handshake(
            user_id, room_id, "knock", servers, content
        )
        state = answer.get("knock_room_state") if isinstance(answer, dict) else None
        stripped = await valid_stripped_state(self.hs, server, state, room_id, version)
        await record_out_of_band(
            self.hs, user_id, room_id, version, event_id, event, stripped or []
        )

    async def leave(self, user_id: str, room_id: str, content: dict[str, Any]) -> None:
        """Rejects an invite or retracts a knock in a room we are not in. When no server
        of the room takes the rejection, it is recorded here only: an invite from a
        server that is gone for good must not stand forever."""
        servers = await self.candidates(user_id, room_id, [])
        try:
            _server, version, event_id, event, _answer = await self._handshake(
                user_id, room_id, "leave", servers, content
            )
        except MatrixError as e:
            logger.info("rejecting %s remotely failed (%s); rejecting locally", room_id, e.errcode)
            version, event_id, event = await self._local_rejection(user_id, room_id, content)
        await record_out_of_band(self.hs, user_id, room_id, version, event_id, event, None)

    async def _local_rejection(
        self, user_id: str, room_id: str, content: dict[str, Any]
    ) -> tuple[RoomVersion, str, dict[str, Any]]:
        """A leave event on top of the invite (or knock), signed by us and sent nowhere."""
        oob = await self.hs.out_of_band.get(user_id, room_id)
        invite = await self.hs.event_store.get_event(oob.event_id) if oob else None
        if oob is None or invite is None:
            raise not_found("There is no invite to reject")
        version = KNOWN_ROOM_VERSIONS[oob.room_version]
        cited = [[oob.event_id, {}]] if version.event_ids_carry_domain else [oob.event_id]
        template = {
            "room_id": room_id,
            "type": "m.room.member",
            "sender": user_id,
            "state_key": user_id,
            "content": {},
            "depth": invite.event.get("depth", 0) + 1,
            "prev_events": cited,
            "auth_events": cited,
        }
        event_id, event = self._sign(template, version, content)
        return version, event_id, event
