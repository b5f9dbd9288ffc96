"""/sync: build the response from stream positions, or wait until there is something to say."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from homeserver.http.auth import Requester
from homeserver.http.errors import MatrixError, not_found
from homeserver.http.request import contains_nul
from homeserver.jsonutil import loads
from homeserver.rooms.filtering import SyncFilter
from homeserver.sync.context import SyncContext
from homeserver.sync.ephemeral import build_ephemeral
from homeserver.sync.rooms import build_rooms
from homeserver.tokens import decode_sync_token, encode_sync_token

if TYPE_CHECKING:
    from homeserver.app import Homeserver


async def load_filter(hs: Homeserver, user_id: str, value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    if value.lstrip().startswith("{"):
        try:
            spec = loads(value)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "filter is not valid JSON") from None
        if not isinstance(spec, dict):
            raise MatrixError(400, "M_INVALID_PARAM", "filter must be a JSON object")
        if contains_nul(spec):
            raise MatrixError(400, "M_INVALID_PARAM", "filter must not contain U+0000")
        return spec
    if not value.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown filter")
    row = await hs.db.fetchval(
        "SELECT filter_json FROM filters WHERE filter_id = $1 AND user_id = $2", int(value), user_id
    )
    if row is None:
        raise not_found("Unknown filter")
    return loads(row)


def _drop_unchanged_rooms(ctx: SyncContext, response: dict[str, Any]) -> None:
    join = response.get("rooms", {}).get("join", {})
    for room_id in list(join):
        entry = join[room_id]
        if room_id in ctx.newly_joined_room_ids:
            continue
        if any(
            entry.get(k, {}).get("events")
            for k in ("timeline", "state", "ephemeral", "account_data")
        ):
            continue
        del join[room_id]


def _is_empty(response: dict[str, Any]) -> bool:
    rooms = response.get("rooms", {})
    if any(rooms.get(k) for k in ("join", "invite", "leave", "knock")):
        return False
    for key in ("presence", "account_data", "to_device"):
        if response.get(key, {}).get("events"):
            return False
    lists = response.get("device_lists", {})
    return not (lists.get("changed") or lists.get("left"))


async def _build(
    hs: Homeserver,
    requester: Requester,
    since: dict[str, int] | None,
    full_state: bool,
    filter_spec: dict[str, Any],
) -> tuple[SyncContext, dict[str, Any]]:
    ctx = SyncContext(
        user_id=requester.user_id,
        device_id=requester.device_id,
        since=since,
        now=hs.notifier.current_token(),
        full_state=full_state,
        filter=filter_spec,
        sync_filter=SyncFilter(filter_spec),
    )
    response: dict[str, Any] = {
        "account_data": {"events": []},
        "presence": {"events": []},
        "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []},
        "device_one_time_keys_count": {},
    }
    await build_rooms(hs, ctx, response)
    await build_ephemeral(hs, ctx, response)
    for extend in hs.sync_extensions:
        await extend(ctx, response)
    if since is not None and not full_state:
        _drop_unchanged_rooms(ctx, response)
    response["next_batch"] = encode_sync_token(ctx.now)
    return ctx, response


async def sync(
    hs: Homeserver,
    requester: Requester,
    since_token: str | None,
    timeout_ms: int,
    full_state: bool,
    filter_value: str | None,
    set_presence: str | None,
) -> dict[str, Any]:
    filter_spec = await load_filter(hs, requester.user_id, filter_value)
    since = decode_sync_token(since_token) if since_token else None
    presence = getattr(hs, "presence", None)
    if presence is not None:
        # No set_presence means "online" (spec); the presence service skips redundant writes.
        await presence.set_from_sync(requester.user_id, set_presence)
    ctx, response = await _build(hs, requester, since, full_state, filter_spec)
    deadline = time.monotonic() + min(timeout_ms, hs.config.max_sync_timeout_ms) / 1000
    while since is not None and not full_state and _is_empty(response):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        keys = {requester.user_id, *ctx.joined_room_ids}
        # Wait from what this (empty) answer covered, so a change we could not see
        # (say, in a room's ephemeral stream we filter out) does not spin the loop.
        await hs.notifier.wait(keys, ctx.now, remaining)
        if hs.notifier.current_token() == ctx.now:
            break
        ctx, response = await _build(hs, requester, since, full_state, filter_spec)
    return response
