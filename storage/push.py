"""Push rules a user defined, their changes to server-default rules, and their pushers.

Every change to a user's push rules also rewrites their `m.push_rules` account data in the
same transaction on the account_data stream, so /sync carries the new rule set to all of
the user's clients (push.md "Push Rules: Events").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from storage.database import Database
from storage.streams import Streams


class _NothingChanged(Exception):
    pass


class RuleNotFound(LookupError):
    """The rule named by `before`/`after` does not exist among the user's rules."""


@dataclass
class StoredRule:
    kind: str
    rule_id: str
    priority: int
    conditions: list | None
    pattern: str | None
    actions: list
    enabled: bool


@dataclass
class DefaultOverride:
    enabled: bool | None
    actions: list | None


def _loads(text: str | None):
    return None if text is None else orjson.loads(text)


def _dumps(value) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _stored_rule(row) -> StoredRule:
    return StoredRule(
        row["kind"],
        row["rule_id"],
        row["priority"],
        _loads(row["conditions"]),
        row["pattern"],
        orjson.loads(row["actions"]),
        row["enabled"],
    )


def _default_override(row) -> DefaultOverride:
    return DefaultOverride(row["enabled"], _loads(row["actions"]))


# Builds the user's full m.push_rules content from a connection inside the transaction.
RulesetBuilder = Callable[[object, str], Awaitable[dict]]


class PushStore:
    def __init__(self, db: Database, streams: Streams):
        self.db = db
        self.streams = streams

    # -- reading ---------------------------------------------------------------------------

    async def user_rules(self, user_id: str, conn=None) -> list[StoredRule]:
        rows = await (conn or self.db).fetch(
            "SELECT kind, rule_id, priority, conditions, pattern, actions, enabled"
            " FROM push_rules WHERE user_id = $1 ORDER BY kind, priority DESC, rule_id",
            user_id,
        )
        return [_stored_rule(r) for r in rows]

    async def default_overrides(self, user_id: str, conn=None) -> dict[str, DefaultOverride]:
        rows = await (conn or self.db).fetch(
            "SELECT rule_id, enabled, actions FROM push_rule_default_overrides WHERE user_id = $1",
            user_id,
        )
        return {r["rule_id"]: _default_override(r) for r in rows}

    async def rules_of_users(
        self, user_ids: list[str]
    ) -> dict[str, tuple[list[StoredRule], dict[str, DefaultOverride]]]:
        """user_rules and default_overrides of many users in two queries: one message to
        a big room has the rules of every member evaluated."""
        out: dict[str, tuple[list[StoredRule], dict[str, DefaultOverride]]] = {
            u: ([], {}) for u in user_ids
        }
        for row in await self.db.fetch(
            "SELECT user_id, kind, rule_id, priority, conditions, pattern, actions, enabled"
            " FROM push_rules WHERE user_id = ANY($1::text[])"
            " ORDER BY user_id, kind, priority DESC, rule_id",
            user_ids,
        ):
            out[row["user_id"]][0].append(_stored_rule(row))
        for row in await self.db.fetch(
            "SELECT user_id, rule_id, enabled, actions FROM push_rule_default_overrides"
            " WHERE user_id = ANY($1::text[])",
            user_ids,
        ):
            out[row["user_id"]][1][row["rule_id"]] = _default_override(row)
        return out

    # -- writing: every write runs in _change, which also republishes m.push_rules ---------

    async def _change(self, user_id: str, build: RulesetBuilder, apply) -> bool:
        """Runs `apply(conn)`; when it returns True, republishes the user's rule set.

        When it returns False (nothing matched) the transaction rolls back, so no stream
        position is spent and no /sync wakes up.
        """
        try:
            async with self.streams.write("account_data") as w:
                # Serialises concurrent edits of one user's rules (they renumber priorities).
                await w.conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('push:' || $1))", user_id
                )
                if not await apply(w.conn):
                    raise _NothingChanged
                await self._publish(w, user_id, await build(w.conn, user_id))
        except _NothingChanged:
            return False
        return True

    async def _publish(self, w, user_id: str, content: dict) -> None:
        await w.conn.execute(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_pos)"
            " VALUES ($1, '', 'm.push_rules', $2, $3)"
            " ON CONFLICT (user_id, room_id, type)"
            " DO UPDATE SET content = EXCLUDED.content, stream_pos = EXCLUDED.stream_pos",
            user_id,
            orjson.dumps(content).decode(),
            w.last,
        )
        w.wake(users=[user_id])

    async def put_rule(
        self,
        user_id: str,
        rule: StoredRule,
        build: RulesetBuilder,
        *,
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        """Creates or updates a rule. Raises RuleNotFound for an unknown before/after."""

        async def apply(conn) -> bool:
            rows = await conn.fetch(
                "SELECT rule_id, enabled FROM push_rules WHERE user_id = $1 AND kind = $2"
                " ORDER BY priority DESC, rule_id",
                user_id,
                rule.kind,
            )
            order = [r["rule_id"] for r in rows]
            existing = {r["rule_id"]: r["enabled"] for r in rows}
            anchor = before or after
            if anchor is not None and (anchor not in existing or anchor == rule.rule_id):
                raise RuleNotFound(anchor)
            if rule.rule_id in order and anchor is not None:
                order.remove(rule.rule_id)
            if rule.rule_id not in order:
                # Most important first; a new rule without before/after goes to the top.
                if before is not None:
                    order.insert(order.index(before), rule.rule_id)
                elif after is not None:
                    order.insert(order.index(after) + 1, rule.rule_id)
                else:
                    order.insert(0, rule.rule_id)
            enabled = existing.get(rule.rule_id, True)
            await conn.execute(
                "INSERT INTO push_rules"
                " (user_id, kind, rule_id, priority, conditions, pattern, actions, enabled)"
                " VALUES ($1, $2, $3, 0, $4, $5, $6, $7)"
                " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
                " conditions = EXCLUDED.conditions, pattern = EXCLUDED.pattern,"
                " actions = EXCLUDED.actions",
                user_id,
                rule.kind,
                rule.rule_id,
                _dumps(rule.conditions),
                rule.pattern,
                _dumps(rule.actions),
                enabled,
            )
            await self._renumber(conn, user_id, rule.kind, order)
            return True

        await self._change(user_id, build, apply)

    async def _renumber(self, conn, user_id: str, kind: str, order: list[str]) -> None:
        priorities = list(range(len(order), 0, -1))
        await conn.execute(
            "UPDATE push_rules p SET priority = o.priority"
            " FROM unnest($3::text[], $4::int[]) AS o(rule_id, priority)"
            " WHERE p.user_id = $1 AND p.kind = $2 AND p.rule_id = o.rule_id",
            user_id,
            kind,
            order,
            priorities,
        )

    async def delete_rule(self, user_id: str, kind: str, rule_id: str, build) -> bool:
        async def apply(conn) -> bool:
            status = await conn.execute(
                "DELETE FROM push_rules WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
                user_id,
                kind,
                rule_id,
            )
            return status != "DELETE 0"

        return await self._change(user_id, build, apply)

    async def set_user_rule_field(
        self, user_id: str, kind: str, rule_id: str, build, *, enabled=None, actions=None
    ) -> bool:
        """Sets `enabled` or `actions` of a user-defined rule; False when it does not exist."""

        async def apply(conn) -> bool:
            status = await conn.execute(
                "UPDATE push_rules SET enabled = COALESCE($4, enabled),"
                " actions = COALESCE($5, actions)"
                " WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
                user_id,
                kind,
                rule_id,
                enabled,
                _dumps(actions),
            )
            return status != "UPDATE 0"

        return await self._change(user_id, build, apply)

    async def set_default_override(
        self, user_id: str, rule_id: str, build, *, enabled=None, actions=None
    ) -> None:
        async def apply(conn) -> bool:
            await conn.execute(
                "INSERT INTO push_rule_default_overrides (user_id, rule_id, enabled, actions)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, rule_id) DO UPDATE SET"
                " enabled = COALESCE(EXCLUDED.enabled, push_rule_default_overrides.enabled),"
                " actions = COALESCE(EXCLUDED.actions, push_rule_default_overrides.actions)",
                user_id,
                rule_id,
                enabled,
                _dumps(actions),
            )
            return True

        await self._change(user_id, build, apply)

    # -- pushers ---------------------------------------------------------------------------

    async def pushers(self, user_id: str) -> list[dict]:
        rows = await self.db.fetch(
            "SELECT app_id, pushkey, kind, app_display_name, device_display_name,"
            " profile_tag, lang, data FROM pushers WHERE user_id = $1 ORDER BY created_ts",
            user_id,
        )
        result = []
        for r in rows:
            pusher = {k: r[k] for k in ("app_id", "pushkey", "kind", "app_display_name")}
            pusher.update(
                device_display_name=r["device_display_name"],
                lang=r["lang"],
                data=orjson.loads(r["data"]),
            )
            if r["profile_tag"] is not None:
                pusher["profile_tag"] = r["profile_tag"]
            result.append(pusher)
        return result

    async def set_pusher(self, user_id: str, token_hash: bytes, pusher: dict, append: bool):
        async with self.db.acquire() as conn, conn.transaction():
            if not append:
                # Without `append`, a pushkey belongs to one user only.
                await conn.execute(
                    "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
                    pusher["app_id"],
                    pusher["pushkey"],
                    user_id,
                )
            await conn.execute(
                "INSERT INTO pushers (user_id, app_id, pushkey, access_token_hash, kind,"
                " app_display_name, device_display_name, profile_tag, lang, data, created_ts)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET"
                " access_token_hash = EXCLUDED.access_token_hash, kind = EXCLUDED.kind,"
                " app_display_name = EXCLUDED.app_display_name,"
                " device_display_name = EXCLUDED.device_display_name,"
                " profile_tag = EXCLUDED.profile_tag, lang = EXCLUDED.lang, data = EXCLUDED.data",
                user_id,
                pusher["app_id"],
                pusher["pushkey"],
                token_hash,
                pusher["kind"],
                pusher["app_display_name"],
                pusher["device_display_name"],
                pusher.get("profile_tag"),
                pusher["lang"],
                orjson.dumps(pusher["data"]).decode(),
                int(time.time() * 1000),
            )

    async def delete_user_pushers(self, user_id: str) -> None:
        """Every pusher of the user (on deactivation)."""
        await self.db.execute("DELETE FROM pushers WHERE user_id = $1", user_id)

    async def delete_pushers_except_token(self, user_id: str, token_hash: bytes | None) -> None:
        """The user's pushers set up with another access token (on a password change; all
        of them on a reset by e-mail, which no session made)."""
        await self.db.execute(
            "DELETE FROM pushers WHERE user_id = $1 AND access_token_hash IS DISTINCT FROM $2",
            user_id,
            token_hash,
        )

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> None:
        await self.db.execute(
            "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
            user_id,
            app_id,
            pushkey,
        )
