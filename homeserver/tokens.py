"""Sync tokens (a position per stream) and pagination tokens (a place in a room's timeline)."""

from __future__ import annotations

from homeserver.http.errors import invalid_param
from storage.streams import STREAMS


def encode_sync_token(positions: dict[str, int]) -> str:
    return "s" + "_".join(str(positions.get(s, 0)) for s in STREAMS)


def decode_sync_token(token: str) -> dict[str, int]:
    if not token.startswith("s"):
        raise invalid_param("Unknown sync token")
    parts = token[1:].split("_")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise invalid_param("Malformed sync token") from None
    if len(values) > len(STREAMS) or any(v < 0 for v in values):
        raise invalid_param("Malformed sync token")
    # Tokens from an older server version with fewer streams read as 0 for the new ones.
    values += [0] * (len(STREAMS) - len(values))
    return dict(zip(STREAMS, values, strict=True))


def encode_pagination_token(ordering: int) -> str:
    """A place between events: events at or below `ordering` lie before it."""
    return f"t{ordering}"


def decode_pagination_token(token: str) -> int:
    """Accepts our pagination tokens and sync tokens (clients pass next_batch as `from`)."""
    if token.startswith("t"):
        try:
            return int(token[1:])
        except ValueError:
            raise invalid_param("Malformed pagination token") from None
    return decode_sync_token(token)["events"]
