"""POST /createRoom: the sequence of events that make a new room (spec: "Creation")."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.errors import MatrixError, bad_json
from homeserver.http.request import field
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
    "public_chat": {
        "m.room.join_rules": {"join_rule": "public"},
        "m.room.history_visibility": {"history_visibility": "shared"},
        "m.room.guest_access": {"guest_access": "forbidden"},
    },
}
_ALIAS_LOCALPART = re.compile(r"^[^\s:#]+$")


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


async def create_room(hs: Homeserver, creator: str, body: dict[str, Any]) -> dict[str, Any]:
    # Validate everything first: a bad request must not leave half a room behind.
    visibility = field(body, "visibility", str, "private")
    if visibility not in ("public", "private"):
        raise bad_json("'visibility' must be public or private")
    preset = field(body, "preset", str, "public_chat" if visibility == "public" else "private_chat")
    if preset not in _PRESETS:
        raise bad_json(f"Unknown preset {preset!r}")
    version_id = str(field(body, "room_version", str, hs.config.default_room_version))
    version = KNOWN_ROOM_VERSIONS.get(version_id)
    if version is None:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version_id!r}"
        )
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
    name = field(body, "name", str, None)
    topic = field(body, "topic", str, None)
    is_direct = field(body, "is_direct", bool, False)
    pl_override = field(body, "power_level_content_override", dict, None)
    alias_name = field(body, "room_alias_name", str, None)
    alias = None
    if alias_name is not None:
        if not _ALIAS_LOCALPART.match(alias_name):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room_alias_name")
        alias = f"#{alias_name}:{hs.server_name}"
        if await hs.directory.alias(alias) is not None:
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
    if "m.federate" in creation_content and not isinstance(creation_content["m.federate"], bool):
        raise bad_json("m.federate must be a boolean")

    creation_content["room_version"] = version.identifier
    if not version.v11_redactions_and_creator:
        creation_content["creator"] = creator
    creation_content.pop(
        "additional_creators", None
    ) if not version.creators_have_infinite_power else None
    room_id, _ = await hs.events.create_room_event(creator, version, creation_content)

    send = hs.events.create_and_send
    await send(
        creator, room_id, "m.room.member", await member_content(hs, creator, "join"), creator
    )
    pl = default_power_levels(creator, version, preset, invites)
    if pl_override:
        pl.update(pl_override)
    await send(creator, room_id, "m.room.power_levels", pl, "")
    if alias is not None:
        await hs.directory.create_alias(alias, room_id, creator)
        await send(creator, room_id, "m.room.canonical_alias", {"alias": alias}, "")
    given = {(s["type"], s.get("state_key", "")) for s in initial_state}
    for etype, preset_content in _PRESETS[preset].items():
        if (etype, "") not in given:
            await send(creator, room_id, etype, dict(preset_content), "")
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
    if visibility == "public":
        await hs.directory.set_public(room_id, True)
    return {"room_id": room_id, **({"room_alias": alias} if alias else {})}
