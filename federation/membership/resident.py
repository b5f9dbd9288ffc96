"""The resident server's side of the membership handshakes (server-server spec "Joining
Rooms", "Knocking", "Leaving Rooms"): make_join / make_leave / make_knock hand the user's
server a template on our room's head; send_join / send_leave / send_knock take the signed
event back, check it as any PDU, authorise it, store it and pass it on to the room's other
servers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from federation.events.validation import NonCanonicalPdu, UnsignedPdu, refuse_nul_in_columns
from federation.membership.pdus import (
    InvalidPdu,
    auth_chain,
    check_pdu,
    server_of,
    signature_checker,
    stripped_state_pdus,
)
from federation.state import resolve
from homeserver.events.auth import (
    AuthError,
    auth_types_for_event,
    check_auth,
    check_auth_events_list,
    get_named_level,
    get_power_level,
)
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import sign_event
from homeserver.events.state_res import auth_event_ids
from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.rooms.membership import valid_user_id
from storage.events import StateMap

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)


def incompatible_version(version: RoomVersion) -> MatrixError:
    return MatrixError(
        400,
        "M_INCOMPATIBLE_ROOM_VERSION",
        "Your homeserver does not support this room's version",
        room_version=version.identifier,
    )


def check_membership_pdu(pdu: Any, room_id: str, membership: str, origin: str) -> dict[str, Any]:
    """The checks every membership endpoint makes before anything else (M_INVALID_PARAM,
    as the spec suggests): an m.room.member event of the expected membership, sent by a
    user of the requesting server, for this room. Returns the event."""
    if not isinstance(pdu, dict):
        raise bad_json("The event must be a JSON object")
    if pdu.get("type") != "m.room.member":
        raise invalid_param("Not an m.room.member event")
    content = pdu.get("content")
    if not isinstance(content, dict) or content.get("membership") != membership:
        raise invalid_param(f"Not a {membership} event")
    sender = pdu.get("sender")
    if not isinstance(sender, str) or server_of(sender) != origin:
        # 403, as Synapse answers a server acting for another's users.
        raise forbidden("The sender is not a user of the requesting server")
    if pdu.get("room_id") != room_id:
        raise invalid_param("The event belongs to another room")
    # Before any of its values is looked up (the invitee, the sender's membership).
    try:
        refuse_nul_in_columns(pdu)
    except InvalidPdu as e:
        raise invalid_param(f"Invalid event: {e}") from None
    return pdu


class Resident:
    def __init__(self, hs: Homeserver):
        self.hs = hs

    async def is_resident(self, room_id: str) -> bool:
        """We take part in the room: one of our users is joined to it."""
        return self.hs.server_name in await self.hs.events.servers_in_room(room_id)

    async def check_acl(self, room_id: str, origin: str) -> None:
        if not await self.hs.federation.acl_allows(room_id, origin):
            raise forbidden("The room's server ACL does not admit your server")

    async def _room(self, room_id: str, origin: str) -> RoomVersion:
        if not room_id.startswith("!") or not await self.is_resident(room_id):
            raise not_found("This server is not in that room")
        await self.check_acl(room_id, origin)
        return await self.hs.events.room_version(room_id)

    # ---- make_join / make_leave / make_knock ---------------------------------------------

    async def make(
        self,
        origin: str,
        room_id: str,
        user_id: str,
        membership: str,
        versions: list[str] | None,
    ) -> dict[str, Any]:
        """`versions`: the room versions the user's server supports (None for make_leave,
        which does not ask)."""
        if not valid_user_id(user_id) or server_of(user_id) != origin:
            raise forbidden("The user is not on the requesting server")
        version = await self._room(room_id, origin)
        if versions is not None and version.identifier not in versions:
            raise incompatible_version(version)
        if membership == "knock" and not version.knock_join_rule:
            raise forbidden("This room's version does not support knocking")
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            authoriser = await self._restricted_join_authoriser(room_id, user_id, version)
            if authoriser is not None:
                content["join_authorised_via_users_server"] = authoriser
        event, version = await self.hs.events.membership_template(room_id, user_id, content)
        event["origin"] = self.hs.server_name
        return {"room_version": version.identifier, "event": event}

    async def _restricted_join_authoriser(
        self, room_id: str, user_id: str, version: RoomVersion
    ) -> str | None:
        """For a restricted room the user is not invited to: one of our users who may
        invite, vouching that the user belongs to one of the rooms the join rules allow
        (client-server spec "Restricted rooms"); None when the room is not restricted."""
        hs = self.hs
        state = await hs.events.current_state(
            room_id,
            [("m.room.join_rules", ""), ("m.room.member", user_id), ("m.room.power_levels", "")],
        )
        rules = state.get(("m.room.join_rules", ""))
        rule = rules.content.get("join_rule") if rules else None
        if not (
            (rule == "restricted" and version.restricted_join_rule)
            or (rule == "knock_restricted" and version.knock_restricted_join_rule)
        ):
            return None
        member = state.get(("m.room.member", user_id))
        if member is not None and member.content.get("membership") in ("join", "invite"):
            return None
        allow = rules.content.get("allow") if rules else None
        allowed_rooms = [
            a["room_id"]
            for a in (allow if isinstance(allow, list) else [])
            if isinstance(a, dict)
            and a.get("type") == "m.room_membership"
            and isinstance(a.get("room_id"), str)
        ]
        known = [r for r in allowed_rooms if await self.is_resident(r)]
        if not known:
            raise MatrixError(
                400, "M_UNABLE_TO_AUTHORISE_JOIN", "This server cannot check the join conditions"
            )
        if not any([await hs.events.membership(r, user_id) == "join" for r in known]):
            raise forbidden("You are not a member of any room this room is restricted to")
        authoriser = await self._local_inviter(room_id, version)
        if authoriser is None:
            raise MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user here may invite you")
        return authoriser

    async def _local_inviter(self, room_id: str, version: RoomVersion) -> str | None:
        hs = self.hs
        members = await hs.membership_store.server_members(
            room_id, hs.server_name, joined_only=True, limit=100
        )
        head = await hs.events.room_head(room_id)
        pl = await hs.events.current_state_event(room_id, "m.room.power_levels")
        auth_state = {("m.room.power_levels", ""): pl.event} if pl else {}
        needed = get_named_level(version, "invite", pl.content if pl else None)
        levels = {
            u: get_power_level(version, u, auth_state, create_event=head.create_event)
            for u in members
        }
        able = [u for u, level in levels.items() if level >= needed]
        return max(able, key=lambda u: levels[u]) if able else None

    # ---- send_join / send_leave / send_knock ---------------------------------------------

    async def send(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str
    ) -> tuple[dict[str, Any], StateMap]:
        """Checks, authorises and stores a signed membership event of `origin`'s user;
        returns (the event as stored, the state before it)."""
        version = await self._room(room_id, origin)
        check_membership_pdu(pdu, room_id, membership, origin)
        if pdu.get("state_key") != pdu.get("sender"):
            raise invalid_param("The state_key must be the sender")
        if membership == "join":
            # Before the checks, which require the vouching server's signature.
            pdu = self._countersign_restricted_join(pdu, version)
        event_id_checked, event = await checked_handshake_event(self.hs, origin, pdu, version)
        if event_id_checked != event_id:
            raise invalid_param("The event ID does not match the event")
        return await self.admit(origin, room_id, version, event_id, event, forward=True)

    def _countersign_restricted_join(
        self, event: dict[str, Any], version: RoomVersion
    ) -> dict[str, Any]:
        """A restricted join vouched for by one of our users needs our signature."""
        authoriser = event["content"].get("join_authorised_via_users_server")
        if not isinstance(authoriser, str) or server_of(authoriser) != self.hs.server_name:
            return event
        try:
            return sign_event(event, self.hs.server_name, self.hs.signing_key, version)
        except (TypeError, ValueError, KeyError, AttributeError):
            raise invalid_param("The event cannot be signed") from None

    async def admit(
        self,
        origin: str,
        room_id: str,
        version: RoomVersion,
        event_id: str,
        event: dict[str, Any],
        *,
        forward: bool,
    ) -> tuple[dict[str, Any], StateMap]:
        """Authorises a checked event against its auth events, the state before it and the
        current state, then stores it; with `forward`, sends it to the room's other servers
        (we are the only server that got it). Refused events change nothing (M_FORBIDDEN).
        A retry of an event already stored is answered from what is stored."""
        hs = self.hs
        existing = await hs.event_store.get_event(event_id)
        if existing is not None and existing.status is None:
            group = existing.state_group_before
            groups = await hs.event_store.state_groups([group])
            return existing.event, groups.get(group, {}) if group is not None else {}
        state_before = await self._state_before(room_id, version, event)
        await self._authorise(room_id, version, event, state_before)
        await hs.events.persist_federated(
            room_id,
            event,
            event_id,
            state_before=state_before,
            current_state=on_top_of_current_state(event_id, event),
            # We are the only server that got it: the outbound queue sends it on to the
            # room's other servers, in the transaction that stores it.
            relay_from=origin if forward else None,
        )
        return event, state_before

    async def _state_before(
        self, room_id: str, version: RoomVersion, event: dict[str, Any]
    ) -> StateMap:
        prev = list(dict.fromkeys(_prev_event_ids(event)))
        head = await self.hs.events.room_head(room_id)
        if prev and set(prev) == set(head.extremities):
            return dict(head.state)
        states = await self.hs.events.state_after_events(prev)
        if not prev or len(states) != len(prev):
            # Our own template names events we hold; anything else is not ours to fetch.
            raise invalid_param("The event's prev_events are unknown here")
        return await resolve(self.hs, room_id, version, list(states.values()))

    async def _authorise(
        self, room_id: str, version: RoomVersion, event: dict[str, Any], state_before: StateMap
    ) -> None:
        hs = self.hs
        head = await hs.events.room_head(room_id)
        create = head.create_event
        auth_ids = list(dict.fromkeys(auth_event_ids(event)))
        auth = await hs.event_store.get_events(auth_ids)
        if len(auth) != len(auth_ids) or any(
            a.status == "rejected" or a.room_id != room_id for a in auth.values()
        ):
            raise forbidden("The event cites auth events that are unknown or rejected here")
        verify = await signature_checker(hs, event, version)
        keys = auth_types_for_event(version, event)
        wanted = {k: s[k] for s in (state_before, head.state) for k in keys if k in s}
        loaded = await hs.event_store.get_events(wanted.values())
        try:
            check_auth_events_list(version, event, [a.event for a in auth.values()])
            check_auth(
                version,
                event,
                {(a.type, str(a.state_key)): a.event for a in auth.values()},
                create_event=create,
                verify_signature=verify,
            )
            # Against the state before it, then against the current state: a handshake
            # must not let in a user who was banned in the meantime.
            for state in (state_before, head.state):
                at = {k: loaded[state[k]].event for k in keys if state.get(k) in loaded}
                check_auth(version, event, at, create_event=create, verify_signature=verify)
                await hs.policy.check(event, state)
        except AuthError as e:
            raise forbidden(f"The event is not allowed: {e}") from None

    # ---- answers -------------------------------------------------------------------------

    async def join_answer(
        self, room_id: str, event: dict[str, Any], state_before: StateMap
    ) -> dict[str, Any]:
        """send_join v2: the full state before the join and its auth chain (no partial
        state: members are never omitted)."""
        loaded = await self.hs.event_store.get_events(state_before.values())
        state = [loaded[i].event for i in state_before.values() if i in loaded]
        chain = await auth_chain(self.hs, [event, *state])
        servers = sorted(
            {
                server_of(e["state_key"])
                for e in state
                if e["type"] == "m.room.member" and e["content"].get("membership") == "join"
            }
        )
        return {
            "state": state,
            "auth_chain": [e.event for e in chain.values()],
            "event": event,
            "members_omitted": False,
            "servers_in_room": servers,
        }

    async def knock_answer(self, room_id: str, user_id: str) -> dict[str, Any]:
        state = dict((await self.hs.events.room_head(room_id)).state)
        return {"knock_room_state": await stripped_state_pdus(self.hs, state, user_id)}


async def checked_handshake_event(
    hs: Homeserver, origin: str, pdu: dict[str, Any], version: RoomVersion
) -> tuple[str, dict[str, Any]]:
    """check_pdu for an event a server hands us to sign or accept: one whose content hash
    fails is refused here rather than accepted redacted, as a PDU relayed to us would
    be, since its own server just built it."""
    try:
        event_id, event = await check_pdu(hs, origin, pdu, version)
    except UnsignedPdu as e:
        raise forbidden(f"Invalid event: {e}") from None
    except NonCanonicalPdu as e:
        raise bad_json(f"Invalid event: {e}") from None
    except InvalidPdu as e:
        raise invalid_param(f"Invalid event: {e}") from None
    if event.get("content") != pdu.get("content"):
        raise invalid_param("Invalid event: the content hash does not match")
    return event_id, event


def on_top_of_current_state(event_id: str, event: dict[str, Any]):
    """persist_federated's current_state for a membership event we authorised against
    the current state: the state after it if it extends every forward extremity, else
    the current state at the time of writing with it applied (what landed meanwhile
    keeps its changes)."""
    key = (event["type"], event["state_key"])
    prev = set(_prev_event_ids(event))

    async def current_state(head) -> StateMap | None:
        if prev >= set(head.extremities):
            return None
        return {**head.state, key: event_id}

    return current_state


def _prev_event_ids(event: dict[str, Any]) -> list[str]:
    # v1/v2 list [event_id, hashes] pairs.
    return [p[0] if isinstance(p, list) and p else p for p in event.get("prev_events") or []]
