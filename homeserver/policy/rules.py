"""The policies a state messenger enforces on room events: room access rules
(`im.vector.room.access_rules`, as France's Tchap defines them) and the limits on external
users. Pure functions over an event and the room state before it; the service
(homeserver/policy/service.py) loads that state and asks both the local and the federated
paths to run them, beside the spec's auth rules.

A refusal raises :class:`PolicyError`, an :class:`AuthError`: the local path answers it
as 403 M_FORBIDDEN, the federated path rejects (or soft-fails) the event like any other
auth failure, so another server cannot bring in what our users could not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeserver.events.auth import AuthError

Event = dict[str, Any]
StateKey = tuple[str, str]

ACCESS_RULES = "im.vector.room.access_rules"
RESTRICTED, UNRESTRICTED, DIRECT = "restricted", "unrestricted", "direct"
RULES = (RESTRICTED, UNRESTRICTED, DIRECT)

MEMBER = "m.room.member"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
JOIN_RULES = "m.room.join_rules"
POWER_LEVELS = "m.room.power_levels"
# What a direct room may not carry: it is named after the other person.
DIRECT_FORBIDS = ("m.room.name", "m.room.topic", "m.room.avatar")

# The event types a policy may refuse; every other event passes without a state lookup.
POLICED_TYPES = frozenset(
    {ACCESS_RULES, MEMBER, THIRD_PARTY_INVITE, JOIN_RULES, POWER_LEVELS, "m.room.create"}
    | set(DIRECT_FORBIDS)
)

IsExternal = Callable[[str], bool]


class PolicyError(AuthError):
    """Refused by a room policy; the message is safe to show to the sender."""


def rule_of(state: Mapping[StateKey, Event]) -> str:
    """The room's access rule. A room without one (created elsewhere, or before the rules
    were switched on) is `restricted`, the safe default; so is an unknown value that came
    in before the rules were enforced."""
    return rule_of_content(_content(state.get((ACCESS_RULES, ""))))


def rule_of_content(content: Any) -> str:
    """The rule an access-rules content names; `restricted` for none or an unknown one."""
    rule = content.get("rule") if isinstance(content, dict) else None
    return rule if rule in RULES else RESTRICTED


def default_rule(is_direct: bool) -> str:
    return DIRECT if is_direct else RESTRICTED


def check_rule_content(content: Any) -> str:
    """The rule an access-rules content names; PolicyError when it names none we know."""
    rule = content.get("rule") if isinstance(content, dict) else None
    if rule not in RULES:
        raise PolicyError(f"unknown access rule {rule!r}: must be one of {', '.join(RULES)}")
    return rule


def check_event(
    event: Event,
    state: Mapping[StateKey, Event],
    *,
    access_rules: bool,
    is_external: IsExternal,
) -> None:
    """Raise PolicyError unless `event` is allowed in a room whose state before it is
    `state` (only the entries service.policy_state_keys names need be present)."""
    etype = event.get("type")
    sender = str(event.get("sender"))
    if etype == "m.room.create":
        if is_external(sender):
            raise PolicyError("external users may not create rooms")
        return
    if etype == MEMBER and _is_invite_by_other(event) and is_external(sender):
        raise PolicyError("external users may not invite others")
    if not access_rules or "state_key" not in event:
        return
    rule = rule_of(state)
    if etype == ACCESS_RULES:
        _check_rule_change(event, state, is_external)
    elif etype == POWER_LEVELS:
        check_power_levels(event, rule, is_external)
    elif etype in (MEMBER, THIRD_PARTY_INVITE):
        _check_membership(event, state, rule, is_external)
    elif etype == JOIN_RULES:
        if _content(event).get("join_rule") == "public" and rule != RESTRICTED:
            raise PolicyError(f"a room whose access rule is {rule} may not be public")
    elif etype in DIRECT_FORBIDS and rule == DIRECT:
        raise PolicyError(f"a direct room may not have {etype}")


def _content(event: Event | None) -> dict[str, Any]:
    content = event.get("content") if event else None
    return content if isinstance(content, dict) else {}


def _membership(event: Event | None) -> Any:
    return _content(event).get("membership")


def _is_invite_by_other(event: Event) -> bool:
    return _membership(event) == "invite" and event.get("state_key") != event.get("sender")


def _check_rule_change(
    event: Event, state: Mapping[StateKey, Event], is_external: IsExternal
) -> None:
    if event.get("state_key") != "":
        raise PolicyError("the access rules event has an empty state key")
    new = check_rule_content(event.get("content"))
    previous = state.get((ACCESS_RULES, ""))
    if new == DIRECT:
        members, tokens = _members_and_tokens(state)
        if len(members) > 2 or len(tokens) > 1:
            raise PolicyError("a room with more than two members cannot become direct")
    if new != RESTRICTED and _content(state.get((JOIN_RULES, ""))).get("join_rule") == "public":
        raise PolicyError("a public room must stay restricted")
    power_levels = state.get((POWER_LEVELS, ""))
    if new == UNRESTRICTED and power_levels is not None:
        # The power levels were judged under the rule before (at createRoom they come
        # first): what an unrestricted room may not hold must not come in this way.
        check_power_levels(power_levels, UNRESTRICTED, is_external)
    if previous is None:
        return  # a room's first rule (its creation, or a room from before the rules)
    old = rule_of(state)
    if new != old and not (old == RESTRICTED and new == UNRESTRICTED):
        raise PolicyError(
            f"the access rule cannot change from {old} to {new}: only restricted to "
            "unrestricted is allowed"
        )


def check_power_levels(event: Event, rule: str, is_external: IsExternal) -> None:
    # In an unrestricted room external users may be members, never moderators; and no
    # default level may hand them power either. (Restricted rooms keep them out; a
    # direct room's two members are its admins.)
    if rule != UNRESTRICTED:
        return
    content = _content(event)
    if content.get("users_default", 0) not in (0, "0"):
        raise PolicyError("users_default must be 0 in an unrestricted room")
    users = content.get("users")
    if isinstance(users, dict):
        for user_id, level in users.items():
            if level not in (0, "0") and is_external(str(user_id)):
                raise PolicyError(f"external user {user_id} may not be given a power level")


def _members_and_tokens(state: Mapping[StateKey, Event]) -> tuple[list[str], list[str]]:
    """Everyone with a membership in the state (whatever it is: a direct room belongs to
    its first two members, who may leave and come back), and the pending third-party
    invite tokens (revoked ones have empty content)."""
    members = [k[1] for k, e in state.items() if k[0] == MEMBER and _content(e)]
    tokens = [k[1] for k, e in state.items() if k[0] == THIRD_PARTY_INVITE and _content(e)]
    return members, tokens


def _check_membership(
    event: Event, state: Mapping[StateKey, Event], rule: str, is_external: IsExternal
) -> None:
    target = str(event.get("state_key"))
    membership = _membership(event)
    if event.get("type") == MEMBER and membership in ("join", "invite", "knock"):
        if rule == RESTRICTED and is_external(target):
            raise PolicyError(f"{target} is an external user and this room is restricted")
        if rule == UNRESTRICTED and membership == "join" and is_external(target):
            # External users come in only by invitation.
            if _membership(state.get((MEMBER, target))) not in ("invite", "join"):
                raise PolicyError(f"{target} is an external user and needs an invitation")
    if rule != DIRECT:
        return
    members, tokens = _members_and_tokens(state)
    if event.get("type") == THIRD_PARTY_INVITE:
        if tokens and target not in tokens:
            raise PolicyError("a direct room has room for one pending third-party invite")
        if len(members) >= 2:
            raise PolicyError("a direct room has at most two members")
        return
    if len(members) >= 2 and target not in members:
        raise PolicyError("a direct room has at most two members")
    if len(members) == 1 and tokens and target not in members:
        token = _content(event).get("third_party_invite", {})
        signed = token.get("signed", {}) if isinstance(token, dict) else {}
        if not isinstance(signed, dict) or signed.get("token") not in tokens:
            raise PolicyError("a direct room has at most two members")
