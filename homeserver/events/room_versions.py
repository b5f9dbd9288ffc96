"""The one registry of room versions.

Every algorithm that differs between room versions (event IDs, redaction, auth rules,
state resolution, canonical JSON strictness) reads a flag from :class:`RoomVersion`
instead of comparing version strings, so adding a version is adding one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# event_id_format values
EVENT_ID_FORMAT_V1 = 1  # "$random:server", carried in the event itself (v1, v2)
EVENT_ID_FORMAT_V2 = 2  # "$" + standard unpadded base64 of the reference hash (v3)
EVENT_ID_FORMAT_V3 = 3  # "$" + url-safe unpadded base64 of the reference hash (v4+)

# state_res values
STATE_RES_V1 = 1
STATE_RES_V2 = 2
STATE_RES_V2_1 = 3  # v12: v2 starting from an empty map, plus the conflicted state subgraph


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    event_id_format: int
    state_res: int
    # v5+: signing keys must be valid at the event's origin_server_ts.
    enforce_key_validity: bool
    # v6+: integers out of the canonical JSON range and floats make an event invalid.
    strict_canonical_json: bool
    # v6+: `notifications` in m.room.power_levels is protected like `events`.
    limit_notifications_power_levels: bool
    # v1-v5: m.room.aliases has its own auth rule and keeps `aliases` on redaction.
    special_case_aliases_auth: bool
    knock_join_rule: bool  # v7+
    restricted_join_rule: bool  # v8+
    # v9+: `join_authorised_via_users_server` survives redaction.
    restricted_join_rule_fix: bool
    knock_restricted_join_rule: bool  # v10+
    # v10+: power level values must be JSON integers (no "50" strings).
    integer_power_levels: bool
    # v11+: MSC2176/MSC3821 redaction rules; create events have no `creator`, the
    # sender is the creator; `redacts` lives in content.
    v11_redactions_and_creator: bool
    # v12: room id = "!" + create event's reference hash; the create event has no
    # room_id and is never selected into auth_events.
    room_id_is_create_event_hash: bool
    # v12: the create event's sender and `additional_creators` have infinite power.
    creators_have_infinite_power: bool
    stable: bool = True

    @property
    def event_ids_carry_domain(self) -> bool:
        """v1/v2: event ids are "$opaque:domain" and appear in the event itself."""
        return self.event_id_format == EVENT_ID_FORMAT_V1

    @property
    def redaction_checked_by_auth_rules(self) -> bool:
        """v1/v2 authorise redactions in the auth rules (rule 11, comparing the domains
        of event ids); v3+ defer to "handling redactions" because event ids have no
        domain any more."""
        return self.event_id_format == EVENT_ID_FORMAT_V1


_V1 = RoomVersion(
    identifier="1",
    event_id_format=EVENT_ID_FORMAT_V1,
    state_res=STATE_RES_V1,
    enforce_key_validity=False,
    strict_canonical_json=False,
    limit_notifications_power_levels=False,
    special_case_aliases_auth=True,
    knock_join_rule=False,
    restricted_join_rule=False,
    restricted_join_rule_fix=False,
    knock_restricted_join_rule=False,
    integer_power_levels=False,
    v11_redactions_and_creator=False,
    room_id_is_create_event_hash=False,
    creators_have_infinite_power=False,
)
# Each version is the previous one plus what its spec page says it changes.
_V2 = replace(_V1, identifier="2", state_res=STATE_RES_V2)
_V3 = replace(_V2, identifier="3", event_id_format=EVENT_ID_FORMAT_V2)
_V4 = replace(_V3, identifier="4", event_id_format=EVENT_ID_FORMAT_V3)
_V5 = replace(_V4, identifier="5", enforce_key_validity=True)
_V6 = replace(
    _V5,
    identifier="6",
    strict_canonical_json=True,
    limit_notifications_power_levels=True,
    special_case_aliases_auth=False,
)
_V7 = replace(_V6, identifier="7", knock_join_rule=True)
_V8 = replace(_V7, identifier="8", restricted_join_rule=True)
_V9 = replace(_V8, identifier="9", restricted_join_rule_fix=True)
_V10 = replace(_V9, identifier="10", knock_restricted_join_rule=True, integer_power_levels=True)
_V11 = replace(_V10, identifier="11", v11_redactions_and_creator=True)
_V12 = replace(
    _V11,
    identifier="12",
    state_res=STATE_RES_V2_1,
    room_id_is_create_event_hash=True,
    creators_have_infinite_power=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12)
}

DEFAULT_ROOM_VERSION = "12"
