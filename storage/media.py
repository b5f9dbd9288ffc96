"""Media metadata: local uploads (and reservations for async uploads), cached remote media,
thumbnails. The bytes live in a storage backend; this store only knows their keys."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaInfo:
    """What a download needs to know, for local and remote media alike."""

    origin: str
    media_id: str
    media_type: str | None
    media_length: int | None
    upload_name: str | None
    user_id: str | None
    uploaded: bool
    quarantined: bool
    created_ts: int


@dataclass(frozen=True)
class ThumbnailInfo:
    width: int
    height: int
    method: str
    animated: bool
    media_type: str
    length: int
    storage_key: str


_LOCAL_COLUMNS = (
    "media_id, user_id, media_type, media_length, upload_name, created_ts, uploaded_ts,"
    " expires_ts, quarantined_by"
)


def _local(origin: str, row) -> MediaInfo:
    return MediaInfo(
        origin=origin,
        media_id=row["media_id"],
        media_type=row["media_type"],
        media_length=row["media_length"],
        upload_name=row["upload_name"],
        user_id=row["user_id"],
        uploaded=row["uploaded_ts"] is not None,
        quarantined=row["quarantined_by"] is not None,
        created_ts=row["created_ts"],
    )


class MediaStore:
    def __init__(self, db, server_name: str):
        self.db = db
        self.server_name = server_name

    # --- local media -------------------------------------------------------------------

    async def insert_uploaded(
        self,
        media_id: str,
        user_id: str,
        media_type: str,
        length: int,
        upload_name: str | None,
        sha256: str,
        now_ms: int,
    ) -> None:
        await self.db.execute(
            "INSERT INTO local_media (media_id, user_id, media_type, media_length, upload_name,"
            " sha256, created_ts, uploaded_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            media_id,
            user_id,
            media_type,
            length,
            upload_name,
            sha256,
            now_ms,
        )

    async def reserve(
        self, media_id: str, user_id: str, now_ms: int, expires_ms: int, max_pending: int
    ) -> bool:
        """Reserves a media ID for an async upload; False if the user has too many pending.

        The count and the insert share a transaction with a per-user advisory lock, so
        concurrent /create calls cannot overshoot the limit.
        """
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "media:" + user_id)
            pending = await conn.fetchval(
                "SELECT count(*) FROM local_media WHERE user_id = $1 AND uploaded_ts IS NULL"
                " AND expires_ts > $2",
                user_id,
                now_ms,
            )
            if pending >= max_pending:
                return False
            await conn.execute(
                "INSERT INTO local_media (media_id, user_id, created_ts, expires_ts)"
                " VALUES ($1, $2, $3, $4)",
                media_id,
                user_id,
                now_ms,
                expires_ms,
            )
        return True

    async def get_reservation(self, media_id: str, now_ms: int):
        """(user_id, uploaded) of a reservation or upload; None if unknown or expired."""
        row = await self.db.fetchrow(
            "SELECT user_id, uploaded_ts, expires_ts FROM local_media WHERE media_id = $1",
            media_id,
        )
        if row is None:
            return None
        if row["uploaded_ts"] is None and row["expires_ts"] is not None:
            if row["expires_ts"] <= now_ms:
                return None
        return row["user_id"], row["uploaded_ts"] is not None

    async def complete_reservation(
        self,
        media_id: str,
        media_type: str,
        length: int,
        upload_name: str | None,
        sha256: str,
        now_ms: int,
    ) -> bool:
        """Fills in a reservation; False if someone else completed it first."""
        result = await self.db.execute(
            "UPDATE local_media SET media_type = $2, media_length = $3, upload_name = $4,"
            " sha256 = $5, uploaded_ts = $6, expires_ts = NULL"
            " WHERE media_id = $1 AND uploaded_ts IS NULL",
            media_id,
            media_type,
            length,
            upload_name,
            sha256,
            now_ms,
        )
        return result == "UPDATE 1"

    async def get_local(self, media_id: str) -> MediaInfo | None:
        row = await self.db.fetchrow(
            f"SELECT {_LOCAL_COLUMNS} FROM local_media WHERE media_id = $1", media_id
        )
        return _local(self.server_name, row) if row else None

    async def touch_local(self, media_id: str, now_ms: int) -> None:
        await self.db.execute(
            "UPDATE local_media SET last_access_ts = $2 WHERE media_id = $1", media_id, now_ms
        )

    async def delete_local(self, media_id: str) -> list[str]:
        """Deletes the row and its thumbnails' rows; returns the thumbnails' storage keys."""
        async with self.db.acquire() as conn, conn.transaction():
            keys = await conn.fetch(
                "DELETE FROM media_thumbnails WHERE origin = $1 AND media_id = $2"
                " RETURNING storage_key",
                self.server_name,
                media_id,
            )
            await conn.execute("DELETE FROM local_media WHERE media_id = $1", media_id)
        return [r["storage_key"] for r in keys]

    async def delete_expired_reservations(self, now_ms: int) -> int:
        result = await self.db.execute(
            "DELETE FROM local_media WHERE uploaded_ts IS NULL AND expires_ts <= $1", now_ms
        )
        return int(result.split()[-1])

    # --- quarantine --------------------------------------------------------------------

    async def set_quarantine(self, origin: str, media_id: str, by: str | None) -> bool:
        """Quarantines (by = admin) or releases (by = None); False if the media is unknown.

        Media marked safe_from_quarantine is left alone, as Synapse does.
        """
        if origin == self.server_name:
            result = await self.db.execute(
                "UPDATE local_media SET quarantined_by = $2"
                " WHERE media_id = $1 AND ($2::text IS NULL OR NOT safe_from_quarantine)",
                media_id,
                by,
            )
        else:
            result = await self.db.execute(
                "UPDATE remote_media SET quarantined_by = $3 WHERE origin = $1 AND media_id = $2",
                origin,
                media_id,
                by,
            )
        return result.endswith(" 1")

    # --- per-user usage ----------------------------------------------------------------

    async def user_media(self, user_id: str, offset: int, limit: int) -> tuple[list[dict], int]:
        rows = await self.db.fetch(
            "SELECT media_id, media_type, media_length, upload_name, created_ts,"
            " last_access_ts, quarantined_by, safe_from_quarantine FROM local_media"
            " WHERE user_id = $1 AND uploaded_ts IS NOT NULL"
            " ORDER BY created_ts DESC, media_id OFFSET $2 LIMIT $3",
            user_id,
            offset,
            limit,
        )
        total = await self.db.fetchval(
            "SELECT count(*) FROM local_media WHERE user_id = $1 AND uploaded_ts IS NOT NULL",
            user_id,
        )
        return [dict(r) for r in rows], total

    async def usage_by_user(
        self, offset: int, limit: int, order_by: str, descending: bool
    ) -> tuple[list[dict], int]:
        # order_by is checked against this mapping, never interpolated from input.
        column = {"user_id": "user_id", "media_count": "media_count"}.get(order_by, "media_length")
        direction = "DESC" if descending else "ASC"
        rows = await self.db.fetch(
            "SELECT m.user_id, p.displayname, count(*) AS media_count,"
            " coalesce(sum(m.media_length), 0)::bigint AS media_length"
            " FROM local_media m LEFT JOIN profiles p ON p.user_id = m.user_id"
            " WHERE m.uploaded_ts IS NOT NULL GROUP BY m.user_id, p.displayname"
            f" ORDER BY {column} {direction}, m.user_id OFFSET $1 LIMIT $2",
            offset,
            limit,
        )
        total = await self.db.fetchval(
            "SELECT count(DISTINCT user_id) FROM local_media WHERE uploaded_ts IS NOT NULL"
        )
        return [dict(r) for r in rows], total

    # --- remote media (filled by the federation fetcher) -------------------------------

    async def get_remote(self, origin: str, media_id: str) -> MediaInfo | None:
        row = await self.db.fetchrow(
            "SELECT media_id, media_type, media_length, upload_name, created_ts, quarantined_by"
            " FROM remote_media WHERE origin = $1 AND media_id = $2",
            origin,
            media_id,
        )
        if row is None:
            return None
        return MediaInfo(
            origin=origin,
            media_id=media_id,
            media_type=row["media_type"],
            media_length=row["media_length"],
            upload_name=row["upload_name"],
            user_id=None,
            uploaded=True,
            quarantined=row["quarantined_by"] is not None,
            created_ts=row["created_ts"],
        )

    async def insert_remote(
        self,
        origin: str,
        media_id: str,
        media_type: str,
        length: int,
        upload_name: str | None,
        now_ms: int,
    ) -> None:
        await self.db.execute(
            "INSERT INTO remote_media (origin, media_id, media_type, media_length,"
            " upload_name, created_ts) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (origin, media_id) DO NOTHING",
            origin,
            media_id,
            media_type,
            length,
            upload_name,
            now_ms,
        )

    # --- thumbnails --------------------------------------------------------------------

    async def get_thumbnail(
        self, origin: str, media_id: str, width: int, height: int, method: str, animated: bool
    ) -> ThumbnailInfo | None:
        row = await self.db.fetchrow(
            "SELECT width, height, method, animated, media_type, length, storage_key"
            " FROM media_thumbnails WHERE origin = $1 AND media_id = $2 AND req_width = $3"
            " AND req_height = $4 AND method = $5 AND animated = $6",
            origin,
            media_id,
            width,
            height,
            method,
            animated,
        )
        return ThumbnailInfo(**dict(row)) if row else None

    async def insert_thumbnail(
        self,
        origin: str,
        media_id: str,
        req_width: int,
        req_height: int,
        thumb: ThumbnailInfo,
    ) -> bool:
        """False if the same thumbnail was stored concurrently (the caller's copy is spare)."""
        result = await self.db.execute(
            "INSERT INTO media_thumbnails (origin, media_id, req_width, req_height, method,"
            " animated, width, height, media_type, length, storage_key)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
            origin,
            media_id,
            req_width,
            req_height,
            thumb.method,
            thumb.animated,
            thumb.width,
            thumb.height,
            thumb.media_type,
            thumb.length,
            thumb.storage_key,
        )
        return result == "INSERT 0 1"
