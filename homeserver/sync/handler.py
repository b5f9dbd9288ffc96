"""/sync: build the response from stream positions, or wait until there is something to say."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from homeserver.http.auth import Requester
from homeserver.http.errors import MatrixError, not_found
from homeserver.http.request import contains_nul
from homeserver.jsonutil import loads
from homeserver.presence.service import Presence
from homeserver.rooms.filtering import SyncFilter
from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams import StreamProvider
from homeserver.tokens import decode_sync_token, encode_sync_token
from storage.filters import FilterStore


async def load_filter(filters: FilterStore, user_id: str, value: str | None) -> dict[str, Any]:
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
    row = await filters.get(user_id, int(value))
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


class SyncHandler:
    def __init__(
        self,
        filters: FilterStore,
        presence: Presence,
        notifier: Notifier,
        providers: Sequence[StreamProvider],
        max_timeout_ms: int,
    ):
        self.filters = filters
        self.presence = presence
        self.notifier = notifier
        self.providers = providers
        self.max_timeout_ms = max_timeout_ms

    async def _build(
        self,
        requester: Requester,
        since: dict[str, int] | None,
        full_state: bool,
        filter_spec: dict[str, Any],
    ) -> tuple[SyncContext, dict[str, Any]]:
        ctx = SyncContext(
            user_id=requester.user_id,
            device_id=requester.device_id,
            since=since,
            now=self.notifier.current_token(),
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
        for provider in self.providers:
            await provider.fill(ctx, response)
        if since is not None and not full_state:
            _drop_unchanged_rooms(ctx, response)
        response["next_batch"] = encode_sync_token(ctx.now)
        return ctx, response

    async def sync(
        self,
        requester: Requester,
        since_token: str | None,
        timeout_ms: int,
        full_state: bool,
        filter_value: str | None,
        set_presence: str | None,
    ) -> dict[str, Any]:
        filter_spec = await load_filter(self.filters, requester.user_id, filter_value)
        since = decode_sync_token(since_token) if since_token else None
        # No set_presence means "online" (spec); the presence service skips redundant writes.
        await self.presence.set_from_sync(requester.user_id, set_presence)
        ctx, response = await self._build(requester, since, full_state, filter_spec)
        deadline = time.monotonic() + min(timeout_ms, self.max_timeout_ms) / 1000
        while since is not None and not full_state and _is_empty(response):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            keys = {requester.user_id, *ctx.joined_room_ids}
            # Wait from what this (empty) answer covered, so a change we could not see
            # (say, in a room's ephemeral stream we filter out) does not spin the loop.
            await self.notifier.wait(keys, ctx.now, remaining)
            if self.notifier.current_token() == ctx.now:
                break
            ctx, response = await self._build(requester, since, full_state, filter_spec)
        return response
