"""The account-data stream: account_data.events and rooms.join.<room>.account_data.events."""

from __future__ import annotations

from typing import Any

import orjson

from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider
from storage.account_data import GLOBAL, AccountDataStore


def type_allowed(data_type: str, event_filter: dict | None) -> bool:
    """The `types`/`not_types` of an EventFilter, with '*' wildcards."""
    if not isinstance(event_filter, dict):
        return True

    def matches(patterns) -> bool:
        return any(
            p == data_type or (p.endswith("*") and data_type.startswith(p[:-1]))
            for p in patterns
            if isinstance(p, str)
        )

    if matches(event_filter.get("not_types") or []):
        return False
    types = event_filter.get("types")
    return types is None or matches(types)


class AccountDataStream(StreamProvider):
    stream = "account_data"

    def __init__(self, store: AccountDataStore, notifier: Notifier):
        self.store = store
        self.notifier = notifier

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        upto = ctx.now["account_data"]
        since = 0 if ctx.since is None else ctx.since.get("account_data", 0)
        if (
            ctx.since is not None
            and not ctx.newly_joined_room_ids
            and not self.notifier.changed_since(ctx.user_id, "account_data", since)
        ):
            return  # every account-data write wakes its user: nothing new
        rows = list(await self.store.changed(ctx.user_id, since, upto))
        newly_joined = [r for r in (ctx.newly_joined_room_ids or ()) if r in ctx.joined_room_ids]
        if ctx.since is not None and newly_joined:
            # A room joined since the last sync gets its whole account data, not just changes.
            seen = {(r["room_id"], r["type"]) for r in rows}
            extra = await self.store.for_rooms(ctx.user_id, newly_joined, upto)
            rows.extend(r for r in extra if (r["room_id"], r["type"]) not in seen)

        sync_filter = ctx.filter if isinstance(ctx.filter, dict) else {}
        room_value = sync_filter.get("room")
        room_filter: dict = room_value if isinstance(room_value, dict) else {}
        global_events = response.setdefault("account_data", {}).setdefault("events", [])
        for row in rows:
            room_id, data_type = row["room_id"], row["type"]
            event = {"type": data_type, "content": orjson.loads(row["content"])}
            if room_id == GLOBAL:
                if type_allowed(data_type, sync_filter.get("account_data")):
                    global_events.append(event)
            elif room_id in ctx.joined_room_ids:
                if type_allowed(data_type, room_filter.get("account_data")):
                    room = response.setdefault("rooms", {}).setdefault("join", {})
                    room = room.setdefault(room_id, {})
                    room.setdefault("account_data", {}).setdefault("events", []).append(event)
