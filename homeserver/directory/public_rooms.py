"""The public room list (list_public_rooms.yaml): summaries, filtering and paging."""

from __future__ import annotations

from homeserver.http.errors import invalid_param
from homeserver.http.request import parse_int64
from storage.directory import DirectoryStore


def summary_entry(room_id: str, joined: int, state: dict[str, dict]) -> dict:
    """A PublicRoomsChunk from the room's SUMMARY_TYPES state (also the base of the
    space hierarchy's room summaries, homeserver/spaces/summary.py)."""

    def get(event_type: str, key: str):
        value = state.get(event_type, {}).get(key)
        return value if isinstance(value, str) else None

    entry = {
        "room_id": room_id,
        "num_joined_members": joined,
        "world_readable": get("m.room.history_visibility", "history_visibility")
        == "world_readable",
        "guest_can_join": get("m.room.guest_access", "guest_access") == "can_join",
        "join_rule": get("m.room.join_rules", "join_rule") or "invite",
    }
    optional = {
        "name": get("m.room.name", "name"),
        "topic": get("m.room.topic", "topic"),
        "canonical_alias": get("m.room.canonical_alias", "alias"),
        "avatar_url": get("m.room.avatar", "url"),
        "room_type": get("m.room.create", "type"),
    }
    entry.update({k: v for k, v in optional.items() if v})
    return entry


def _matches(entry: dict, term: str | None, room_types: list | None) -> bool:
    if room_types is not None and entry.get("room_type") not in room_types:
        return False
    if term:
        term = term.casefold()
        fields = (entry.get("name"), entry.get("topic"), entry.get("canonical_alias"))
        if not any(f and term in f.casefold() for f in fields):
            return False
    return True


def _offset(since: str | None) -> int:
    if since is None:
        return 0
    offset = parse_int64(since[1:]) if since.startswith("o") else None
    if offset is None or offset < 0:
        raise invalid_param("Unknown 'since' token")
    return offset


async def public_rooms(
    store: DirectoryStore,
    *,
    limit: int | None,
    since: str | None,
    term: str | None = None,
    room_types: list | None = None,
    network: tuple[str, str] | None = None,
    all_networks: bool = False,
) -> dict:
    """`network`: an appservice's list (appservice id, network id) instead of the
    server's; `all_networks`: the server's and every appservice's."""
    start = _offset(since)
    rooms = await store.public_rooms(network, all_networks=all_networks)
    state = await store.summary_state([room_id for room_id, _ in rooms])
    entries = [summary_entry(room_id, joined, state[room_id]) for room_id, joined in rooms]
    entries = [e for e in entries if _matches(e, term, room_types)]
    end = len(entries) if limit is None else start + limit
    response = {"chunk": entries[start:end], "total_room_count_estimate": len(entries)}
    if end < len(entries):
        response["next_batch"] = f"o{end}"
    if start > 0:
        response["prev_batch"] = f"o{max(0, start - (limit or start))}"
    return response
