"""The server-default push rules of the spec (client-server-api/modules/push.md).

Rule ids start with "." and are shared by every user; a user can only enable, disable or
change the actions of one (kept per user in storage/push.py), never delete it or move it.
The three legacy rules that matched mentions in `body` (contains_display_name, roomnotif,
contains_user_name) left the spec in v1.17 but Element and older clients still rely on
them, so they are kept, as Synapse does, after their `m.mentions` replacements.
"""

from __future__ import annotations

KINDS = ("override", "content", "room", "sender", "underride")

# Stands for the owner's user id in the templates below.
_ME = "[the user's Matrix ID]"
_SOUND = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> dict:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, conditions: list, actions: list, enabled: bool = True) -> dict:
    return {
        "rule_id": rule_id,
        "default": True,
        "enabled": enabled,
        "conditions": conditions,
        "actions": actions,
    }


# .m.rule.master is listed separately: it outranks even user-defined override rules.
MASTER = _rule(".m.rule.master", [], [], enabled=False)

_OVERRIDE = [
    _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
    _rule(
        ".m.rule.invite_for_me",
        [
            _match("type", "m.room.member"),
            _match("content.membership", "invite"),
            _match("state_key", _ME),
        ],
        ["notify", _SOUND],
    ),
    _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
    _rule(
        ".m.rule.is_user_mention",
        [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": _ME}],
        ["notify", _SOUND, _HIGHLIGHT],
    ),
    _rule(
        ".m.rule.contains_display_name",
        [{"kind": "contains_display_name"}],
        ["notify", _SOUND, _HIGHLIGHT],
    ),
    _rule(
        ".m.rule.is_room_mention",
        [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        ["notify", _HIGHLIGHT],
    ),
    _rule(
        ".m.rule.roomnotif",
        [
            {"kind": "sender_notification_permission", "key": "room"},
            _match("content.body", "@room"),
        ],
        ["notify", _HIGHLIGHT],
    ),
    _rule(
        ".m.rule.tombstone",
        [_match("type", "m.room.tombstone"), _match("state_key", "")],
        ["notify", _HIGHLIGHT],
    ),
    _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
    _rule(
        ".m.rule.room.server_acl",
        [_match("type", "m.room.server_acl"), _match("state_key", "")],
        [],
    ),
    _rule(
        ".m.rule.suppress_edits",
        [
            {
                "kind": "event_property_is",
                "key": "content.m\\.relates_to.rel_type",
                "value": "m.replace",
            }
        ],
        [],
    ),
]

_CONTENT = [
    {
        "rule_id": ".m.rule.contains_user_name",
        "default": True,
        "enabled": True,
        "pattern": "[the user's localpart]",
        "actions": ["notify", _SOUND, _HIGHLIGHT],
    }
]


def _two_members(event_type: str) -> list:
    return [{"kind": "room_member_count", "is": "2"}, _match("type", event_type)]


_UNDERRIDE = [
    _rule(
        ".m.rule.call",
        [_match("type", "m.call.invite")],
        ["notify", {"set_tweak": "sound", "value": "ring"}],
    ),
    _rule(
        ".m.rule.encrypted_room_one_to_one", _two_members("m.room.encrypted"), ["notify", _SOUND]
    ),
    _rule(".m.rule.room_one_to_one", _two_members("m.room.message"), ["notify", _SOUND]),
    _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
    _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
]

# Defaults that come after the user's own rules, by kind.
_AFTER_USER_RULES = {"override": _OVERRIDE, "content": _CONTENT, "underride": _UNDERRIDE}

DEFAULT_RULE_KINDS: dict[str, str] = {MASTER["rule_id"]: "override"} | {
    rule["rule_id"]: kind for kind, rules in _AFTER_USER_RULES.items() for rule in rules
}


def _personalise(value, user_id: str):
    localpart = user_id[1:].split(":", 1)[0]
    if isinstance(value, dict):
        return {k: _personalise(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_personalise(v, user_id) for v in value]
    if value == _ME:
        return user_id
    if value == "[the user's localpart]":
        return localpart
    return value


def _is_personal(value) -> bool:
    if isinstance(value, dict):
        return any(_is_personal(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_personal(v) for v in value)
    return value in (_ME, "[the user's localpart]")


def _template(rules: list[dict]) -> list[tuple[dict, bool]]:
    return [(rule, _is_personal(rule)) for rule in rules]


# Most default rules name no one: those are shared by every user's rule set (callers copy
# a rule before changing it, see rules._apply), and only the few that name the user are
# built per user. Every woken /sync of a user whose rules are not cached builds them.
_MASTER_TEMPLATE = _template([MASTER])
_AFTER_USER_TEMPLATES = {kind: _template(rules) for kind, rules in _AFTER_USER_RULES.items()}


# Condition kinds whose verdict depends on the event alone (not on the user's display
# name, the room's member count or power levels).
_EVENT_ONLY_CONDITIONS = frozenset({"event_match", "event_property_is", "event_property_contains"})


def _event_only(kind: str, rule: dict) -> bool:
    if kind in ("content", "room", "sender"):
        return True
    return all(
        isinstance(c, dict) and c.get("kind") in _EVENT_ONLY_CONDITIONS
        for c in rule.get("conditions") or []
    )


# The ids of the shared default rules (module objects, alive as long as the process) whose
# verdict on an event is the same for every user: one message to a big room evaluates
# each of them once, not once per member (homeserver.push.evaluator.evaluate's memo).
SHARED_EVENT_ONLY_RULES: frozenset[int] = frozenset(
    id(rule)
    for kind, template in [("override", _MASTER_TEMPLATE), *_AFTER_USER_TEMPLATES.items()]
    for rule, personal in template
    if not personal and _event_only(kind, rule)
)


def _for_user(template: list[tuple[dict, bool]], user_id: str) -> list[dict]:
    return [_personalise(rule, user_id) if personal else rule for rule, personal in template]


def default_rules(user_id: str) -> dict[str, tuple[list[dict], list[dict]]]:
    """kind -> (defaults ranked before the user's rules, defaults ranked after them)."""
    return {
        kind: (
            _for_user(_MASTER_TEMPLATE, user_id) if kind == "override" else [],
            _for_user(_AFTER_USER_TEMPLATES.get(kind, []), user_id),
        )
        for kind in KINDS
    }
