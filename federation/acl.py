"""m.room.server_acl: which servers may take part in a room (spec: "Server ACLs").

Applied to the server making a request (the origin of a transaction, the requester of
a room endpoint), never to the event's sender: ACLs act at the network layer.
"""

from __future__ import annotations

from typing import Any

from federation.discovery import ip_literal
from federation.policy import split_server_name
from homeserver.push.evaluator import glob_matches


def _patterns(content: dict[str, Any], key: str) -> list[str]:
    value = content.get(key)
    if not isinstance(value, list):
        return []
    return [p for p in value if isinstance(p, str)]


def server_allowed_by_acl(content: dict[str, Any] | None, server_name: str) -> bool:
    """The spec's five steps; `content` None means the room has no ACL."""
    if content is None:
        return True
    host, _port = split_server_name(server_name)  # ports are never considered
    # allow_ip_literals defaults to true when missing or not a boolean.
    if content.get("allow_ip_literals") is False and ip_literal(host) is not None:
        return False
    if any(glob_matches(p, host) for p in _patterns(content, "deny")):
        return False
    return any(glob_matches(p, host) for p in _patterns(content, "allow"))
