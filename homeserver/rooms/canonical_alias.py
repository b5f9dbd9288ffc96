"""m.room.canonical_alias: its aliases must be aliases of the room (spec: "m.room.canonical_alias",
the server SHOULD check them), and deleting an alias takes it out of the event."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from homeserver.http.errors import MatrixError

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

_ALIAS = re.compile(r"#[^:\s\x00]+:[^\s\x00]+")  # no U+0000: it never reaches a query


async def check_content(hs: Homeserver, room_id: str, content: dict[str, Any]) -> None:
    """400 M_INVALID_PARAM for a malformed alias; 400 M_BAD_ALIAS for a local alias that
    does not exist or names another room. Remote aliases are taken on trust."""
    aliases: list[Any] = []
    if content.get("alias") is not None:
        aliases.append(content["alias"])
    alt = content.get("alt_aliases")
    if alt is not None:
        if not isinstance(alt, list):
            raise MatrixError(400, "M_INVALID_PARAM", "'alt_aliases' must be a list of aliases")
        aliases.extend(alt)
    for alias in aliases:
        if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room alias {alias!r}")
        if alias.split(":", 1)[1] != hs.server_name:
            continue
        row = await hs.directory.alias(alias)
        if row is None or row["room_id"] != room_id:
            raise MatrixError(400, "M_BAD_ALIAS", f"{alias} is not an alias of this room")


async def forget_alias(hs: Homeserver, user_id: str, room_id: str, alias: str) -> None:
    """After `alias` was deleted: the room's canonical alias event no longer names it, if
    `user_id` may change it (otherwise it stays, as it would have before)."""
    ev = await hs.events.current_state_event(room_id, "m.room.canonical_alias")
    if ev is None:
        return
    content = dict(ev.content)
    changed = False
    if content.get("alias") == alias:
        del content["alias"]
        changed = True
    alt = content.get("alt_aliases")
    if isinstance(alt, list) and alias in alt:
        content["alt_aliases"] = [a for a in alt if a != alias]
        changed = True
    if not changed:
        return
    try:
        await hs.events.create_and_send(user_id, room_id, "m.room.canonical_alias", content, "")
    except MatrixError as err:
        logger.info("canonical alias of %r left naming a deleted alias: %s", room_id, err.errcode)
