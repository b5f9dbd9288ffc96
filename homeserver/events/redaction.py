"""The redaction algorithm ("pruning") for every room version.

Pruning decides what signatures and reference hashes cover, so it must match the spec
byte for byte: a key kept or dropped by mistake changes event ids and breaks signatures.
"""

from __future__ import annotations

import copy
from typing import Any

from homeserver.events.room_versions import RoomVersion

# Top-level keys every room version keeps.
_KEPT_TOP_LEVEL = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
# Kept up to v10; v11 stopped protecting them (MSC2176).
_KEPT_TOP_LEVEL_PRE_V11 = frozenset({"prev_state", "origin", "membership"})

_POWER_LEVEL_KEYS = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)


def _kept_content_keys(event_type: str, room_version: RoomVersion) -> tuple[str, ...]:
    """Content keys surviving redaction, for every type except v11+ m.room.create."""
    v11 = room_version.v11_redactions_and_creator
    if event_type == "m.room.member":
        if room_version.restricted_join_rule_fix:
            return ("membership", "join_authorised_via_users_server")
        return ("membership",)
    if event_type == "m.room.create":
        return ("creator",)
    if event_type == "m.room.join_rules":
        return ("join_rule", "allow") if room_version.restricted_join_rule else ("join_rule",)
    if event_type == "m.room.power_levels":
        return (*_POWER_LEVEL_KEYS, "invite") if v11 else _POWER_LEVEL_KEYS
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.aliases" and room_version.special_case_aliases_auth:
        return ("aliases",)
    if event_type == "m.room.redaction" and v11:
        return ("redacts",)
    return ()


def _pruned_content(event: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    content = event.get("content")
    if not isinstance(content, dict):
        return {}
    event_type = event.get("type")
    if event_type == "m.room.create" and room_version.v11_redactions_and_creator:
        return copy.deepcopy(content)
    kept = {
        key: copy.deepcopy(content[key])
        for key in _kept_content_keys(str(event_type), room_version)
        if key in content
    }
    # v11 (MSC3821): the signed block of a third-party invite is needed to re-check the
    # invite's auth, so it survives; the rest of third_party_invite does not.
    if event_type == "m.room.member" and room_version.v11_redactions_and_creator:
        third_party_invite = content.get("third_party_invite")
        if isinstance(third_party_invite, dict) and "signed" in third_party_invite:
            kept["third_party_invite"] = {"signed": copy.deepcopy(third_party_invite["signed"])}
    return kept


def prune_event(event: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Return a redacted deep copy of ``event`` per ``room_version``'s redaction rules.

    ``unsigned`` is dropped entirely, as the spec says; callers that serve the event to
    clients add back ``unsigned`` data such as ``redacted_because`` themselves.
    """
    kept_top_level = _KEPT_TOP_LEVEL
    if not room_version.v11_redactions_and_creator:
        kept_top_level = kept_top_level | _KEPT_TOP_LEVEL_PRE_V11
    pruned = {
        key: copy.deepcopy(value)
        for key, value in event.items()
        if key in kept_top_level and key != "content"
    }
    pruned["content"] = _pruned_content(event, room_version)
    return pruned
