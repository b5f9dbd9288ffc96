"""Figures read for the Prometheus scrape: queue depths an operator alerts on."""

from __future__ import annotations

from storage.database import Database


class OperationalStats:
    def __init__(self, db: Database):
        self.db = db

    async def federation_queue_depths(self) -> dict[str, int]:
        """Rows waiting in the outbound federation queue, per destination."""
        rows = await self.db.fetch(
            "SELECT destination, count(*) AS n FROM federation_outbound_queue GROUP BY destination"
        )
        return {r["destination"]: r["n"] for r in rows}

    async def to_device_backlog(self) -> int:
        """To-device messages stored and not yet acknowledged by their device."""
        return await self.db.fetchval("SELECT count(*) FROM to_device_messages")
