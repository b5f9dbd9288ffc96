"""RoomPolicy: runs homeserver/policy/rules.py on an event against a room state given as
event ids, loading only the state entries the policies read. Called beside check_auth by
every path that authorises an event: local events (EventService), membership handshakes
(make_join, send_join/leave/knock) and received PDUs (federation.events.checks), so no
path can skip it.

Who is external: a user of a server named in access_rules.external_servers, or a local
account the admin API marked external (storage/external_users.py).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from federation.policy import ServerPolicy
from homeserver.config import Config
from homeserver.policy.rules import (
    ACCESS_RULES,
    DIRECT,
    JOIN_RULES,
    MEMBER,
    POLICED_TYPES,
    POWER_LEVELS,
    THIRD_PARTY_INVITE,
    check_event,
    rule_of,
)
from storage.events import EventStore
from storage.external_users import ExternalUserStore

Event = dict[str, Any]
StateKey = tuple[str, str]


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


class RoomPolicy:
    def __init__(self, config: Config, events: EventStore, external: ExternalUserStore):
        self.server_name = config.server_name
        self.access_rules = config.access_rules.enabled
        self.default_validity_s = config.external_users.default_validity_s
        self._external_servers = ServerPolicy(config.access_rules.external_servers)
        self.events = events
        self.store = external

    # ---- who is external ------------------------------------------------------------------

    def server_is_external(self, server_name: str) -> bool:
        return server_name != self.server_name and self._external_servers.is_allowed(server_name)

    async def external_users(self, user_ids: Iterable[str]) -> set[str]:
        """Those of `user_ids` who are external."""
        users = set(user_ids)
        external = {u for u in users if self.server_is_external(_server_of(u))}
        # Keys of a power-levels event are any strings: one holding U+0000 names no account
        # (and PostgreSQL refuses it as a parameter).
        local = [u for u in users if _server_of(u) == self.server_name and "\x00" not in u]
        return external | await self.store.which(local)

    async def is_external(self, user_id: str) -> bool:
        return bool(await self.external_users([user_id]))

    async def expired(self, user_id: str) -> bool:
        """A local external account past its expiry."""
        row = await self.store.get(user_id)
        return (
            row is not None
            and row["expires_at_ms"] is not None
            and row["expires_at_ms"] <= int(time.time() * 1000)
        )

    # ---- the check ------------------------------------------------------------------------

    async def check(self, event: Event, state: Mapping[StateKey, str]) -> None:
        """Raise PolicyError unless the policies allow `event` on `state` (ids)."""
        etype = event.get("type")
        if etype not in POLICED_TYPES:
            return
        users = {str(event.get("sender"))}
        loaded: dict[StateKey, Event] = {}
        if self.access_rules and "state_key" in event:
            state_key = str(event.get("state_key"))
            keys = [(ACCESS_RULES, ""), (JOIN_RULES, "")]
            if etype == MEMBER:
                keys.append((MEMBER, state_key))
            loaded = await self._load(state, keys)
            if etype == ACCESS_RULES:
                # Becoming unrestricted is judged against the power levels already set.
                loaded.update(await self._load(state, [(POWER_LEVELS, "")]))
            if etype == ACCESS_RULES or (
                etype in (MEMBER, THIRD_PARTY_INVITE) and rule_of(loaded) == DIRECT
            ):
                everyone = [k for k in state if k[0] in (MEMBER, THIRD_PARTY_INVITE)]
                loaded.update(await self._load(state, everyone))
        await self._judge(event, loaded, users)

    async def check_invite(self, event: Event, stripped: Iterable[Event]) -> None:
        """An invite of one of our users into a room we are not in: judged on the stripped
        state the inviting server sent (it carries the access rule when that server runs
        them; without it the room counts as restricted)."""
        state = {
            (str(e.get("type")), str(e.get("state_key"))): e
            for e in stripped
            if isinstance(e.get("state_key"), str)
        }
        await self._judge(event, state, set())

    async def _judge(self, event: Event, state: Mapping[StateKey, Event], users: set[str]) -> None:
        users.add(str(event.get("sender")))
        if event.get("type") == MEMBER:
            users.add(str(event.get("state_key")))
        levels_event = event if event.get("type") == POWER_LEVELS else None
        if event.get("type") == ACCESS_RULES:
            levels_event = state.get((POWER_LEVELS, ""))
        if levels_event is not None:
            levels = (levels_event.get("content") or {}).get("users")
            if isinstance(levels, dict):
                users.update(str(u) for u in levels)
        external = await self.external_users(users)
        check_event(event, state, access_rules=self.access_rules, is_external=external.__contains__)

    async def _load(
        self, state: Mapping[StateKey, str], keys: Collection[StateKey]
    ) -> dict[StateKey, Event]:
        ids = {k: state[k] for k in keys if k in state}
        found = await self.events.get_events(ids.values())
        return {k: found[i].event for k, i in ids.items() if i in found}
