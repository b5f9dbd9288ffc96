"""The media a room's events refer to, for the admin's room listing and quarantine
(Synapse's `GET /_synapse/admin/v1/room/{roomId}/media` and `.../media/quarantine`).

Looked for: attachments of messages and stickers (`url`, `info.thumbnail_url`, and the
`file.url` / `info.thumbnail_file.url` of encrypted attachments, also inside an edit's
`m.new_content`), the room avatar and members' avatars. Content of encrypted events is
opaque to the server, so attachments sent in encrypted rooms are not found.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from homeserver.media import ids

_BATCH = 500


def _attachment_urls(content: dict) -> Iterator[object]:
    info_value = content.get("info")
    info = info_value if isinstance(info_value, dict) else {}
    yield content.get("url")
    yield info.get("thumbnail_url")
    for encrypted in (content.get("file"), info.get("thumbnail_file")):
        if isinstance(encrypted, dict):
            yield encrypted.get("url")


def media_in_event(event: dict) -> Iterator[tuple[str, str]]:
    """(server name, media ID) of each well-formed mxc:// URI the event refers to."""
    content = event.get("content")
    if not isinstance(content, dict):
        return
    kind = event.get("type")
    if kind == "m.room.member":
        candidates: list[object] = [content.get("avatar_url")]
    elif kind == "m.room.avatar":
        candidates = [content.get("url")]
    else:
        candidates = list(_attachment_urls(content))
        if isinstance(content.get("m.new_content"), dict):
            candidates += _attachment_urls(content["m.new_content"])
    for uri in candidates:
        parsed = ids.parse_mxc(uri)
        if parsed is not None:
            yield parsed


async def media_in_room(store, room_id: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(local media IDs, remote (origin, media ID)) referred to in the room, each once,
    in the order they first appear."""
    local: dict[str, None] = {}
    remote: dict[tuple[str, str], None] = {}
    after = -(2**63)
    while True:
        rows = await store.room_events_with_media(room_id, after, _BATCH)
        for row in rows:
            for server_name, media_id in media_in_event(orjson.loads(row["json"])):
                if server_name == store.server_name:
                    local[media_id] = None
                else:
                    remote[(server_name, media_id)] = None
        if len(rows) < _BATCH:
            return list(local), list(remote)
        after = rows[-1]["stream_ordering"]
