"""Authorisation rules for events, for room versions 1 to 12.

:func:`check_auth` implements the numbered rules of each room version's spec page;
comments cite them as "rule N" using the v1 numbering where the versions differ only
by renumbering. Version differences are read from :class:`RoomVersion` flags.

The state an event is checked against is a mapping ``(type, state_key) -> event``;
only the entries the auth events selection algorithm names are consulted, so callers
may pass either the event's auth events or a full room state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.events.hashing import compute_event_id, room_id_from_create_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

Event = dict[str, Any]
StateKey = tuple[str, str]
StateMap = Mapping[StateKey, Event]
VerifySignature = Callable[[Event, str], bool]

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
ALIASES = "m.room.aliases"
REDACTION = "m.room.redaction"

JOIN, INVITE, LEAVE, BAN, KNOCK = "join", "invite", "leave", "ban", "knock"

# Levels named in m.room.power_levels and their defaults when the key is missing
# (server-server API, "Definitions").
_NAMED_LEVEL_DEFAULTS = {"invite": 0, "kick": 50, "ban": 50, "redact": 50}
_TOP_LEVEL_PL_KEYS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)
# Canonical JSON (v6+) only allows integers in this range.
_CANONICAL_INT_RANGE = range(-(2**53) + 1, 2**53)
# v1-v9 "stringy" power levels: optional whitespace, sign, then decimal digits.
_STRINGY_INT = re.compile(r"\s*[+-]?[0-9]+\s*")


class AuthError(Exception):
    """The event is not allowed by the authorisation rules. The message says which rule
    failed in words safe to show to the sender; it never contains event content."""


# --------------------------------------------------------------------------- helpers


def _domain(identifier: str) -> str:
    """The server name of a user, room (pre-v12) or event (v1/v2) id."""
    _, sep, domain = identifier.partition(":")
    if not sep or not domain:
        raise AuthError(f"identifier {identifier!r} has no server name")
    return domain


def _is_valid_user_id(value: Any) -> bool:
    # The lenient historical grammar: rooms contain users created before v1.8 tightened
    # localparts, and rejecting their power levels would split rooms.
    if not isinstance(value, str) or not value.startswith("@"):
        return False
    localpart, sep, domain = value[1:].partition(":")
    return bool(localpart and sep and domain) and len(value.encode()) <= 255


def _prev_event_ids(event: Event) -> list[str]:
    # v1/v2 prev_events are [event_id, hashes] pairs; v3+ are bare ids.
    return [
        p[0] if isinstance(p, list | tuple) and p else p for p in event.get("prev_events") or []
    ]


def _event_id(event: Event, room_version: RoomVersion) -> str | None:
    if room_version.event_ids_carry_domain:
        return event.get("event_id")
    return compute_event_id(event, room_version)


def _content(event: Event | None) -> dict[str, Any]:
    content = event.get("content") if event else None
    return content if isinstance(content, dict) else {}


def _membership(state: StateMap, user_id: str) -> str | None:
    return _content(state.get((MEMBER, user_id))).get("membership")


def _get_create_event(state: StateMap, create_event: Event | None) -> Event | None:
    return create_event if create_event is not None else state.get((CREATE, ""))


def room_creators(room_version: RoomVersion, create_event: Event | None) -> set[str]:
    """The room's creators: the `creator` content key before v11, the sender from v11,
    plus `additional_creators` in v12."""
    if create_event is None:
        return set()
    if not room_version.v11_redactions_and_creator:
        creator = _content(create_event).get("creator")
        return {creator} if isinstance(creator, str) else set()
    creators = {str(create_event.get("sender"))}
    if room_version.creators_have_infinite_power:
        extra = _content(create_event).get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
    return creators


def parse_power_level(room_version: RoomVersion, value: Any) -> int | None:
    """The integer meaning of a power level value, or None if the version forbids it.

    v10+ accept only JSON integers. Earlier versions also accept integer strings
    ("stringy" power levels), and v1-v5 accept floats, truncated towards zero.
    """
    if isinstance(value, bool):  # JSON true is not 1
        return None
    if isinstance(value, int):
        if room_version.strict_canonical_json and value not in _CANONICAL_INT_RANGE:
            return None
        return value
    if room_version.integer_power_levels:
        return None
    if isinstance(value, str) and _STRINGY_INT.fullmatch(value):
        return int(value)
    if isinstance(value, float) and not room_version.strict_canonical_json:
        return int(value) if math.isfinite(value) else None
    return None


def _level(room_version: RoomVersion, content: Mapping[str, Any], key: str, default: int) -> int:
    parsed = parse_power_level(room_version, content.get(key, default))
    return default if parsed is None else parsed


def get_named_level(
    room_version: RoomVersion, name: str, power_levels_content: Mapping[str, Any] | None
) -> int:
    """The invite, kick, ban or redact level (defaults 0, 50, 50, 50)."""
    default = _NAMED_LEVEL_DEFAULTS[name]
    return _level(room_version, power_levels_content or {}, name, default)


def get_required_level(
    room_version: RoomVersion,
    event_type: str,
    is_state: bool,
    power_levels_content: Mapping[str, Any] | None,
) -> int:
    """The power level needed to send an event of ``event_type``.

    ``power_levels_content`` is None when the room has no m.room.power_levels event:
    then state events need 50 and others 0, the defaults of a power levels event without
    those keys (the spec's text saying state_default is 0 there was removed in v1.7; it
    is what Synapse does, and what SyTest 41power-levels checks).
    """
    if power_levels_content is None:
        power_levels_content = {}
    events = power_levels_content.get("events")
    if isinstance(events, dict) and event_type in events:
        parsed = parse_power_level(room_version, events[event_type])
        if parsed is not None:
            return parsed
    if is_state:
        return _level(room_version, power_levels_content, "state_default", 50)
    return _level(room_version, power_levels_content, "events_default", 0)


def get_power_level(
    room_version: RoomVersion,
    user_id: str,
    auth_state: StateMap,
    create_event: Event | None = None,
) -> int | float:
    """The user's power level in ``auth_state``; ``float('inf')`` for v12 creators."""
    create = _get_create_event(auth_state, create_event)
    if room_version.creators_have_infinite_power and user_id in room_creators(room_version, create):
        return math.inf
    power_levels = auth_state.get((POWER_LEVELS, ""))
    if power_levels is None:
        # Without a power levels event the creator has 100 and everyone else 0.
        return 100 if user_id in room_creators(room_version, create) else 0
    content = _content(power_levels)
    users = content.get("users")
    if isinstance(users, dict) and user_id in users:
        parsed = parse_power_level(room_version, users[user_id])
        if parsed is not None:
            return parsed
    return _level(room_version, content, "users_default", 0)


def auth_types_for_event(room_version: RoomVersion, event: Event) -> list[StateKey]:
    """The (type, state_key) pairs an event's auth_events are selected from."""
    if event.get("type") == CREATE:
        return []
    types: list[StateKey] = []
    if not room_version.room_id_is_create_event_hash:
        types.append((CREATE, ""))
    types.append((POWER_LEVELS, ""))
    sender = event.get("sender")
    if isinstance(sender, str):
        types.append((MEMBER, sender))
    if event.get("type") == MEMBER:
        content = _content(event)
        membership = content.get("membership")
        target = event.get("state_key")
        if isinstance(target, str):
            types.append((MEMBER, target))
        if membership in (JOIN, INVITE, KNOCK):
            types.append((JOIN_RULES, ""))
        third_party_invite = content.get("third_party_invite")
        if membership == INVITE and isinstance(third_party_invite, dict):
            signed = third_party_invite.get("signed")
            token = signed.get("token") if isinstance(signed, dict) else None
            if isinstance(token, str):
                types.append((THIRD_PARTY_INVITE, token))
        authoriser = content.get("join_authorised_via_users_server")
        if membership == JOIN and room_version.restricted_join_rule and isinstance(authoriser, str):
            types.append((MEMBER, authoriser))
    return list(dict.fromkeys(types))  # de-duplicate, keeping order


def check_auth_events_list(
    room_version: RoomVersion, event: Event, auth_events: list[Event]
) -> None:
    """Rules about the auth_events list itself (rule 2, v12 rule 3), for events received
    over federation: no duplicates, only selectable entries, create event present
    (absent in v12), and every entry in the same room. Rejected auth events are the
    caller's to exclude."""
    allowed = set(auth_types_for_event(room_version, event))
    seen: set[StateKey] = set()
    for auth_event in auth_events:
        key = (str(auth_event.get("type")), str(auth_event.get("state_key")))
        if key in seen:
            raise AuthError(f"duplicate auth event for {key}")
        seen.add(key)
        if key not in allowed:
            raise AuthError(f"auth event {key} is not one the event may cite")
        if key != (CREATE, "") or not room_version.room_id_is_create_event_hash:
            if auth_event.get("room_id") != event.get("room_id"):
                raise AuthError("auth event belongs to another room")
    if not room_version.room_id_is_create_event_hash and (CREATE, "") not in seen:
        raise AuthError("no m.room.create event among auth events")


# ------------------------------------------------------------------------- the rules


def check_auth(
    room_version: RoomVersion,
    event: Event,
    auth_state: StateMap,
    create_event: Event | None = None,
    *,
    verify_signature: VerifySignature | None = None,
) -> None:
    """Raise :class:`AuthError` unless ``event`` passes ``room_version``'s auth rules
    against ``auth_state``.

    ``create_event`` is the room's m.room.create event; required for v12, where it is
    never part of the state passed in, and optional otherwise.
    ``verify_signature(event, server_name)`` checks the signature required by
    ``join_authorised_via_users_server`` (v8+); without it that check is skipped, so
    callers handling federated events must pass it.
    """
    sender = event.get("sender")
    if not isinstance(sender, str) or not _is_valid_user_id(sender):
        raise AuthError("event has no valid sender")
    if event.get("type") == CREATE:
        _check_create(room_version, event)
        return

    create = _get_create_event(auth_state, create_event)
    if create is None:
        raise AuthError("no m.room.create event in the room state")
    if room_version.room_id_is_create_event_hash:
        if event.get("room_id") != room_id_from_create_event(create, room_version):
            raise AuthError("room_id is not derived from the room's create event")
    # Consult only what the auth events selection allows, whatever the caller passed.
    state: dict[StateKey, Event] = {
        key: auth_state[key]
        for key in auth_types_for_event(room_version, event)
        if key in auth_state
    }
    state[(CREATE, "")] = create
    for key, auth_event in state.items():
        if key == (CREATE, "") and room_version.room_id_is_create_event_hash:
            continue  # checked through the room id above
        if auth_event.get("room_id") != event.get("room_id"):
            raise AuthError(f"state event {key} belongs to another room")

    # Rule 3: m.federate
    if _content(create).get("m.federate", True) is False and _domain(sender) != _domain(
        create.get("sender", "")
    ):
        raise AuthError("room does not allow users from other servers")

    event_type = event.get("type")
    if event_type == ALIASES and room_version.special_case_aliases_auth:
        _check_aliases(event)
        return
    if event_type == MEMBER:
        _check_membership(room_version, event, state, verify_signature)
        return

    # Rule 6: everything else needs the sender to be in the room.
    if _membership(state, sender) != JOIN:
        raise AuthError(f"{sender} is not in the room")
    sender_level = get_power_level(room_version, sender, state)
    pl_event = state.get((POWER_LEVELS, ""))
    pl_content = _content(pl_event) if pl_event is not None else None

    if event_type == THIRD_PARTY_INVITE:
        if sender_level < get_named_level(room_version, "invite", pl_content):
            raise AuthError(f"{sender} may not invite users")
        return

    required = get_required_level(room_version, str(event_type), "state_key" in event, pl_content)
    if required > sender_level:
        raise AuthError(f"{sender} needs power level {required} to send {event_type}")

    state_key = event.get("state_key")
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        raise AuthError("a state key that is a user id must be the sender's")

    if event_type == POWER_LEVELS:
        _check_power_levels(room_version, event, state, sender_level)
    elif event_type == REDACTION and room_version.redaction_checked_by_auth_rules:
        _check_redaction_v1(room_version, event, sender_level, pl_content)


def _check_create(room_version: RoomVersion, event: Event) -> None:
    """Rule 1."""
    if event.get("prev_events"):
        raise AuthError("m.room.create must not have prev_events")
    if room_version.room_id_is_create_event_hash:
        if "room_id" in event:
            raise AuthError("m.room.create must not have a room_id in this room version")
    else:
        room_id = event.get("room_id")
        if not isinstance(room_id, str) or _domain(room_id) != _domain(event["sender"]):
            raise AuthError("room_id domain does not match the creator's")
    content = _content(event)
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError("unknown room version")
    if not room_version.v11_redactions_and_creator and "creator" not in content:
        raise AuthError("m.room.create has no creator")
    if room_version.creators_have_infinite_power and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(_is_valid_user_id(u) for u in extra):
            raise AuthError("additional_creators must be a list of user ids")


def _check_aliases(event: Event) -> None:
    """v1-v5 rule 4: a server may only set the aliases under its own name."""
    state_key = event.get("state_key")
    if state_key is None:
        raise AuthError("m.room.aliases needs a state_key")
    if state_key != _domain(event["sender"]):
        raise AuthError("m.room.aliases state_key must be the sender's server")


def _check_membership(
    room_version: RoomVersion,
    event: Event,
    state: StateMap,
    verify_signature: VerifySignature | None,
) -> None:
    """Rule 5 (rule 4 from v6 on)."""
    content = _content(event)
    target = event.get("state_key")
    membership = content.get("membership")
    if not isinstance(target, str) or not isinstance(membership, str):
        raise AuthError("m.room.member needs a state_key and a membership")

    authoriser = content.get("join_authorised_via_users_server")
    if room_version.restricted_join_rule and "join_authorised_via_users_server" in content:
        if verify_signature is not None and not (
            isinstance(authoriser, str)
            and _is_valid_user_id(authoriser)
            and verify_signature(event, _domain(authoriser))
        ):
            raise AuthError("event is not signed by the authorising user's server")

    sender = event["sender"]
    handlers = {
        JOIN: _check_join,
        INVITE: _check_invite,
        LEAVE: _check_leave,
        BAN: _check_ban,
    }
    if room_version.knock_join_rule:
        handlers[KNOCK] = _check_knock
    handler = handlers.get(membership)
    if handler is None:
        raise AuthError(f"unknown membership {membership!r}")
    handler(room_version, event, state, sender, target)


def _join_rule(state: StateMap) -> str:
    return _content(state.get((JOIN_RULES, ""))).get("join_rule", INVITE)


def _check_join(
    room_version: RoomVersion, event: Event, state: StateMap, sender: str, target: str
) -> None:
    create = state[(CREATE, "")]
    prev = _prev_event_ids(event)
    if (
        len(prev) == 1
        and prev[0] == _event_id(create, room_version)
        and target in _single_creator(room_version, create)
    ):
        return  # the creator's own join right after the create event
    if sender != target:
        raise AuthError("users may only join themselves")
    current = _membership(state, sender)
    if current == BAN:
        raise AuthError(f"{sender} is banned")
    join_rule = _join_rule(state)
    if join_rule == INVITE or (join_rule == KNOCK and room_version.knock_join_rule):
        if current in (INVITE, JOIN):
            return
        raise AuthError(f"{sender} needs an invite to join")
    if (join_rule == "restricted" and room_version.restricted_join_rule) or (
        join_rule == "knock_restricted" and room_version.knock_restricted_join_rule
    ):
        if current in (INVITE, JOIN):
            return
        authoriser = _content(event).get("join_authorised_via_users_server")
        if (
            not isinstance(authoriser, str)
            or _membership(state, authoriser) != JOIN
            or get_power_level(room_version, authoriser, state)
            < get_named_level(room_version, "invite", _pl_content(state))
        ):
            raise AuthError("restricted join is not authorised by a member who may invite")
        return
    if join_rule == "public":
        return
    raise AuthError(f"join rule {join_rule!r} does not let {sender} join")


def _single_creator(room_version: RoomVersion, create: Event) -> set[str]:
    # The creator-join shortcut names "the sender of the m.room.create" (or `creator`
    # before v11), not v12's additional creators, who must join like anyone else.
    if room_version.v11_redactions_and_creator:
        return {str(create.get("sender"))}
    return room_creators(room_version, create)


def _pl_content(state: StateMap) -> dict[str, Any] | None:
    pl_event = state.get((POWER_LEVELS, ""))
    return _content(pl_event) if pl_event is not None else None


def _check_invite(
    room_version: RoomVersion, event: Event, state: StateMap, sender: str, target: str
) -> None:
    content = _content(event)
    if "third_party_invite" in content:
        _check_third_party_invite(event, state, sender, target)
        return
    if _membership(state, sender) != JOIN:
        raise AuthError(f"{sender} is not in the room")
    if _membership(state, target) in (JOIN, BAN):
        raise AuthError(f"{target} is already joined or banned")
    if get_power_level(room_version, sender, state) < get_named_level(
        room_version, "invite", _pl_content(state)
    ):
        raise AuthError(f"{sender} may not invite users")


def _check_third_party_invite(event: Event, state: StateMap, sender: str, target: str) -> None:
    if _membership(state, target) == BAN:
        raise AuthError(f"{target} is banned")
    third_party_invite = _content(event)["third_party_invite"]
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("third_party_invite has no signed block")
    if "mxid" not in signed or "token" not in signed:
        raise AuthError("third_party_invite.signed needs mxid and token")
    if signed["mxid"] != target:
        raise AuthError("third_party_invite mxid does not match the invited user")
    token = signed["token"]
    invite_event = state.get((THIRD_PARTY_INVITE, token)) if isinstance(token, str) else None
    if invite_event is None:
        raise AuthError("no m.room.third_party_invite for this token")
    if invite_event.get("sender") != sender:
        raise AuthError("only the user who made the third-party invite may complete it")
    if not _third_party_signature_valid(signed, _content(invite_event)):
        raise AuthError("third_party_invite signature does not match the invite's keys")


def _third_party_signature_valid(signed: dict[str, Any], invite_content: dict[str, Any]) -> bool:
    """Any signature in ``signed`` made by any public key of the invite event."""
    return third_party_signing_key(signed, invite_content) is not None


def third_party_signing_key(signed: dict[str, Any], invite_content: dict[str, Any]) -> str | None:
    """The public key of the m.room.third_party_invite content that made a signature of
    ``signed`` (the first one found), or None."""
    public_keys: list[Any] = []
    if "public_key" in invite_content:
        public_keys.append(invite_content["public_key"])
    for entry in invite_content.get("public_keys") or []:
        if isinstance(entry, dict):
            public_keys.append(entry.get("public_key"))
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return None
    for server, sigs in signatures.items():
        if not isinstance(sigs, dict):
            continue
        for key_id in sigs:
            if not key_id.startswith("ed25519:"):
                continue
            for public_key in public_keys:
                try:
                    verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key))
                    verify_signed_json(signed, server, verify_key)
                except (SignatureVerifyException, ValueError, TypeError, AttributeError):
                    continue
                return public_key
    return None


def _check_leave(
    room_version: RoomVersion, event: Event, state: StateMap, sender: str, target: str
) -> None:
    target_membership = _membership(state, target)
    if sender == target:
        may_leave = {INVITE, JOIN, KNOCK} if room_version.knock_join_rule else {INVITE, JOIN}
        if target_membership not in may_leave:
            raise AuthError(f"{sender} has nothing to leave")
        return
    if _membership(state, sender) != JOIN:
        raise AuthError(f"{sender} is not in the room")
    pl_content = _pl_content(state)
    sender_level = get_power_level(room_version, sender, state)
    if target_membership == BAN and sender_level < get_named_level(room_version, "ban", pl_content):
        raise AuthError(f"{sender} may not unban users")
    if sender_level < get_named_level(room_version, "kick", pl_content):
        raise AuthError(f"{sender} may not kick users")
    if get_power_level(room_version, target, state) >= sender_level:
        raise AuthError(f"{sender} may not kick a user with equal or higher power")


def _check_ban(
    room_version: RoomVersion, event: Event, state: StateMap, sender: str, target: str
) -> None:
    if _membership(state, sender) != JOIN:
        raise AuthError(f"{sender} is not in the room")
    sender_level = get_power_level(room_version, sender, state)
    if sender_level < get_named_level(room_version, "ban", _pl_content(state)):
        raise AuthError(f"{sender} may not ban users")
    if get_power_level(room_version, target, state) >= sender_level:
        raise AuthError(f"{sender} may not ban a user with equal or higher power")


def _check_knock(
    room_version: RoomVersion, event: Event, state: StateMap, sender: str, target: str
) -> None:
    join_rule = _join_rule(state)
    if not (
        join_rule == KNOCK
        or (join_rule == "knock_restricted" and room_version.knock_restricted_join_rule)
    ):
        raise AuthError("the room does not allow knocking")
    if sender != target:
        raise AuthError("users may only knock for themselves")
    if _membership(state, sender) in (BAN, INVITE, JOIN):
        raise AuthError(f"{sender} is banned, invited or joined already")


def _check_power_levels(
    room_version: RoomVersion, event: Event, state: StateMap, sender_level: int | float
) -> None:
    """Rule 10 (rule 9 from v6 on)."""
    new = _content(event)
    new_levels = _parse_power_levels(room_version, new)
    if room_version.creators_have_infinite_power:
        creators = room_creators(room_version, state.get((CREATE, "")))
        if creators & set(new_levels["users"]):
            raise AuthError("room creators cannot be given a power level")

    old_event = state.get((POWER_LEVELS, ""))
    if old_event is None:
        return
    # The old event passed auth, so it parses; be defensive for events we did not check.
    try:
        old_levels = _parse_power_levels(room_version, _content(old_event))
    except AuthError:
        old_levels = {"top": {}, "events": {}, "notifications": {}, "users": {}}
    sender = event["sender"]

    def check(section: str, exempt: str | None = None, equal_blocks: bool = False) -> None:
        old_section, new_section = old_levels[section], new_levels[section]
        for key in old_section.keys() | new_section.keys():
            old_value, new_value = old_section.get(key), new_section.get(key)
            if old_value == new_value:
                continue
            # Changing or removing someone else's level needs strictly more power
            # than they have; for the other properties, at least as much.
            if old_value is not None and key != exempt:
                if old_value > sender_level or (equal_blocks and old_value == sender_level):
                    raise AuthError(f"{sender} may not change {section} {key!r}")
            if new_value is not None and new_value > sender_level:
                raise AuthError(f"{sender} may not set {section} {key!r} above their own level")

    check("top")
    check("events")
    check("notifications")  # empty before v6, see _parse_power_levels
    check("users", exempt=sender, equal_blocks=True)


def _parse_power_levels(room_version: RoomVersion, content: dict[str, Any]) -> dict[str, dict]:
    """Parse the levels of a power levels event into ints, rejecting what the version
    forbids. v1-v9 only validate `users` per spec, but a value that is not an integer
    at all cannot be compared, so every version rejects one it cannot parse."""

    def parse(value: Any, what: str) -> int:
        parsed = parse_power_level(room_version, value)
        if parsed is None:
            raise AuthError(f"power level {what} is not an integer")
        return parsed

    def parse_map(key: str, keys_are_users: bool = False) -> dict[str, int]:
        if key not in content:
            return {}
        mapping = content[key]
        if not isinstance(mapping, dict):
            raise AuthError(f"power levels {key} must be an object")
        if keys_are_users and not all(_is_valid_user_id(u) for u in mapping):
            raise AuthError("power levels users must be keyed by user id")
        return {k: parse(v, f"{key}.{k}") for k, v in mapping.items()}

    return {
        "top": {k: parse(content[k], k) for k in _TOP_LEVEL_PL_KEYS if k in content},
        "events": parse_map("events"),
        # Before v6 `notifications` is not protected by the rules, so not validated either.
        "notifications": (
            parse_map("notifications") if room_version.limit_notifications_power_levels else {}
        ),
        "users": parse_map("users", keys_are_users=True),
    }


def _check_redaction_v1(
    room_version: RoomVersion,
    event: Event,
    sender_level: int | float,
    pl_content: dict[str, Any] | None,
) -> None:
    """v1/v2 rule 11: redact level, or the redacted event came from the same server."""
    if sender_level >= get_named_level(room_version, "redact", pl_content):
        return
    redacts, event_id = event.get("redacts"), event.get("event_id")
    if isinstance(redacts, str) and isinstance(event_id, str):
        if _domain(redacts) == _domain(event_id):
            return
    raise AuthError(f"{event['sender']} may not redact other servers' events")
