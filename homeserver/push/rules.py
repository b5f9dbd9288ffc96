"""A user's push rule set: server defaults merged with their own rules and changes.

Also the validation of rules that clients PUT, so a bad rule is refused before anything
is written, and `ranked()` which flattens a rule set into evaluation order.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable

from homeserver.http.errors import MatrixError, invalid_param, not_found
from homeserver.push.defaults import DEFAULT_RULE_KINDS, KINDS, default_rules
from storage.push import PushStore, RuleNotFound, StoredRule

_RANKED_CACHE_SIZE = 50_000
_VALID_ACTIONS = {"notify", "dont_notify", "coalesce"}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind {kind!r}")
    return kind


def check_actions(actions) -> list:
    if not isinstance(actions, list):
        raise MatrixError(400, "M_BAD_JSON", "'actions' must be a list")
    for action in actions:
        if isinstance(action, str):
            if action not in _VALID_ACTIONS:
                raise invalid_param(f"Unrecognised action {action!r}")
        elif not (isinstance(action, dict) and isinstance(action.get("set_tweak"), str)):
            raise invalid_param("Each action must be a known string or a set_tweak object")
    # Kept as given: the spec ignores "dont_notify" and "coalesce" when evaluating (the
    # evaluator drops them), but a client reading its rule back gets what it set.
    return actions


def _check_conditions(conditions) -> list:
    if not isinstance(conditions, list):
        raise MatrixError(400, "M_BAD_JSON", "'conditions' must be a list")
    for cond in conditions:
        if not isinstance(cond, dict) or not isinstance(cond.get("kind"), str):
            raise invalid_param("Each condition must be an object with a 'kind'")
    return conditions


def check_new_rule_id(kind: str, rule_id: str) -> None:
    if rule_id.startswith("."):
        raise invalid_param("Rule ids starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id or not rule_id:
        raise invalid_param("Rule ids may not be empty or contain slashes")
    # A room rule matches the room its ID names. An alias names none, so such a rule
    # matches nothing; it is accepted as Synapse accepts it (SyTest uses one).
    if kind == "room" and not rule_id.startswith(("!", "#")):
        raise invalid_param("The rule id of a room rule is the room id")
    if kind == "sender" and not rule_id.startswith("@"):
        raise invalid_param("The rule id of a sender rule is the user id")


def rule_from_body(kind: str, rule_id: str, body: dict) -> StoredRule:
    """Validates a PUT body into the rule to store (nothing is written on error)."""
    check_new_rule_id(kind, rule_id)
    if "actions" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'actions'")
    actions = check_actions(body["actions"])
    conditions = pattern = None
    if kind in ("override", "underride"):
        conditions = _check_conditions(body.get("conditions", []))
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise MatrixError(400, "M_MISSING_PARAM", "Content rules need a 'pattern'")
    return StoredRule(kind, rule_id, 0, conditions, pattern, actions, True)


def _format_user_rule(rule: StoredRule) -> dict:
    out = {
        "rule_id": rule.rule_id,
        "default": False,
        "enabled": rule.enabled,
        "actions": rule.actions,
    }
    if rule.kind in ("override", "underride"):
        out["conditions"] = rule.conditions or []
    elif rule.kind == "content":
        out["pattern"] = rule.pattern
    return out


class PushRules:
    def __init__(self, store: PushStore, notifier=None):
        self.store = store
        self.notifier = notifier
        # user -> (account_data position when loaded, ranked rules), for /sync's unread
        # counts: every rule change is an account_data write that wakes its user.
        self._ranked: OrderedDict[str, tuple[int, list]] = OrderedDict()
        # user -> the read of their rules under way.
        self._loading: dict[str, tuple[int, asyncio.Future]] = {}

    async def ranked_rules(self, user_id: str) -> list:
        """The user's enabled rules in evaluation order, cached until they change."""
        return (await self.ranked_rules_of([user_id]))[user_id]

    async def ranked_rules_of(self, user_ids: Iterable[str]) -> dict[str, list]:
        """ranked_rules of many users, those not cached read together; a user whose
        rules another caller is reading waits for that read (one message to a big room
        has every member's rules asked by the push worker and each member's /sync)."""
        found: dict[str, list] = {}
        waiting: dict[str, asyncio.Future] = {}
        missing: list[str] = []
        for user_id in user_ids:
            if user_id in found or user_id in waiting:
                continue
            cached = self._ranked.get(user_id)
            if cached is not None and not self._changed(user_id, cached[0]):
                self._ranked.move_to_end(user_id)
                found[user_id] = cached[1]
                continue
            loading = self._loading.get(user_id)
            # A read that began before the user's rules last changed may not see it.
            if loading is not None and not self._changed(user_id, loading[0]):
                waiting[user_id] = loading[1]
            else:
                missing.append(user_id)
        if missing:
            await self._load_ranked(missing, found)
        failed = []
        for user_id, pending in waiting.items():
            rules: list | None = await asyncio.shield(pending)
            if rules is None:
                failed.append(user_id)
            else:
                found[user_id] = rules
        if failed:
            # The read we waited on failed (its caller got the error): read them again.
            await self._load_ranked(failed, found)
        return found

    def _changed(self, user_id: str, position: int) -> bool:
        return self.notifier is None or self.notifier.changed_since(
            user_id, "account_data", position
        )

    async def _load_ranked(self, user_ids: list[str], found: dict[str, list]) -> None:
        loop = asyncio.get_running_loop()
        loading = {u: loop.create_future() for u in user_ids}
        # Read the position first: a change committed meanwhile invalidates the entries.
        position = self.notifier.positions["account_data"] if self.notifier else 0
        self._loading.update((u, (position, fut)) for u, fut in loading.items())
        try:
            stored = await self.store.rules_of_users(user_ids)
            for user_id in user_ids:
                rules = ranked(self._merge(user_id, *stored[user_id]))
                self._ranked[user_id] = (position, rules)
                found[user_id] = rules
                loading[user_id].set_result(rules)
            while len(self._ranked) > _RANKED_CACHE_SIZE:
                self._ranked.popitem(last=False)
        finally:
            for fut in loading.values():
                if not fut.done():
                    fut.set_result(None)
            for user_id, fut in loading.items():
                if self._loading.get(user_id, (0, None))[1] is fut:
                    del self._loading[user_id]

    async def ruleset(self, user_id: str, conn=None) -> dict:
        """{"global": {kind: [rule, ...]}} in priority order, as GET /pushrules/ returns."""
        user_rules = await self.store.user_rules(user_id, conn)
        overrides = await self.store.default_overrides(user_id, conn)
        return self._merge(user_id, user_rules, overrides)

    @staticmethod
    def _merge(user_id: str, user_rules: list[StoredRule], overrides: dict) -> dict:
        result = {}
        for kind, (before_user, after_user) in default_rules(user_id).items():
            defaults_first = [_apply(r, overrides) for r in before_user]
            mine = [_format_user_rule(r) for r in user_rules if r.kind == kind]
            defaults_last = [_apply(r, overrides) for r in after_user]
            result[kind] = defaults_first + mine + defaults_last
        return {"global": result}

    async def _build(self, conn, user_id: str) -> dict:
        return await self.ruleset(user_id, conn)

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict:
        for rule in (await self.ruleset(user_id))["global"][check_kind(kind)]:
            if rule["rule_id"] == rule_id:
                return rule
        raise not_found("Unknown push rule")

    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: dict, before, after):
        rule = rule_from_body(check_kind(kind), rule_id, body)
        for anchor in (before, after):
            if anchor is not None and anchor.startswith("."):
                raise invalid_param("Rules cannot be placed relative to server-default rules")
        try:
            await self.store.put_rule(user_id, rule, self._build, before=before, after=after)
        except RuleNotFound as e:
            raise MatrixError(
                400, "M_UNKNOWN", f"No user rule {e.args[0]!r} to place against"
            ) from None

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        if DEFAULT_RULE_KINDS.get(rule_id) == check_kind(kind):
            raise invalid_param("Server-default push rules cannot be deleted")
        if not await self.store.delete_rule(user_id, kind, rule_id, self._build):
            raise not_found("Unknown push rule")

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        await self._set(user_id, kind, rule_id, enabled=enabled)

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: list) -> None:
        await self._set(user_id, kind, rule_id, actions=check_actions(actions))

    async def _set(self, user_id: str, kind: str, rule_id: str, **change) -> None:
        if DEFAULT_RULE_KINDS.get(rule_id) == check_kind(kind):
            await self.store.set_default_override(user_id, rule_id, self._build, **change)
        elif not await self.store.set_user_rule_field(
            user_id, kind, rule_id, self._build, **change
        ):
            raise not_found("Unknown push rule")


def _apply(rule: dict, overrides: dict) -> dict:
    change = overrides.get(rule["rule_id"])
    if change is None:
        return rule
    rule = dict(rule)
    if change.enabled is not None:
        rule["enabled"] = change.enabled
    if change.actions is not None:
        rule["actions"] = change.actions
    return rule


def ranked(ruleset: dict) -> list[tuple[str, dict]]:
    """Every rule of a rule set as (kind, rule), most important first."""
    rules = ruleset["global"]
    return [(kind, rule) for kind in KINDS for rule in rules.get(kind, [])]
