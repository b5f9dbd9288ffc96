"""POST /createRoom: the sequence of events that make a new room (spec: "Creation")."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.storable import canonical_json_problem
from homeserver.http.errors import MatrixError, bad_json
from homeserver.http.request import field
from homeserver.policy.rules import (
    ACCESS_RULES,
    DIRECT,
    DIRECT_FORBIDS,
    RESTRICTED,
    UNRESTRICTED,
    PolicyError,
    check_power_levels,
    check_rule_content,
    default_rule,
)
from homeserver.rooms import third_party_invites
from homeserver.rooms.membership import member_content, valid_user_id

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

# Per preset: state event type -> content. (The content key of m.room.join_rules is
# `join_rule`, singular.)
_PRIVATE = {
    "m.room.join_rules": {"join_rule": "invite"},
    "m.room.history_visibility": {"history_visibility": "shared"},
    "m.room.guest_access": {"guest_access": "can_join"},
}
_PRESETS = {
    "private_chat": _PRIVATE,
    "trusted_private_chat": _PRIVATE,
    # No m.room.guest_access event: its absence forbids guests already (spec), and Synapse
    # sends none, so clients and SyTest see the same initial state.
    "public_chat": {
        "m.room.join_rules": {"join_rule": "public"},
        "m.room.history_visibility": {"history_visibility": "shared"},
    },
}
_ALIAS_LOCALPART = re.compile(r"[^\s:#]+")  # whole string: fullmatch


def default_power_levels(creator: str, version, preset: str, invitees: list[str]) -> dict[str, Any]:
    users = {} if version.creators_have_infinite_power else {creator: 100}
    if preset == "trusted_private_chat":
        for invitee in invitees:
            users[invitee] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "historical": 100,
    }


def known_version(identifier: str) -> RoomVersion:
    version = KNOWN_ROOM_VERSIONS.get(identifier)
    if version is None:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {identifier!r}"
        )
    return version


def preset_state(preset: str) -> dict[str, dict[str, Any]]:
    """The state events a preset sends (type -> content, state key ""), fresh copies."""
    return {etype: dict(content) for etype, content in _PRESETS[preset].items()}


async def create_joined_room(
    hs: Homeserver,
    creator: str,
    version: RoomVersion,
    creation_content: dict[str, Any],
    room_id: str | None = None,
) -> str:
    """The m.room.create event of a new room (with the version's creator fields) and the
    creator's join: the start of /createRoom and of an upgrade's replacement room (which
    may have named it beforehand: EventService.new_room_id)."""
    creation_content["room_version"] = version.identifier
    if not version.v11_redactions_and_creator:
        creation_content["creator"] = creator
    if not version.creators_have_infinite_power:
        creation_content.pop("additional_creators", None)
    room_id, _ = await hs.events.create_room_event(creator, version, creation_content, room_id)
    await hs.events.create_and_send(
        creator, room_id, "m.room.member", await member_content(hs, creator, "join"), creator
    )
    return room_id


async def create_room(hs: Homeserver, creator: str, body: dict[str, Any]) -> dict[str, Any]:
    # Validate everything first: a bad request must not leave half a room behind.
    visibility = field(body, "visibility", str, "private")
    if visibility not in ("public", "private"):
        raise bad_json("'visibility' must be public or private")
    preset = field(body, "preset", str, "public_chat" if visibility == "public" else "private_chat")
    if preset not in _PRESETS:
        raise bad_json(f"Unknown preset {preset!r}")
    version_id = str(field(body, "room_version", str, hs.config.default_room_version))
    version = known_version(version_id)
    creation_content = dict(field(body, "creation_content", dict, {}))
    initial_state = field(body, "initial_state", list, [])
    for st in initial_state:
        if (
            not isinstance(st, dict)
            or not isinstance(st.get("type"), str)
            or not isinstance(st.get("content"), dict)
        ):
            raise bad_json("Each initial_state entry needs 'type' and 'content'")
        if "state_key" in st and not isinstance(st["state_key"], str):
            raise bad_json("initial_state state_key must be a string")
    invites = field(body, "invite", list, [])
    if not all(isinstance(u, str) and valid_user_id(u) for u in invites):
        raise bad_json("'invite' must be a list of user IDs")
    invite_3pid = [
        third_party_invites.parse_threepid_invite(hs, entry, "invite_3pid")
        for entry in field(body, "invite_3pid", list, [])
    ]
    name = field(body, "name", str, None)
    topic = field(body, "topic", str, None)
    is_direct = field(body, "is_direct", bool, False)
    pl_override = field(body, "power_level_content_override", dict, None)
    alias_name = field(body, "room_alias_name", str, None)
    alias = None
    if alias_name is not None:
        if not _ALIAS_LOCALPART.fullmatch(alias_name):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room_alias_name")
        alias = f"#{alias_name}:{hs.server_name}"
        hs.appservices.check_alias_claim(alias, creator)
        if await hs.directory.alias(alias) is not None:
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
    if "m.federate" in creation_content and not isinstance(creation_content["m.federate"], bool):
        raise bad_json("m.federate must be a boolean")
    if version.strict_canonical_json:
        # What becomes event content must be canonical JSON; checked here for the whole
        # body, not event by event, so that no half-built room is left behind.
        problem = canonical_json_problem(body)
        if problem is not None:
            raise bad_json(f"Invalid event content: {problem}")

    access_rule = None
    if hs.policy.access_rules:
        access_rule, initial_state = await access_rule_at_creation(
            hs, body, initial_state, preset, is_direct, invites
        )
        if access_rule == RESTRICTED and any(
            third_party_invites.belongs_on_external_server(hs, t) for t in invite_3pid
        ):
            raise third_party_invites.external_address_refused()

    room_id = await create_joined_room(hs, creator, version, creation_content)
    send = hs.events.create_and_send
    pl = default_power_levels(creator, version, preset, invites)
    if access_rule is not None:
        pl["events"][ACCESS_RULES] = 100
    if pl_override:
        pl.update(pl_override)
    await send(creator, room_id, "m.room.power_levels", pl, "")
    if access_rule is not None:
        await send(creator, room_id, ACCESS_RULES, {"rule": access_rule}, "")
    if alias is not None:
        await hs.directory.create_alias(alias, room_id, creator)
        await send(creator, room_id, "m.room.canonical_alias", {"alias": alias}, "")
    given = {(s["type"], s.get("state_key", "")) for s in initial_state}
    for etype, preset_content in preset_state(preset).items():
        if (etype, "") not in given:
            await send(creator, room_id, etype, preset_content, "")
    for st in initial_state:
        await send(creator, room_id, st["type"], st["content"], st.get("state_key", ""))
    if name is not None:
        await send(creator, room_id, "m.room.name", {"name": name}, "")
    if topic is not None:
        await send(creator, room_id, "m.room.topic", {"topic": topic}, "")
    for invitee in invites:
        content = await member_content(hs, invitee, "invite")
        if is_direct:
            content["is_direct"] = True
        if invitee.split(":", 1)[1] == hs.server_name:
            await send(creator, room_id, "m.room.member", content, invitee)
            continue
        try:
            await hs.federation.membership.invites.send(creator, room_id, invitee, content)
        except MatrixError as e:
            # The room exists by now: a remote invite that fails must not hide it.
            logger.info("createRoom: inviting a remote user failed: %s", e.errcode)
    for threepid in invite_3pid:
        try:
            await third_party_invites.invite(hs, creator, room_id, threepid)
        except MatrixError as e:
            # As for remote invites: the room exists by now and must not be hidden.
            logger.info("createRoom: a third-party invite failed: %s", e.errcode)
    if visibility == "public":
        await hs.directory.set_public(room_id, True)
    return {"room_id": room_id, **({"room_alias": alias} if alias else {})}


async def access_rule_at_creation(
    hs: Homeserver,
    body: dict[str, Any],
    initial_state: list[dict[str, Any]],
    preset: str,
    is_direct: bool,
    invites: list[str],
) -> tuple[str, list[dict[str, Any]]]:
    """The access rule a new room starts with (homeserver/policy), checked against the
    rest of the request before anything is created; and initial_state without the rule's
    event (sent by create_room in its place, right after the power levels)."""
    given = [s for s in initial_state if s["type"] == ACCESS_RULES]
    rest = [s for s in initial_state if s["type"] != ACCESS_RULES]
    rule = default_rule(is_direct)
    if given:
        try:
            rule = check_rule_content(given[-1]["content"])
        except PolicyError as e:
            raise bad_json(str(e)) from None
        if (rule == DIRECT) != is_direct:
            raise MatrixError(
                400, "M_INVALID_PARAM", "The direct access rule goes with is_direct, and only it"
            )
    join_rules = [s for s in rest if s["type"] == "m.room.join_rules"]
    join_rule = join_rules[-1]["content"].get("join_rule") if join_rules else None
    public = join_rule == "public" if join_rules else preset == "public_chat"
    if public and rule != RESTRICTED:
        raise MatrixError(
            403, "M_FORBIDDEN", f"A room whose access rule is {rule} cannot be public"
        )
    if rule == DIRECT and (
        body.get("name") is not None
        or body.get("topic") is not None
        or any(s["type"] in DIRECT_FORBIDS for s in rest)
    ):
        raise MatrixError(403, "M_FORBIDDEN", "A direct room may not have a name, topic or avatar")
    if rule == DIRECT and len(invites) > 1:
        raise MatrixError(403, "M_FORBIDDEN", "A direct room has at most two members")
    override = body.get("power_level_content_override")
    if rule == UNRESTRICTED and isinstance(override, dict):
        # Judged here, before anything is created: the rule's event follows the power
        # levels and would be refused half-way through the room's creation.
        users = override.get("users")
        listed = await hs.policy.external_users(users if isinstance(users, dict) else ())
        try:
            check_power_levels({"content": override}, UNRESTRICTED, listed.__contains__)
        except PolicyError as e:
            raise MatrixError(403, "M_FORBIDDEN", str(e)) from None
    if rule == RESTRICTED:
        external = await hs.policy.external_users(invites)
        if external:
            raise MatrixError(
                403,
                "M_FORBIDDEN",
                f"{sorted(external)[0]} is an external user and this room is restricted",
            )
    return rule, rest
