"""Sync tokens (a position per stream) and pagination tokens (a place in a room's timeline)."""

from __future__ import annotations

from functools import lru_cache

from homeserver.http.errors import invalid_param
from homeserver.http.request import parse_int64
from storage.streams import STREAMS


def encode_sync_token(positions: dict[str, int]) -> str:
    return "s" + "_".join(str(positions.get(s, 0)) for s in STREAMS)


# The longest a token of ours can be: "s" and one int64 per stream, "_" between them.
_MAX_SYNC_TOKEN = 1 + len(STREAMS) * 20 + len(STREAMS) - 1


def decode_sync_token(token: str) -> dict[str, int]:
    if len(token) > _MAX_SYNC_TOKEN:
        raise invalid_param("Malformed sync token")
    return dict(zip(STREAMS, _sync_positions(token), strict=True))


@lru_cache(maxsize=4096)
def _sync_positions(token: str) -> tuple[int, ...]:
    """Remembered: after a message to a big room, every member's next poll names the same
    token, and a parked poll reads its token again each time it looks (handler.py)."""
    if not token.startswith("s"):
        raise invalid_param("Unknown sync token")
    parts = token[1:].split("_")
    if len(parts) > len(STREAMS):
        raise invalid_param("Malformed sync token")
    values = [_position(p, "sync") for p in parts]
    # Tokens from an older server version with fewer streams read as 0 for the new ones.
    values += [0] * (len(STREAMS) - len(values))
    return tuple(values)


def encode_pagination_token(ordering: int) -> str:
    """A place between events: events at or below `ordering` lie before it."""
    return f"t{ordering}"


def decode_pagination_token(token: str) -> int:
    """Accepts our pagination tokens and sync tokens (clients pass next_batch as `from`)."""
    if token.startswith("t"):
        # Backfilled history takes negative orderings (it lies before the room's first
        # local event), so a place in a timeline may be below zero.
        return _position(token[1:], "pagination", signed=True)
    return decode_sync_token(token)["events"]


def _position(text: str, kind: str, *, signed: bool = False) -> int:
    """A stream position: an int64 (the bigint columns it is compared with), non-negative
    for stream positions."""
    value = parse_int64(text)
    if value is None or (value < 0 and not signed):
        raise invalid_param(f"Malformed {kind} token")
    return value
