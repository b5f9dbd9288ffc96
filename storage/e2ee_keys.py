"""Device keys, one-time and fallback keys, cross-signing keys and their signatures.

Key objects are stored as the text the client uploaded (orjson-encoded); nothing here
looks inside them beyond the identifiers it indexes on.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from storage.database import Database

_CLAIM_ONE_TIME_KEY = """
DELETE FROM e2e_one_time_keys
WHERE (user_id, device_id, algorithm, key_id) = (
    SELECT user_id, device_id, algorithm, key_id FROM e2e_one_time_keys
    WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
    ORDER BY key_id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING key_id, key_json
"""


class E2EKeyStore:
    def __init__(self, db: Database):
        self.db = db

    # --- device keys -------------------------------------------------------------

    async def get_device_keys(self, user_id: str, device_id: str) -> dict | None:
        raw = await self.db.fetchval(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
        )
        return orjson.loads(raw) if raw is not None else None

    async def set_device_keys(self, conn, user_id: str, device_id: str, keys: dict) -> None:
        await conn.execute(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json",
            user_id,
            device_id,
            orjson.dumps(keys).decode(),
        )

    async def devices_with_keys(
        self, user_ids: Iterable[str], conn=None
    ) -> list[tuple[str, str, dict, str | None]]:
        """(user_id, device_id, keys, display name) of every existing device with keys;
        read in `conn`'s transaction when given."""
        rows = await (conn or self.db).fetch(
            "SELECT k.user_id, k.device_id, k.key_json, d.display_name"
            " FROM e2e_device_keys k JOIN devices d"
            " ON d.user_id = k.user_id AND d.device_id = k.device_id"
            " WHERE k.user_id = ANY($1::text[])",
            list(user_ids),
        )
        return [
            (r["user_id"], r["device_id"], orjson.loads(r["key_json"]), r["display_name"])
            for r in rows
        ]

    # --- one-time and fallback keys ----------------------------------------------

    async def existing_one_time_keys(
        self, user_id: str, device_id: str, ids: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict | str]:
        rows = await self.db.fetch(
            "SELECT algorithm, key_id, key_json FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2"
            " AND (algorithm, key_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))",
            user_id,
            device_id,
            [a for a, _ in ids],
            [k for _, k in ids],
        )
        return {(r["algorithm"], r["key_id"]): orjson.loads(r["key_json"]) for r in rows}

    async def add_one_time_keys(
        self, conn, user_id: str, device_id: str, keys: list[tuple[str, str, object]]
    ) -> None:
        await conn.executemany(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [(user_id, device_id, a, k, orjson.dumps(v).decode()) for a, k, v in keys],
        )

    async def set_fallback_keys(
        self, conn, user_id: str, device_id: str, keys: list[tuple[str, str, object]]
    ) -> None:
        """A new fallback key replaces the previous one of its algorithm and is unused."""
        for algorithm, key_id, key in keys:
            await conn.execute(
                "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, algorithm)"
                " DO UPDATE SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json,"
                " used = (e2e_fallback_keys.key_id = EXCLUDED.key_id"
                "         AND e2e_fallback_keys.key_json = EXCLUDED.key_json"
                "         AND e2e_fallback_keys.used)",
                user_id,
                device_id,
                algorithm,
                key_id,
                orjson.dumps(key).decode(),
            )

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        rows = await self.db.fetch(
            "SELECT algorithm, count(*) AS n FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
            user_id,
            device_id,
        )
        return {r["algorithm"]: r["n"] for r in rows}

    async def key_status(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """One-time key counts and unused fallback key types, in one round trip (/sync)."""
        rows = await self.db.fetch(
            "SELECT TRUE AS otk, algorithm, count(*) AS n FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm"
            " UNION ALL SELECT FALSE, algorithm, 0 FROM e2e_fallback_keys"
            " WHERE user_id = $1 AND device_id = $2 AND NOT used",
            user_id,
            device_id,
        )
        counts = {r["algorithm"]: r["n"] for r in rows if r["otk"]}
        return counts, sorted(r["algorithm"] for r in rows if not r["otk"])

    async def claim_key(self, user_id: str, device_id: str, algorithm: str):
        """(key_id, key) of one one-time key, removed atomically; else the fallback key.

        SKIP LOCKED makes concurrent claims take different rows instead of waiting on,
        and then both returning, the same one.
        """
        async with self.db.acquire() as conn:
            row = await conn.fetchrow(_CLAIM_ONE_TIME_KEY, user_id, device_id, algorithm)
            if row is None:
                row = await conn.fetchrow(
                    "UPDATE e2e_fallback_keys SET used = TRUE"
                    " WHERE user_id = $1 AND device_id = $2 AND algorithm = $3"
                    " RETURNING key_id, key_json",
                    user_id,
                    device_id,
                    algorithm,
                )
        if row is None:
            return None
        return row["key_id"], orjson.loads(row["key_json"])

    # --- cross-signing -----------------------------------------------------------

    async def cross_signing_keys(
        self, user_ids: Iterable[str], conn=None
    ) -> dict[tuple[str, str], dict]:
        rows = await (conn or self.db).fetch(
            "SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys"
            " WHERE user_id = ANY($1::text[])",
            list(user_ids),
        )
        return {(r["user_id"], r["key_type"]): orjson.loads(r["key_json"]) for r in rows}

    async def set_cross_signing_key(self, conn, user_id: str, key_type: str, key: dict) -> None:
        await conn.execute(
            "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id, key_type)"
            " DO UPDATE SET key_json = EXCLUDED.key_json",
            user_id,
            key_type,
            orjson.dumps(key).decode(),
        )

    async def signatures_for(self, user_ids: Iterable[str], conn=None) -> list:
        return await (conn or self.db).fetch(
            "SELECT target_user_id, target_id, signer_user_id, signer_key_id, signature"
            " FROM e2e_signatures WHERE target_user_id = ANY($1::text[])",
            list(user_ids),
        )

    async def add_signatures(self, conn, rows: list[tuple[str, str, str, str, str]]) -> None:
        """rows: (target_user_id, target_id, signer_user_id, signer_key_id, signature)."""
        await conn.executemany(
            "INSERT INTO e2e_signatures"
            " (target_user_id, target_id, signer_user_id, signer_key_id, signature)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_user_id, target_id,"
            " signer_user_id, signer_key_id) DO UPDATE SET signature = EXCLUDED.signature",
            rows,
        )

    # --- device removal ----------------------------------------------------------

    async def delete_device(self, conn, user_id: str, device_id: str) -> None:
        for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
            await conn.execute(
                f"DELETE FROM {table} WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )
        await conn.execute(
            "DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_id = $2",
            user_id,
            device_id,
        )
