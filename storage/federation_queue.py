"""The outbound federation queue (per destination, in PostgreSQL), delivery state per
destination, and the inbound transaction answers kept for idempotency."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True)
class QueuedRow:
    id: int
    event_id: str | None
    edu_type: str | None
    edu_content: str | None


@dataclass(frozen=True)
class DestinationState:
    failures: int
    retry_at_ts: int


class FederationQueueStore:
    def __init__(self, db: Database):
        self.db = db

    # --- queueing ------------------------------------------------------------------------

    async def enqueue(
        self,
        conn,
        destinations: Iterable[str],
        now_ms: int,
        *,
        event_ids: Iterable[str] = (),
        edus: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Queues PDUs (by event ID) and EDUs ((type, content JSON)) for each destination,
        in the caller's transaction; order within a destination is the order given."""
        dests = list(destinations)
        event_ids = list(event_ids)
        edus = list(edus)
        if not dests or not (event_ids or edus):
            return
        rows: list[tuple[str, str | None, str | None, str | None, int]]
        rows = [(d, e, None, None, now_ms) for d in dests for e in event_ids]
        rows += [(d, None, t, c, now_ms) for d in dests for t, c in edus]
        await conn.copy_records_to_table(
            "federation_outbound_queue",
            records=rows,
            columns=["destination", "event_id", "edu_type", "edu_content", "queued_ts"],
        )

    async def destinations_due(self, now_ms: int, limit: int = 1000) -> list[str]:
        """Destinations with something queued and no backoff pending."""
        rows = await self.db.fetch(
            "SELECT q.destination FROM (SELECT DISTINCT destination"
            " FROM federation_outbound_queue) q"
            " LEFT JOIN federation_destinations d ON d.destination = q.destination"
            " WHERE coalesce(d.retry_at_ts, 0) <= $1 LIMIT $2",
            now_ms,
            limit,
        )
        return [r["destination"] for r in rows]

    async def pending_count(self, destination: str) -> int:
        return await self.db.fetchval(
            "SELECT count(*) FROM federation_outbound_queue WHERE destination = $1", destination
        )

    async def drop_destination(self, destination: str) -> int:
        result = await self.db.execute(
            "DELETE FROM federation_outbound_queue WHERE destination = $1", destination
        )
        return int(result.split()[-1])

    # --- building and finishing transactions ------------------------------------------------

    async def in_flight(self, destination: str) -> tuple[str | None, list[QueuedRow]]:
        """The transaction built earlier and not yet acknowledged, if any: (txn ID, rows)."""
        rows = await self.db.fetch(
            "SELECT id, event_id, edu_type, edu_content, txn_id FROM federation_outbound_queue"
            " WHERE destination = $1 AND txn_id IS NOT NULL ORDER BY id",
            destination,
        )
        if not rows:
            return None, []
        txn_id = rows[0]["txn_id"]
        return txn_id, [_row(r) for r in rows if r["txn_id"] == txn_id]

    async def next_rows(
        self, destination: str, max_pdus: int, max_edus: int
    ) -> tuple[list[QueuedRow], list[QueuedRow]]:
        """The oldest unsent PDUs and EDUs: (pdu rows, edu rows), each oldest first."""
        pdus = await self.db.fetch(
            "SELECT id, event_id, edu_type, edu_content FROM federation_outbound_queue"
            " WHERE destination = $1 AND txn_id IS NULL AND event_id IS NOT NULL"
            " ORDER BY id LIMIT $2",
            destination,
            max_pdus,
        )
        edus = await self.db.fetch(
            "SELECT id, event_id, edu_type, edu_content FROM federation_outbound_queue"
            " WHERE destination = $1 AND txn_id IS NULL AND edu_type IS NOT NULL"
            " ORDER BY id LIMIT $2",
            destination,
            max_edus,
        )
        return [_row(r) for r in pdus], [_row(r) for r in edus]

    async def assign_txn(self, ids: list[int], txn_id: str) -> None:
        await self.db.execute(
            "UPDATE federation_outbound_queue SET txn_id = $2 WHERE id = ANY($1::bigint[])",
            ids,
            txn_id,
        )

    async def delete_rows(self, ids: list[int]) -> None:
        if ids:
            await self.db.execute(
                "DELETE FROM federation_outbound_queue WHERE id = ANY($1::bigint[])", ids
            )

    # --- destination state ------------------------------------------------------------------

    async def state(self, destination: str) -> DestinationState:
        row = await self.db.fetchrow(
            "SELECT failures, retry_at_ts FROM federation_destinations WHERE destination = $1",
            destination,
        )
        return (
            DestinationState(row["failures"], row["retry_at_ts"])
            if row
            else (DestinationState(0, 0))
        )

    async def claim(self, destination: str, owner: str, now_ms: int, lease_ms: int) -> bool:
        """Takes (or renews) the right to send to `destination`; False if another process
        holds an unexpired lease."""
        got = await self.db.fetchval(
            "INSERT INTO federation_destinations (destination, lease_owner, lease_until_ts)"
            " VALUES ($1, $2, $3) ON CONFLICT (destination) DO UPDATE"
            " SET lease_owner = EXCLUDED.lease_owner, lease_until_ts = EXCLUDED.lease_until_ts"
            " WHERE federation_destinations.lease_owner IS NULL"
            " OR federation_destinations.lease_owner = EXCLUDED.lease_owner"
            " OR federation_destinations.lease_until_ts < $4"
            " RETURNING 1",
            destination,
            owner,
            now_ms + lease_ms,
            now_ms,
        )
        return got is not None

    async def release(self, destination: str, owner: str) -> None:
        await self.db.execute(
            "UPDATE federation_destinations SET lease_owner = NULL, lease_until_ts = 0"
            " WHERE destination = $1 AND lease_owner = $2",
            destination,
            owner,
        )

    async def release_all(self, owner: str) -> None:
        await self.db.execute(
            "UPDATE federation_destinations SET lease_owner = NULL, lease_until_ts = 0"
            " WHERE lease_owner = $1",
            owner,
        )

    async def record_failure(self, destination: str, retry_at_ts: int) -> int:
        """Counts a failed attempt; returns the number of consecutive failures."""
        return await self.db.fetchval(
            "INSERT INTO federation_destinations (destination, failures, retry_at_ts)"
            " VALUES ($1, 1, $2) ON CONFLICT (destination) DO UPDATE"
            " SET failures = federation_destinations.failures + 1, retry_at_ts = $2"
            " RETURNING failures",
            destination,
            retry_at_ts,
        )

    async def set_retry_at(self, destination: str, retry_at_ts: int) -> None:
        await self.db.execute(
            "UPDATE federation_destinations SET retry_at_ts = $2 WHERE destination = $1",
            destination,
            retry_at_ts,
        )

    async def record_success(self, destination: str, ids: list[int], now_ms: int) -> None:
        """The destination took a transaction: its rows go, and any backoff ends."""
        async with self.db.acquire() as conn, conn.transaction():
            if ids:
                await conn.execute(
                    "DELETE FROM federation_outbound_queue WHERE id = ANY($1::bigint[])", ids
                )
            await conn.execute(
                "INSERT INTO federation_destinations (destination, last_success_ts)"
                " VALUES ($1, $2) ON CONFLICT (destination) DO UPDATE"
                " SET failures = 0, retry_at_ts = 0, last_success_ts = $2",
                destination,
                now_ms,
            )

    async def reset_backoff(self, destination: str) -> bool:
        """Ends a backoff early (the destination just talked to us); True if there was one."""
        result = await self.db.execute(
            "UPDATE federation_destinations SET failures = 0, retry_at_ts = 0"
            " WHERE destination = $1 AND (failures > 0 OR retry_at_ts > 0)",
            destination,
        )
        return result != "UPDATE 0"

    # --- inbound transactions ---------------------------------------------------------------

    async def txn_response(self, origin: str, txn_id: str) -> str | None:
        return await self.db.fetchval(
            "SELECT response_json FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2",
            origin,
            txn_id,
        )

    async def store_txn_response(
        self, origin: str, txn_id: str, response_json: str, now_ms: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO federation_inbound_txns (origin, txn_id, response_json, received_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            origin,
            txn_id,
            response_json,
            now_ms,
        )

    async def claim_to_device_message(self, conn, origin: str, message_id: str, now_ms) -> bool:
        """False if this origin's message ID was delivered before (in the caller's txn)."""
        got = await conn.fetchval(
            "INSERT INTO federation_inbound_to_device (origin, message_id, received_ts)"
            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
            origin,
            message_id,
            now_ms,
        )
        return got is not None

    async def prune_inbound(self, txns_before_ms: int, messages_before_ms: int) -> None:
        await self.db.execute(
            "DELETE FROM federation_inbound_txns WHERE received_ts < $1", txns_before_ms
        )
        await self.db.execute(
            "DELETE FROM federation_inbound_to_device WHERE received_ts < $1", messages_before_ms
        )


def _row(r) -> QueuedRow:
    return QueuedRow(r["id"], r["event_id"], r["edu_type"], r["edu_content"])
