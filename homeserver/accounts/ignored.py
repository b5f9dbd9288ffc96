"""Ignoring users (spec: "Ignoring Users"): the `m.ignored_user_list` account data hides the
listed users' events from every endpoint that serves a timeline, except state events
(which keep a room looking the same to everyone), and their invites."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol, TypeVar

import orjson

from homeserver.http.errors import bad_json
from storage.account_data import GLOBAL, AccountDataStore

IGNORED_USER_LIST = "m.ignored_user_list"


class _Event(Protocol):
    @property
    def sender(self) -> str: ...

    @property
    def state_key(self) -> str | None: ...


_E = TypeVar("_E", bound=_Event)


async def ignored_users(store: AccountDataStore, user_id: str, conn=None) -> frozenset[str]:
    """The users `user_id` ignores (empty when the list is absent or malformed)."""
    raw = await store.get(user_id, GLOBAL, IGNORED_USER_LIST, conn)
    if raw is None:
        return frozenset()
    try:
        content = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return frozenset()
    users = content.get("ignored_users") if isinstance(content, dict) else None
    if not isinstance(users, dict):
        return frozenset()
    return frozenset(u for u in users if isinstance(u, str) and u != user_id)


def check_ignored_list(content: dict) -> None:
    """The event's schema: `ignored_users` is an object keyed by user ID (M_BAD_JSON)."""
    users = content.get("ignored_users")
    if not isinstance(users, dict):
        raise bad_json("'ignored_users' must be an object")
    if not all(u.startswith("@") and ":" in u for u in users):
        raise bad_json("'ignored_users' must be keyed by user IDs")


def hidden(sender: str, state_key: object, ignored: Collection[str]) -> bool:
    """Whether an event is hidden from a user ignoring `ignored`: state events never are."""
    return state_key is None and sender in ignored


def drop_ignored(events: Iterable[_E], ignored: Collection[str]) -> list[_E]:
    """The events not hidden from a user ignoring `ignored`."""
    if not ignored:
        return list(events)
    return [e for e in events if not hidden(e.sender, e.state_key, ignored)]
