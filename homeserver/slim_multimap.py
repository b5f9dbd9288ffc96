"""A key -> values map for the common case of one value per key.

Ten thousand parked /sync polls each register under their user's ID, and a cache of
access tokens tags each session with its user: almost every key holds one value. A set
per key costs about 200 bytes even with one element; here a lone value is held bare and
a set is made only for the second.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)


class _Many(set):
    """Marks a key's values when there are several (a value may itself be a set-like)."""


_ABSENT = object()


class SlimMultiMap(Generic[K, V]):
    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[K, object] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def add(self, key: K, value: V) -> None:
        held = self._items.get(key, _ABSENT)
        if held is _ABSENT:
            self._items[key] = value
        elif type(held) is _Many:
            held.add(value)
        elif held != value:
            self._items[key] = _Many((held, value))

    def discard(self, key: K, value: V) -> None:
        held = self._items.get(key, _ABSENT)
        if type(held) is _Many:
            held.discard(value)
            if len(held) == 1:
                self._items[key] = next(iter(held))
        elif held is not _ABSENT and held == value:
            del self._items[key]

    def get(self, key: K) -> list[V]:
        """The values of `key` (a copy: the caller may change the map meanwhile)."""
        held = self._items.get(key, _ABSENT)
        if held is _ABSENT:
            return []
        if type(held) is _Many:
            return list(held)
        return [held]  # type: ignore[list-item]

    def pop(self, key: K) -> list[V]:
        values = self.get(key)
        self._items.pop(key, None)
        return values

    def clear(self) -> None:
        self._items.clear()
