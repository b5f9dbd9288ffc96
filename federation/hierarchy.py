"""Asking other servers for a space's hierarchy (GET /_matrix/federation/v1/hierarchy).

Used by homeserver/spaces/hierarchy.py for rooms this server is not in. The servers a
child link names are tried in order; answers are checked (anything malformed is dropped
so that it never reaches a client) and kept for CACHE_SECONDS, as the spec suggests.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

from federation.client import FederationClient
from federation.errors import FederationError
from federation.policy import ServerPolicy

logger = logging.getLogger(__name__)

CACHE_SECONDS = 300
MAX_CACHED = 1000
MAX_SERVERS_TRIED = 3
_SUMMARY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "room_id": str,
    "num_joined_members": int,
    "world_readable": bool,
    "guest_can_join": bool,
}
_OPTIONAL_STR = (
    "name",
    "topic",
    "canonical_alias",
    "avatar_url",
    "join_rule",
    "room_type",
    "room_version",
    "encryption",
)
_CHILD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "type": str,
    "state_key": str,
    "content": dict,
    "sender": str,
    "origin_server_ts": int,
}


def _typed(value: Any, fields: dict[str, type | tuple[type, ...]]) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), t) and not (t is int and isinstance(value.get(k), bool))
        for k, t in fields.items()
    )


def _summary(value: Any) -> dict[str, Any] | None:
    if not _typed(value, _SUMMARY_FIELDS):
        return None
    out = {k: value[k] for k in _SUMMARY_FIELDS}
    out.update({k: value[k] for k in _OPTIONAL_STR if isinstance(value.get(k), str)})
    out.setdefault("join_rule", "public")
    allowed = value.get("allowed_room_ids")
    if isinstance(allowed, list) and all(isinstance(r, str) for r in allowed):
        out["allowed_room_ids"] = allowed
    return out


def parse_answer(answer: Any, room_id: str) -> dict[str, Any] | None:
    """The answer with only well-formed parts, or None if its room is not usable."""
    if not isinstance(answer, dict) or not isinstance(answer.get("room"), dict):
        return None
    room = _summary(answer["room"])
    state = answer["room"].get("children_state")
    if room is None or room["room_id"] != room_id or not isinstance(state, list):
        return None
    room["children_state"] = [
        {k: c[k] for k in _CHILD_FIELDS} for c in state if _typed(c, _CHILD_FIELDS)
    ]
    children = answer.get("children")
    inaccessible = answer.get("inaccessible_children")
    return {
        "room": room,
        "children": [
            s
            for s in (_summary(c) for c in (children if isinstance(children, list) else []))
            if s is not None
        ],
        "inaccessible_children": [
            r
            for r in (inaccessible if isinstance(inaccessible, list) else [])
            if isinstance(r, str)
        ],
    }


class RemoteHierarchy:
    def __init__(self, server_name: str, client: FederationClient, policy: ServerPolicy):
        self.server_name = server_name
        self.client = client
        self.policy = policy
        self._cache: dict[tuple[str, bool], tuple[float, dict[str, Any]]] = {}

    async def fetch(
        self, room_id: str, via: list[str], suggested_only: bool
    ) -> dict[str, Any] | None:
        """{room, children, inaccessible_children} from the first of `via` that answers,
        or None."""
        if not self.policy.federates:
            return None
        key = (room_id, suggested_only)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        path = f"/_matrix/federation/v1/hierarchy/{quote(room_id, safe='')}"
        query = {"suggested_only": "true" if suggested_only else "false"}
        servers = [s for s in dict.fromkeys(via) if s != self.server_name]
        for server in servers[:MAX_SERVERS_TRIED]:
            if not self.policy.is_allowed(server):
                continue
            try:
                answer = parse_answer(await self.client.get_json(server, path, query), room_id)
            except FederationError as e:
                logger.info("hierarchy of %s from %s failed: %s", room_id, server, e)
                continue
            if answer is None:
                continue
            if len(self._cache) >= MAX_CACHED:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[key] = (now + CACHE_SECONDS, answer)
            return answer
        return None
