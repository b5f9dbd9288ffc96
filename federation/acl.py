"""m.room.server_acl: which servers may take part in a room (client-server spec, "Server
Access Control Lists"; server-server spec lists the endpoints it protects)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from federation.discovery import ip_literal
from federation.policy import split_server_name
from homeserver.http.errors import forbidden
from homeserver.push.evaluator import glob_matches

if TYPE_CHECKING:
    from homeserver.app import Homeserver


def _patterns(content: dict[str, Any], key: str) -> list[str]:
    value = content.get(key)
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


def server_allowed(content: dict[str, Any] | None, server_name: str) -> bool:
    """The spec's order: no ACL allows; IP literals when allow_ip_literals is false deny;
    then deny globs, then allow globs (case-insensitive, port ignored); else deny."""
    if content is None:
        return True
    host, _port = split_server_name(server_name)
    if content.get("allow_ip_literals") is False and ip_literal(host) is not None:
        return False
    if any(glob_matches(p, host) for p in _patterns(content, "deny")):
        return False
    return any(glob_matches(p, host) for p in _patterns(content, "allow"))


async def check_room_acl(hs: Homeserver, room_id: str, server_name: str) -> None:
    """Raises 403 M_FORBIDDEN when the room's current server ACL denies `server_name`."""
    acl = await hs.events.current_state_event(room_id, "m.room.server_acl")
    if acl is not None and not server_allowed(acl.content, server_name):
        raise forbidden("Server is banned from this room by its server ACL")
