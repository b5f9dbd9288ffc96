"""The admin API's SQL (homeserver/admin): account flags and listings, the audit log,
reports, blocked rooms, server-notice rooms, rate-limit overrides, admin tasks, room
listings and purges.

Orderings asked for by a request are looked up in fixed mappings, never interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from storage.accounts import now_ms
from storage.database import Database, like_pattern
from storage.membership import JOINED_MEMBERS_SQL


def _status_count(status: str) -> int:
    return int(status.split()[-1])


@dataclass
class UserFilter:
    """Synapse's list-users filters. `deactivated` / `locked`: None = both, True = only
    those, False = only the others (v2's "include" flag maps True to None)."""

    user_id: str | None = None
    name: str | None = None
    deactivated: bool | None = False
    locked: bool | None = False
    admins: bool | None = None
    not_user_types: list[str] | None = None


_USER_ORDER = {
    "name": "u.user_id",
    "admin": "is_admin",
    "user_type": "u.user_type",
    "deactivated": "u.deactivated",
    "shadow_banned": "u.shadow_banned",
    "displayname": "p.displayname",
    "avatar_url": "p.avatar_url",
    "creation_ts": "u.created_ts",
    "creation_ts_ms": "u.created_ts",  # synapse-admin's column name
    "last_seen_ts": "last_seen_ts",
    "locked": "u.locked",
    "is_guest": "u.user_id",  # no guest accounts here: every row is equal
}
USER_ORDERS = tuple(_USER_ORDER)

# Admins are flagged accounts and those the config names (its `admins`, parameter {admins}).
_IS_ADMIN = "(u.is_admin OR u.user_id = ANY({admins}::text[]))"
_USER_COLUMNS = (
    f"u.user_id, {_IS_ADMIN} AS is_admin, u.deactivated, u.shadow_banned, u.locked, u.suspended,"
    " u.user_type, u.erased, u.created_ts, p.displayname, p.avatar_url,"
    " (SELECT max(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts"
)

# Columns of the listing subquery (_ROOM_COLUMNS), by Synapse's order_by names.
_ROOM_ORDER = {
    "name": "name",
    "canonical_alias": "canonical_alias",
    "joined_members": "joined_members",
    "joined_local_members": "joined_local_members",
    "version": "room_version",
    "creator": "creator",
    "encryption": "encryption",
    "federatable": "federatable",
    "public": "is_public",
    "join_rules": "join_rules",
    "guest_access": "guest_access",
    "history_visibility": "history_visibility",
    "state_events": "state_events",
    "room_id": "room_id",
    "size": "joined_members",  # Synapse's deprecated names
    "alphabetical": "name",
}
ROOM_ORDERS = tuple(_ROOM_ORDER)
_LARGEST_FIRST = {"joined_members", "joined_local_members", "version", "state_events", "size"}


def _state_field(kind: str, key: str) -> str:
    """The text of one content field of the room's current `kind` state event."""
    return (
        "(SELECT e.json::json -> 'content' ->> '" + key + "' FROM current_state cs"
        " JOIN events e ON e.event_id = cs.event_id"
        " WHERE cs.room_id = r.room_id AND cs.type = '" + kind + "' AND cs.state_key = '')"
    )


_ROOM_COLUMNS = (
    "r.room_id, r.room_version, r.creator, r.is_public, r.created_ts,"
    f" {_state_field('m.room.name', 'name')} AS name,"
    f" {_state_field('m.room.canonical_alias', 'alias')} AS canonical_alias,"
    f" {_state_field('m.room.avatar', 'url')} AS avatar_url,"
    f" {_state_field('m.room.topic', 'topic')} AS topic,"
    f" {_state_field('m.room.join_rules', 'join_rule')} AS join_rules,"
    f" {_state_field('m.room.guest_access', 'guest_access')} AS guest_access,"
    f" {_state_field('m.room.history_visibility', 'history_visibility')} AS history_visibility,"
    f" {_state_field('m.room.encryption', 'algorithm')} AS encryption,"
    f" {_state_field('m.room.create', 'type')} AS room_type,"
    f" coalesce({_state_field('m.room.create', 'm.federate')}, 'true') <> 'false' AS federatable,"
    " (SELECT count(*) FROM current_state cs WHERE cs.room_id = r.room_id) AS state_events,"
    f" (SELECT count(*) FROM ({JOINED_MEMBERS_SQL}) m WHERE m.room_id = r.room_id)"
    " AS joined_members,"
    f" (SELECT count(*) FROM ({JOINED_MEMBERS_SQL}) m WHERE m.room_id = r.room_id"
    "   AND m.user_id LIKE $1) AS joined_local_members"
)

_REPORT_COLUMNS = (
    "er.id, er.received_ts, er.room_id, er.event_id, er.user_id, er.reason, er.score,"
    " e.sender, e.json AS event_json,"
    " (SELECT ev.json::json -> 'content' ->> 'name' FROM current_state cs"
    "   JOIN events ev ON ev.event_id = cs.event_id WHERE cs.room_id = er.room_id"
    "   AND cs.type = 'm.room.name' AND cs.state_key = '') AS name,"
    " (SELECT ev.json::json -> 'content' ->> 'alias' FROM current_state cs"
    "   JOIN events ev ON ev.event_id = cs.event_id WHERE cs.room_id = er.room_id"
    "   AND cs.type = 'm.room.canonical_alias' AND cs.state_key = '') AS canonical_alias"
)

# What a room purge deletes, by room: every table of the room's graph and state, and the
# per-room rows of users (receipts, room account data, forgotten flags). Not deleted:
# users' key backups (their data, not the room's), reports, blocks and the audit log.
_ROOM_TABLES = (
    "current_state",
    "room_forward_extremities",
    "room_aliases",
    "receipts",
    "typing",
    "typing_changes",
    "account_data",
    "forgotten_rooms",
    "event_outliers",
    "out_of_band_memberships",
    "server_notice_rooms",
    "appservice_room_list",
)


class AdminStore:
    def __init__(self, db: Database, server_name: str, config_admins: tuple[str, ...] = ()):
        self.db = db
        self.server_name = server_name
        self.config_admins = list(config_admins)

    # -- audit ----------------------------------------------------------------------------

    async def audit(self, admin: str, action: str, target: str | None, details: dict) -> None:
        await self.db.execute(
            "INSERT INTO admin_audit_log (ts, admin_user_id, action, target, details)"
            " VALUES ($1, $2, $3, $4, $5)",
            now_ms(),
            admin,
            action,
            target,
            orjson.dumps(details).decode(),
        )

    async def audit_log(
        self,
        offset: int,
        limit: int,
        backwards: bool,
        admin: str | None,
        action: str | None,
        target: str | None,
    ) -> tuple[list[dict], int]:
        direction = "DESC" if backwards else "ASC"
        rows = await self.db.fetch(
            "SELECT id, ts, admin_user_id, action, target, details, count(*) OVER () AS total"
            " FROM admin_audit_log WHERE ($1::text IS NULL OR admin_user_id = $1)"
            " AND ($2::text IS NULL OR action = $2) AND ($3::text IS NULL OR target = $3)"
            f" ORDER BY id {direction} OFFSET $4 LIMIT $5",
            admin,
            action,
            target,
            offset,
            limit,
        )
        total = rows[0]["total"] if rows else await self._count_audit(admin, action, target)
        entries = [
            {
                "id": r["id"],
                "ts": r["ts"],
                "admin": r["admin_user_id"],
                "action": r["action"],
                "target": r["target"],
                "details": orjson.loads(r["details"]),
            }
            for r in rows
        ]
        return entries, total

    async def _count_audit(self, admin, action, target) -> int:
        return await self.db.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE ($1::text IS NULL OR admin_user_id = $1)"
            " AND ($2::text IS NULL OR action = $2) AND ($3::text IS NULL OR target = $3)",
            admin,
            action,
            target,
        )

    # -- users ----------------------------------------------------------------------------

    async def user(self, user_id: str):
        return await self.db.fetchrow(
            f"SELECT {_USER_COLUMNS.format(admins='$2')} FROM users u"
            " LEFT JOIN profiles p ON p.user_id = u.user_id WHERE u.user_id = $1",
            user_id,
            self.config_admins,
        )

    async def list_users(
        self, f: UserFilter, order_by: str, backwards: bool, offset: int, limit: int
    ) -> tuple[list, int]:
        # $1 (the config's admins) is always referenced, so the count query can use it too.
        conditions = ["cardinality($1::text[]) >= 0"]
        args: list[Any] = [self.config_admins]
        is_admin = _IS_ADMIN.format(admins="$1")

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if f.name:
            # The localpart (not the server name, which every local user has) or the
            # display name; `user_id` is then ignored, as Synapse does.
            pattern = arg(like_pattern(f.name))
            conditions.append(
                f"(split_part(substr(u.user_id, 2), ':', 1) ILIKE {pattern}"
                f" OR p.displayname ILIKE {pattern})"
            )
        elif f.user_id:
            conditions.append(f"u.user_id ILIKE {arg(like_pattern(f.user_id))}")
        for column, wanted in (
            ("u.deactivated", f.deactivated),
            ("u.locked", f.locked),
            (is_admin, f.admins),
        ):
            if wanted is not None:
                conditions.append(f"{column} = {arg(wanted)}")
        if f.not_user_types:
            # Synapse's not_user_type: "" stands for regular users (user_type NULL).
            types = arg([t for t in f.not_user_types if t])
            regular = "u.user_type IS NOT NULL AND " if "" in f.not_user_types else ""
            conditions.append(
                f"({regular}(u.user_type IS NULL OR u.user_type <> ALL({types}::text[])))"
            )
        where = " WHERE " + " AND ".join(conditions)
        direction = "DESC" if backwards else "ASC"
        column = _USER_ORDER[order_by]
        rows = await self.db.fetch(
            f"SELECT {_USER_COLUMNS.format(admins='$1')}, count(*) OVER () AS total FROM users u"
            f" LEFT JOIN profiles p ON p.user_id = u.user_id{where}"
            f" ORDER BY {column} {direction} NULLS LAST, u.user_id {direction}"
            f" OFFSET {arg(offset)} LIMIT {arg(limit)}",
            *args,
        )
        if rows:
            return rows, rows[0]["total"]
        total = await self.db.fetchval(
            f"SELECT count(*) FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id{where}",
            *args[:-2],
        )
        return rows, total

    async def set_user_flag(self, user_id: str, flag: str, value: bool) -> bool:
        # `flag` is one of these columns, chosen by the caller, never by the request.
        column = {
            "admin": "is_admin",
            "shadow_banned": "shadow_banned",
            "locked": "locked",
            "suspended": "suspended",
        }[flag]
        status = await self.db.execute(
            f"UPDATE users SET {column} = $2 WHERE user_id = $1", user_id, value
        )
        return _status_count(status) > 0

    async def set_user_type(self, user_id: str, user_type: str | None) -> None:
        await self.db.execute(
            "UPDATE users SET user_type = $2 WHERE user_id = $1", user_id, user_type
        )

    async def mark_erased(self, conn, user_id: str) -> None:
        await conn.execute("UPDATE users SET erased = TRUE WHERE user_id = $1", user_id)

    async def reactivate(self, user_id: str, password_hash: str | None) -> None:
        await self.db.execute(
            "UPDATE users SET deactivated = FALSE, erased = FALSE, password_hash = $2"
            " WHERE user_id = $1",
            user_id,
            password_hash,
        )

    async def account_data(self, user_id: str) -> tuple[dict, dict]:
        """(global type -> content, room -> type -> content)."""
        rows = await self.db.fetch(
            "SELECT room_id, type, content FROM account_data WHERE user_id = $1", user_id
        )
        global_data: dict[str, Any] = {}
        rooms: dict[str, dict[str, Any]] = {}
        for r in rows:
            content = orjson.loads(r["content"])
            if r["room_id"] == "":
                global_data[r["type"]] = content
            else:
                rooms.setdefault(r["room_id"], {})[r["type"]] = content
        return global_data, rooms

    async def ratelimit_override(self, user_id: str):
        return await self.db.fetchrow(
            "SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = $1",
            user_id,
        )

    async def set_ratelimit_override(self, user_id: str, per_second: int, burst: int) -> None:
        await self.db.execute(
            "INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET"
            " messages_per_second = EXCLUDED.messages_per_second,"
            " burst_count = EXCLUDED.burst_count",
            user_id,
            per_second,
            burst,
        )

    async def delete_ratelimit_override(self, user_id: str) -> None:
        await self.db.execute("DELETE FROM ratelimit_overrides WHERE user_id = $1", user_id)

    async def devices_with_tokens(self, user_id: str) -> list:
        """The user's devices with when and from where each was last seen (whois)."""
        return await self.db.fetch(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = $1 ORDER BY device_id",
            user_id,
        )

    # -- rooms ----------------------------------------------------------------------------

    async def list_rooms(
        self,
        search: str | None,
        public: bool | None,
        empty: bool | None,
        order_by: str,
        backwards: bool,
        offset: int,
        limit: int,
    ) -> tuple[list, int]:
        args: list[Any] = [f"%:{self.server_name}"]
        conditions = []
        if search:
            args.append(like_pattern(search))
            conditions.append(
                f"(r.room_id ILIKE ${len(args)} OR coalesce(name, '') ILIKE ${len(args)}"
                f" OR coalesce(canonical_alias, '') ILIKE ${len(args)})"
            )
        if public is not None:
            args.append(public)
            conditions.append(f"r.is_public = ${len(args)}")
        if empty is not None:
            conditions.append("joined_members = 0" if empty else "joined_members > 0")
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        # Synapse lists counts and versions largest first when `dir` is f.
        direction = "DESC" if backwards != (order_by in _LARGEST_FIRST) else "ASC"
        column = _ROOM_ORDER[order_by]
        args += [offset, limit]
        rows = await self.db.fetch(
            f"SELECT *, count(*) OVER () AS total FROM (SELECT {_ROOM_COLUMNS} FROM rooms r) r"
            f"{where} ORDER BY {column} {direction} NULLS LAST,"
            f" room_id {direction} OFFSET ${len(args) - 1} LIMIT ${len(args)}",
            *args,
        )
        if rows:
            return rows, rows[0]["total"]
        total = await self.db.fetchval(
            f"SELECT count(*) FROM (SELECT {_ROOM_COLUMNS} FROM rooms r) r{where}", *args[:-2]
        )
        return rows, total

    async def room(self, room_id: str):
        return await self.db.fetchrow(
            f"SELECT {_ROOM_COLUMNS} FROM rooms r WHERE r.room_id = $2",
            f"%:{self.server_name}",
            room_id,
        )

    async def joined_members(self, room_id: str) -> list[str]:
        rows = await self.db.fetch(
            f"SELECT user_id FROM ({JOINED_MEMBERS_SQL}) m WHERE room_id = $1 ORDER BY user_id",
            room_id,
        )
        return [r["user_id"] for r in rows]

    async def joined_local_devices(self, room_id: str) -> int:
        return await self.db.fetchval(
            f"SELECT count(*) FROM ({JOINED_MEMBERS_SQL}) m"
            " JOIN devices d ON d.user_id = m.user_id WHERE m.room_id = $1",
            room_id,
        )

    async def forward_extremities(self, room_id: str) -> list:
        return await self.db.fetch(
            "SELECT f.event_id, e.depth, COALESCE(e.state_group, e.state_group_before)"
            " AS state_group, e.origin_server_ts AS received_ts, e.stream_ordering"
            " FROM room_forward_extremities f JOIN events e ON e.event_id = f.event_id"
            " WHERE f.room_id = $1 ORDER BY e.depth DESC, e.stream_ordering DESC",
            room_id,
        )

    async def delete_extremities(self, room_id: str, event_ids: list[str]) -> int:
        status = await self.db.execute(
            "DELETE FROM room_forward_extremities WHERE room_id = $1 AND event_id = ANY($2)",
            room_id,
            event_ids,
        )
        return _status_count(status)

    async def block(self, room_id: str, by: str) -> None:
        await self.db.execute(
            "INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id) DO NOTHING",
            room_id,
            by,
            now_ms(),
        )

    async def unblock(self, room_id: str) -> None:
        await self.db.execute("DELETE FROM blocked_rooms WHERE room_id = $1", room_id)

    async def blocked_by(self, room_id: str) -> str | None:
        return await self.db.fetchval(
            "SELECT user_id FROM blocked_rooms WHERE room_id = $1", room_id
        )

    async def purge_room(self, room_id: str) -> list[str]:
        """Deletes everything this server holds of the room; returns its event IDs (for
        the caches)."""
        async with self.db.acquire() as conn, conn.transaction():
            event_ids = [
                r["event_id"]
                for r in await conn.fetch(
                    "DELETE FROM events WHERE room_id = $1 RETURNING event_id", room_id
                )
            ]
            await conn.execute("DELETE FROM redactions WHERE redacts = ANY($1)", event_ids)
            await conn.execute("DELETE FROM event_txns WHERE event_id = ANY($1)", event_ids)
            await conn.execute(
                "DELETE FROM federation_outbound_queue WHERE event_id = ANY($1)", event_ids
            )
            await conn.execute(
                "DELETE FROM state_group_entries WHERE state_group IN"
                " (SELECT id FROM state_groups WHERE room_id = $1)",
                room_id,
            )
            await conn.execute("DELETE FROM state_groups WHERE room_id = $1", room_id)
            for table in _ROOM_TABLES:
                await conn.execute(f"DELETE FROM {table} WHERE room_id = $1", room_id)
            await conn.execute("DELETE FROM rooms WHERE room_id = $1", room_id)
        return event_ids

    async def purge_history(
        self, room_id: str, before_ordering: int, delete_local_events: bool
    ) -> list[str]:
        """Deletes the room's timeline events before `before_ordering`; state events stay
        (they are the room's state and its auth chain), as do forward extremities, and
        local users' events unless `delete_local_events`."""
        async with self.db.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM events e WHERE room_id = $1 AND stream_ordering < $2"
                " AND state_key IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM room_forward_extremities f"
                "   WHERE f.event_id = e.event_id)"
                " AND ($3 OR sender NOT LIKE $4) RETURNING event_id",
                room_id,
                before_ordering,
                delete_local_events,
                f"%:{self.server_name}",
            )
            event_ids = [r["event_id"] for r in rows]
            await conn.execute("DELETE FROM redactions WHERE redacts = ANY($1)", event_ids)
            await conn.execute("DELETE FROM event_txns WHERE event_id = ANY($1)", event_ids)
        return event_ids

    async def event_ordering(self, room_id: str, event_id: str) -> int | None:
        return await self.db.fetchval(
            "SELECT stream_ordering FROM events WHERE room_id = $1 AND event_id = $2",
            room_id,
            event_id,
        )

    async def ordering_before_ts(self, room_id: str, ts: int) -> int | None:
        """The stream ordering just after the last event of the room sent before `ts`."""
        last = await self.db.fetchval(
            "SELECT max(stream_ordering) FROM events WHERE room_id = $1 AND origin_server_ts < $2",
            room_id,
            ts,
        )
        return None if last is None else last + 1

    # -- admin tasks (room deletion, history purges) ----------------------------------------

    async def create_task(self, task_id: str, kind: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO admin_tasks (task_id, kind, room_id, status, created_ts)"
            " VALUES ($1, $2, $3, 'scheduled', $4)",
            task_id,
            kind,
            room_id,
            now_ms(),
        )

    async def update_task(
        self, task_id: str, status: str, result: dict | None = None, error: str | None = None
    ) -> None:
        await self.db.execute(
            "UPDATE admin_tasks SET status = $2, result = coalesce($3, result), error = $4"
            " WHERE task_id = $1",
            task_id,
            status,
            orjson.dumps(result).decode() if result is not None else None,
            error,
        )

    async def task(self, task_id: str, kind: str):
        return await self.db.fetchrow(
            "SELECT task_id, room_id, status, error, result FROM admin_tasks"
            " WHERE task_id = $1 AND kind = $2",
            task_id,
            kind,
        )

    async def room_tasks(self, room_id: str, kind: str) -> list:
        return await self.db.fetch(
            "SELECT task_id, room_id, status, error, result FROM admin_tasks"
            " WHERE room_id = $1 AND kind = $2 ORDER BY created_ts",
            room_id,
            kind,
        )

    # -- server notices -------------------------------------------------------------------

    async def server_notice_room(self, user_id: str) -> str | None:
        return await self.db.fetchval(
            "SELECT room_id FROM server_notice_rooms WHERE user_id = $1", user_id
        )

    async def set_server_notice_room(self, user_id: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO server_notice_rooms (user_id, room_id) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET room_id = EXCLUDED.room_id",
            user_id,
            room_id,
        )

    # -- reports --------------------------------------------------------------------------

    async def add_event_report(
        self, room_id: str, event_id: str, user_id: str, reason: str | None, score: int | None
    ) -> None:
        await self.db.execute(
            "INSERT INTO event_reports (received_ts, room_id, event_id, user_id, reason, score)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            now_ms(),
            room_id,
            event_id,
            user_id,
            reason,
            score,
        )

    async def add_room_report(self, room_id: str, user_id: str, reason: str) -> None:
        await self.db.execute(
            "INSERT INTO room_reports (received_ts, room_id, user_id, reason)"
            " VALUES ($1, $2, $3, $4)",
            now_ms(),
            room_id,
            user_id,
            reason,
        )

    async def add_user_report(self, target: str, user_id: str, reason: str) -> None:
        await self.db.execute(
            "INSERT INTO user_reports (received_ts, target_user_id, user_id, reason)"
            " VALUES ($1, $2, $3, $4)",
            now_ms(),
            target,
            user_id,
            reason,
        )

    async def event_reports(
        self,
        offset: int,
        limit: int,
        backwards: bool,
        room_id: str | None,
        user_id: str | None,
        sender: str | None,
    ) -> tuple[list, int]:
        where = (
            " WHERE ($1::text IS NULL OR er.room_id ILIKE $1)"
            " AND ($2::text IS NULL OR er.user_id ILIKE $2)"
            " AND ($3::text IS NULL OR e.sender = $3)"
        )
        args = (
            like_pattern(room_id) if room_id else None,
            like_pattern(user_id) if user_id else None,
            sender,
        )
        direction = "DESC" if backwards else "ASC"
        rows = await self.db.fetch(
            f"SELECT {_REPORT_COLUMNS}, count(*) OVER () AS total FROM event_reports er"
            f" LEFT JOIN events e ON e.event_id = er.event_id{where}"
            f" ORDER BY er.received_ts {direction}, er.id {direction} OFFSET $4 LIMIT $5",
            *args,
            offset,
            limit,
        )
        if rows:
            return rows, rows[0]["total"]
        total = await self.db.fetchval(
            "SELECT count(*) FROM event_reports er"
            f" LEFT JOIN events e ON e.event_id = er.event_id{where}",
            *args,
        )
        return rows, total

    async def event_report(self, report_id: int):
        return await self.db.fetchrow(
            f"SELECT {_REPORT_COLUMNS} FROM event_reports er"
            " LEFT JOIN events e ON e.event_id = er.event_id WHERE er.id = $1",
            report_id,
        )

    async def delete_event_report(self, report_id: int) -> bool:
        status = await self.db.execute("DELETE FROM event_reports WHERE id = $1", report_id)
        return _status_count(status) > 0

    async def room_reports(
        self, offset: int, limit: int, room_id: str | None, user_id: str | None
    ) -> tuple[list, int]:
        """Newest first, with the room's name, alias and topic; reports of rooms no longer
        here are left out, as in Synapse."""
        rows = await self.db.fetch(
            "SELECT rr.id, rr.received_ts, rr.room_id, rr.user_id, rr.reason,"
            f" {_state_field('m.room.name', 'name')} AS name,"
            f" {_state_field('m.room.canonical_alias', 'alias')} AS canonical_alias,"
            f" {_state_field('m.room.topic', 'topic')} AS topic,"
            " count(*) OVER () AS total FROM room_reports rr"
            " JOIN rooms r ON r.room_id = rr.room_id"
            " WHERE ($1::text IS NULL OR rr.room_id = $1)"
            " AND ($2::text IS NULL OR rr.user_id = $2)"
            " ORDER BY rr.id DESC OFFSET $3 LIMIT $4",
            room_id,
            user_id,
            offset,
            limit,
        )
        return rows, rows[0]["total"] if rows else 0

    async def user_reports(
        self, offset: int, limit: int, target: str | None, user_id: str | None
    ) -> tuple[list, int]:
        rows = await self.db.fetch(
            "SELECT id, received_ts, target_user_id, user_id, reason,"
            " count(*) OVER () AS total FROM user_reports"
            " WHERE ($1::text IS NULL OR target_user_id = $1)"
            " AND ($2::text IS NULL OR user_id = $2)"
            " ORDER BY id DESC OFFSET $3 LIMIT $4",
            target,
            user_id,
            offset,
            limit,
        )
        return rows, rows[0]["total"] if rows else 0

    # -- federation destinations ------------------------------------------------------------

    async def destinations(
        self, search: str | None, order_by: str, backwards: bool, offset: int, limit: int
    ) -> tuple[list, int]:
        column = {
            "destination": "destination",
            "retry_last_ts": "retry_at_ts",
            "retry_interval": "failures",
            "failure_ts": "retry_at_ts",
            "last_successful_stream_ordering": "last_success_ts",
        }[order_by]
        direction = "DESC" if backwards else "ASC"
        rows = await self.db.fetch(
            "SELECT destination, failures, retry_at_ts, last_success_ts,"
            " count(*) OVER () AS total FROM federation_destinations"
            " WHERE $1::text IS NULL OR destination ILIKE $1"
            f" ORDER BY {column} {direction} NULLS LAST, destination {direction}"
            " OFFSET $2 LIMIT $3",
            like_pattern(search) if search else None,
            offset,
            limit,
        )
        if rows:
            return rows, rows[0]["total"]
        total = await self.db.fetchval(
            "SELECT count(*) FROM federation_destinations"
            " WHERE $1::text IS NULL OR destination ILIKE $1",
            like_pattern(search) if search else None,
        )
        return rows, total

    async def destination(self, destination: str):
        return await self.db.fetchrow(
            "SELECT destination, failures, retry_at_ts, last_success_ts"
            " FROM federation_destinations WHERE destination = $1",
            destination,
        )
