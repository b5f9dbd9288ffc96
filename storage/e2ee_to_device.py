"""Pending to-device messages, kept until the recipient's next sync acknowledges them."""

from __future__ import annotations

import time

import orjson

from storage.database import Database


class ToDeviceStore:
    def __init__(self, db: Database):
        self.db = db

    async def claim_txn(self, conn, user_id: str, device_id: str, txn_id: str) -> bool:
        """False when this device already sent this transaction ID."""
        status = await conn.execute(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            user_id,
            device_id,
            txn_id,
            int(time.time() * 1000),
        )
        return status.endswith(" 1")

    async def add_messages(
        self,
        conn,
        positions: range,
        sender: str,
        event_type: str,
        messages: list[tuple[str, str, dict]],
    ) -> None:
        """messages: (user_id, device_id, content), one position each."""
        await conn.executemany(
            "INSERT INTO to_device_messages (pos, user_id, device_id, sender, type, content)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (pos, user_id, device_id, sender, event_type, orjson.dumps(content).decode())
                for pos, (user_id, device_id, content) in zip(positions, messages, strict=True)
            ],
        )

    async def acknowledge(self, user_id: str, device_id: str, up_to: int) -> None:
        await self.db.execute(
            "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND pos <= $3",
            user_id,
            device_id,
            up_to,
        )

    async def pending(self, user_id: str, device_id: str, up_to: int) -> list[dict]:
        rows = await self.db.fetch(
            "SELECT sender, type, content FROM to_device_messages"
            " WHERE user_id = $1 AND device_id = $2 AND pos <= $3 ORDER BY pos",
            user_id,
            device_id,
            up_to,
        )
        return [
            {"sender": r["sender"], "type": r["type"], "content": orjson.loads(r["content"])}
            for r in rows
        ]

    async def delete_device(self, conn, user_id: str, device_id: str) -> None:
        await conn.execute(
            "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
        )
