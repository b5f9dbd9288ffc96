"""The application service outbox (per appservice, in PostgreSQL) and its delivery state."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True)
class QueuedItem:
    id: int
    kind: str  # 'event', 'ephemeral', 'to_device', 'keys'
    event_id: str | None
    content: str | None


@dataclass(frozen=True)
class AppServiceState:
    failures: int
    retry_at_ts: int
    # How far the device_lists and events streams were reported (MSC3202), or None.
    key_positions: tuple[int, int] | None


class AppServiceStore:
    def __init__(self, db: Database):
        self.db = db

    async def enqueue(
        self, conn, rows: Iterable[tuple[str, str, str | None, str | None]], now_ms: int
    ) -> None:
        """Queues (as_id, kind, event_id, content) rows in the caller's transaction, in
        the order given."""
        records = [(a, k, e, c, now_ms) for a, k, e, c in rows]
        if records:
            await conn.copy_records_to_table(
                "appservice_queue",
                records=records,
                columns=["as_id", "kind", "event_id", "content", "queued_ts"],
            )

    async def services_due(self, as_ids: list[str], now_ms: int) -> list[str]:
        """Those of `as_ids` with something queued and no backoff pending."""
        rows = await self.db.fetch(
            "SELECT a.as_id FROM unnest($1::text[]) a(as_id)"
            " LEFT JOIN appservice_state s ON s.as_id = a.as_id"
            " WHERE coalesce(s.retry_at_ts, 0) <= $2"
            " AND EXISTS (SELECT 1 FROM appservice_queue q WHERE q.as_id = a.as_id)",
            as_ids,
            now_ms,
        )
        return [r["as_id"] for r in rows]

    async def pending_count(self, as_id: str) -> int:
        return await self.db.fetchval(
            "SELECT count(*) FROM appservice_queue WHERE as_id = $1", as_id
        )

    async def state(self, as_id: str) -> AppServiceState:
        row = await self.db.fetchrow(
            "SELECT failures, retry_at_ts, device_list_pos, events_pos FROM appservice_state"
            " WHERE as_id = $1",
            as_id,
        )
        if row is None:
            return AppServiceState(0, 0, None)
        positions = None
        if row["device_list_pos"] is not None and row["events_pos"] is not None:
            positions = (row["device_list_pos"], row["events_pos"])
        return AppServiceState(row["failures"], row["retry_at_ts"], positions)

    async def next_transaction(
        self, as_id: str, limit: int, *, force: bool = False
    ) -> tuple[int | None, list[QueuedItem]]:
        """The transaction built before and not acknowledged (same ID, same rows), else a
        new one of the oldest `limit` rows with the next ID; (None, []) if nothing waits,
        unless `force` (there is something to say outside the queue: a 'keys' row is
        queued for it)."""
        async with self.db.acquire() as conn, conn.transaction():
            if force:
                await conn.execute(
                    "INSERT INTO appservice_queue (as_id, kind, queued_ts)"
                    " SELECT $1, 'keys', $2 WHERE NOT EXISTS"
                    " (SELECT 1 FROM appservice_queue WHERE as_id = $1)",
                    as_id,
                    int(time.time() * 1000),
                )
            rows = await conn.fetch(
                "SELECT id, kind, event_id, content, txn_id FROM appservice_queue"
                " WHERE as_id = $1 AND txn_id IS NOT NULL ORDER BY id",
                as_id,
            )
            if rows:
                txn_id = rows[0]["txn_id"]
                return txn_id, [_item(r) for r in rows if r["txn_id"] == txn_id]
            rows = await conn.fetch(
                "SELECT id, kind, event_id, content FROM appservice_queue"
                " WHERE as_id = $1 AND txn_id IS NULL ORDER BY id LIMIT $2",
                as_id,
                limit,
            )
            if not rows:
                return None, []
            txn_id = await conn.fetchval(
                "INSERT INTO appservice_state (as_id, last_txn_id) VALUES ($1, 1)"
                " ON CONFLICT (as_id) DO UPDATE"
                " SET last_txn_id = appservice_state.last_txn_id + 1 RETURNING last_txn_id",
                as_id,
            )
            await conn.execute(
                "UPDATE appservice_queue SET txn_id = $2 WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
                txn_id,
            )
            return txn_id, [_item(r) for r in rows]

    async def record_success(
        self, as_id: str, ids: list[int], key_positions: tuple[int, int] | None
    ) -> None:
        """The appservice took a transaction: its rows go, any backoff ends, and the
        device-list and events positions it was told about are kept."""
        device_list_pos, events_pos = key_positions or (None, None)
        async with self.db.acquire() as conn, conn.transaction():
            if ids:
                await conn.execute("DELETE FROM appservice_queue WHERE id = ANY($1::bigint[])", ids)
            await conn.execute(
                "INSERT INTO appservice_state (as_id, device_list_pos, events_pos)"
                " VALUES ($1, $2, $3)"
                " ON CONFLICT (as_id) DO UPDATE SET failures = 0, retry_at_ts = 0,"
                " device_list_pos = coalesce($2, appservice_state.device_list_pos),"
                " events_pos = coalesce($3, appservice_state.events_pos)",
                as_id,
                device_list_pos,
                events_pos,
            )

    async def record_failure(self, as_id: str, retry_at_ts: int) -> int:
        """Counts a failed attempt; returns the number of consecutive failures."""
        return await self.db.fetchval(
            "INSERT INTO appservice_state (as_id, failures, retry_at_ts) VALUES ($1, 1, $2)"
            " ON CONFLICT (as_id) DO UPDATE"
            " SET failures = appservice_state.failures + 1, retry_at_ts = $2"
            " RETURNING failures",
            as_id,
            retry_at_ts,
        )

    async def drop_rows(self, ids: list[int]) -> None:
        if ids:
            await self.db.execute("DELETE FROM appservice_queue WHERE id = ANY($1::bigint[])", ids)

    async def set_key_positions(self, as_id: str, positions: tuple[int, int]) -> None:
        await self.db.execute(
            "INSERT INTO appservice_state (as_id, device_list_pos, events_pos) VALUES ($1, $2, $3)"
            " ON CONFLICT (as_id) DO UPDATE SET device_list_pos = $2, events_pos = $3",
            as_id,
            *positions,
        )

    # --- the sending lease ------------------------------------------------------------

    async def claim(self, as_id: str, owner: str, now_ms: int, lease_ms: int) -> bool:
        """Takes (or renews) the right to send to `as_id`; False if another process holds
        an unexpired lease."""
        got = await self.db.fetchval(
            "INSERT INTO appservice_state (as_id, lease_owner, lease_until_ts)"
            " VALUES ($1, $2, $3) ON CONFLICT (as_id) DO UPDATE"
            " SET lease_owner = EXCLUDED.lease_owner, lease_until_ts = EXCLUDED.lease_until_ts"
            " WHERE appservice_state.lease_owner IS NULL"
            " OR appservice_state.lease_owner = EXCLUDED.lease_owner"
            " OR appservice_state.lease_until_ts < $4"
            " RETURNING 1",
            as_id,
            owner,
            now_ms + lease_ms,
            now_ms,
        )
        return got is not None

    async def release(self, as_id: str, owner: str) -> None:
        await self.db.execute(
            "UPDATE appservice_state SET lease_owner = NULL, lease_until_ts = 0"
            " WHERE as_id = $1 AND lease_owner = $2",
            as_id,
            owner,
        )

    async def release_all(self, owner: str) -> None:
        await self.db.execute(
            "UPDATE appservice_state SET lease_owner = NULL, lease_until_ts = 0"
            " WHERE lease_owner = $1",
            owner,
        )

    # --- MSC3202: the key state of the appservice's devices ------------------------------

    async def key_counts(
        self, user_ids: list[str]
    ) -> tuple[dict[str, dict[str, dict[str, int]]], dict[str, dict[str, list[str]]]]:
        """One-time key counts and unused fallback key types of every device of the
        users that has uploaded keys: ({user: {device: {algorithm: n}}}, {user: {device:
        [algorithm]}}), in one round trip."""
        rows = await self.db.fetch(
            "SELECT d.user_id, d.device_id, k.algorithm, k.n, k.otk FROM devices d"
            " JOIN e2e_device_keys dk ON dk.user_id = d.user_id AND dk.device_id = d.device_id"
            " LEFT JOIN LATERAL (SELECT TRUE AS otk, algorithm, count(*) AS n"
            "   FROM e2e_one_time_keys o WHERE o.user_id = d.user_id"
            "   AND o.device_id = d.device_id GROUP BY algorithm"
            "   UNION ALL SELECT FALSE, algorithm, 0 FROM e2e_fallback_keys f"
            "   WHERE f.user_id = d.user_id AND f.device_id = d.device_id AND NOT f.used) k"
            " ON TRUE WHERE d.user_id = ANY($1::text[])",
            user_ids,
        )
        counts: dict[str, dict[str, dict[str, int]]] = {}
        fallback: dict[str, dict[str, list[str]]] = {}
        for r in rows:
            c = counts.setdefault(r["user_id"], {}).setdefault(r["device_id"], {})
            f = fallback.setdefault(r["user_id"], {}).setdefault(r["device_id"], [])
            if r["algorithm"] is None:
                continue
            if r["otk"]:
                c[r["algorithm"]] = r["n"]
            else:
                f.append(r["algorithm"])
        return counts, fallback

    async def local_users_with_devices(self, server_suffix: str) -> list[str]:
        """Local users that have a device with keys (the candidates for MSC3202 data;
        the caller filters by namespace)."""
        rows = await self.db.fetch(
            "SELECT DISTINCT user_id FROM e2e_device_keys WHERE user_id LIKE '%' || $1",
            server_suffix,
        )
        return [r["user_id"] for r in rows]


def _item(r) -> QueuedItem:
    return QueuedItem(r["id"], r["kind"], r["event_id"], r["content"])
