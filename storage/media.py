"""Media metadata: local uploads (and reservations for async uploads), cached remote media,
thumbnails. The bytes live in a storage backend; this store only knows their keys."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import orjson

from storage.database import like_pattern


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
    # A pending async upload stops being one at this time (None: not pending).
    expires_ts: int | None = None
    # Created while the legacy unauthenticated download endpoints were open.
    legacy_access: bool = False


class Completion(Enum):
    """Outcome of completing an async upload."""

    DONE = "done"
    TAKEN = "taken"  # another upload to the same ID was stored first
    GONE = "gone"  # unknown, or the reservation expired


@dataclass(frozen=True)
class ThumbnailInfo:
    width: int
    height: int
    method: str
    animated: bool
    media_type: str
    length: int
    storage_key: str


# Event types whose content can name media (see homeserver.media.room_media).
MEDIA_EVENT_TYPES = ("m.room.message", "m.sticker", "m.room.avatar", "m.room.member")

_LOCAL_COLUMNS = (
    "media_id, user_id, media_type, media_length, upload_name, created_ts, uploaded_ts,"
    " expires_ts, quarantined_by, legacy_access"
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
        expires_ts=row["expires_ts"] if row["uploaded_ts"] is None else None,
        legacy_access=row["legacy_access"],
    )


# Synapse's orderings of a user's media list (all columns of local_media).
USER_MEDIA_ORDERS = (
    "media_id",
    "upload_name",
    "created_ts",
    "last_access_ts",
    "media_length",
    "media_type",
    "quarantined_by",
    "safe_from_quarantine",
)


class MediaStore:
    def __init__(self, db, server_name: str, legacy_open: bool = False):
        self.db = db
        self.server_name = server_name
        # Whether media created now may later be served by the legacy endpoints.
        self.legacy_open = legacy_open

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
            " sha256, created_ts, uploaded_ts, legacy_access)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
            media_id,
            user_id,
            media_type,
            length,
            upload_name,
            sha256,
            now_ms,
            self.legacy_open,
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
                "INSERT INTO local_media (media_id, user_id, created_ts, expires_ts, legacy_access)"
                " VALUES ($1, $2, $3, $4, $5)",
                media_id,
                user_id,
                now_ms,
                expires_ms,
                self.legacy_open,
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
        put_bytes,
    ) -> Completion:
        """Fills in a reservation, calling `put_bytes()` to store the file first.

        The row stays locked while the bytes are put in place, so of two concurrent uploads
        to one ID exactly one stores its file; the other sees TAKEN and stores nothing.
        If `put_bytes` fails, the reservation is left as it was.
        """
        async with self.db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT uploaded_ts, expires_ts FROM local_media WHERE media_id = $1 FOR UPDATE",
                media_id,
            )
            if row is None:
                return Completion.GONE
            if row["uploaded_ts"] is not None:
                return Completion.TAKEN
            if row["expires_ts"] is not None and row["expires_ts"] <= now_ms:
                return Completion.GONE
            await put_bytes()
            await conn.execute(
                "UPDATE local_media SET media_type = $2, media_length = $3, upload_name = $4,"
                " sha256 = $5, uploaded_ts = $6, expires_ts = NULL WHERE media_id = $1",
                media_id,
                media_type,
                length,
                upload_name,
                sha256,
                now_ms,
            )
        return Completion.DONE

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
        """Quarantines (by = admin) or releases (by = None) one item; False if nothing
        changed (unknown local media, or local media marked safe from quarantine)."""
        if by is None:
            return await self.release_quarantine(origin, media_id)
        if origin == self.server_name:
            return await self.quarantine_many([media_id], [], by) > 0
        return await self.quarantine_many([], [(origin, media_id)], by) > 0

    async def quarantine_many(
        self, local_ids: list[str], remote: list[tuple[str, str]], by: str
    ) -> int:
        """Quarantines local media and remote media (cached or not); how many items.

        Local media marked safe_from_quarantine is left alone, as Synapse does. Remote media
        not cached yet is recorded so that it is never fetched while quarantined.
        """
        origins = [o for o, _ in remote]
        media_ids = [m for _, m in remote]
        count = 0
        async with self.db.acquire() as conn, conn.transaction():
            if local_ids:
                result = await conn.execute(
                    "UPDATE local_media SET quarantined_by = $2"
                    " WHERE media_id = ANY($1::text[]) AND NOT safe_from_quarantine",
                    local_ids,
                    by,
                )
                count += int(result.split()[-1])
            if remote:
                result = await conn.execute(
                    "UPDATE remote_media r SET quarantined_by = $3"
                    " FROM unnest($1::text[], $2::text[]) AS t(origin, media_id)"
                    " WHERE r.origin = t.origin AND r.media_id = t.media_id",
                    origins,
                    media_ids,
                    by,
                )
                count += int(result.split()[-1])
                result = await conn.execute(
                    "INSERT INTO remote_media_quarantine (origin, media_id, quarantined_by)"
                    " SELECT DISTINCT t.origin, t.media_id, $3::text"
                    " FROM unnest($1::text[], $2::text[]) AS t(origin, media_id)"
                    " WHERE NOT EXISTS (SELECT 1 FROM remote_media r"
                    "   WHERE r.origin = t.origin AND r.media_id = t.media_id)"
                    " ON CONFLICT (origin, media_id) DO UPDATE"
                    " SET quarantined_by = EXCLUDED.quarantined_by",
                    origins,
                    media_ids,
                    by,
                )
                count += int(result.split()[-1])
        return count

    async def release_quarantine(self, origin: str, media_id: str) -> bool:
        if origin == self.server_name:
            result = await self.db.execute(
                "UPDATE local_media SET quarantined_by = NULL WHERE media_id = $1", media_id
            )
            return result.endswith(" 1")
        async with self.db.acquire() as conn, conn.transaction():
            cached = await conn.execute(
                "UPDATE remote_media SET quarantined_by = NULL WHERE origin = $1 AND media_id = $2",
                origin,
                media_id,
            )
            pending = await conn.execute(
                "DELETE FROM remote_media_quarantine WHERE origin = $1 AND media_id = $2",
                origin,
                media_id,
            )
        return cached.endswith(" 1") or pending.endswith(" 1")

    async def remote_quarantined(self, origin: str, media_id: str) -> bool:
        """Whether remote media not cached yet was quarantined (so is not to be fetched)."""
        found = await self.db.fetchval(
            "SELECT 1 FROM remote_media_quarantine WHERE origin = $1 AND media_id = $2",
            origin,
            media_id,
        )
        return found is not None

    async def room_events_with_media(self, room_id: str, after: int, limit: int) -> list:
        """(stream_ordering, json) of the room's events that may reference media, in
        order after `after`; for the admin's room media listing and quarantine."""
        return await self.db.fetch(
            "SELECT stream_ordering, json FROM events WHERE room_id = $1"
            " AND stream_ordering > $2 AND type = ANY($3::text[]) AND json LIKE '%mxc://%'"
            " ORDER BY stream_ordering LIMIT $4",
            room_id,
            after,
            list(MEDIA_EVENT_TYPES),
            limit,
        )

    async def room_exists(self, room_id: str) -> bool:
        found = await self.db.fetchval("SELECT 1 FROM rooms WHERE room_id = $1", room_id)
        return found is not None

    # --- per-user usage ----------------------------------------------------------------

    async def user_media(
        self,
        user_id: str,
        offset: int,
        limit: int,
        order_by: str = "created_ts",
        descending: bool = True,
    ) -> tuple[list[dict], int]:
        """The user's uploads, newest first by default; `order_by` is one of
        USER_MEDIA_ORDERS (checked by the caller, and again here)."""
        column = USER_MEDIA_ORDERS[USER_MEDIA_ORDERS.index(order_by)]
        direction = "DESC" if descending else "ASC"
        rows = await self.db.fetch(
            "SELECT media_id, media_type, media_length, upload_name, created_ts,"
            " last_access_ts, quarantined_by, safe_from_quarantine FROM local_media"
            " WHERE user_id = $1 AND uploaded_ts IS NOT NULL"
            f" ORDER BY {column} {direction} NULLS LAST, media_id OFFSET $2 LIMIT $3",
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
        self,
        offset: int,
        limit: int,
        order_by: str,
        descending: bool,
        search_term: str | None = None,
    ) -> tuple[list[dict], int]:
        """Per user: how many local files and bytes; `search_term` matches the user ID or
        display name."""
        # order_by is checked against this mapping, never interpolated from input.
        column = {
            "user_id": "m.user_id",
            "displayname": "p.displayname",
            "media_count": "media_count",
        }.get(order_by, "media_length")
        direction = "DESC" if descending else "ASC"
        pattern = like_pattern(search_term) if search_term else None
        # Media the server owns itself (URL preview images) is nobody's usage.
        where = (
            " WHERE m.uploaded_ts IS NOT NULL AND m.user_id LIKE '@%'"
            " AND ($1::text IS NULL OR m.user_id ILIKE $1 OR p.displayname ILIKE $1)"
        )
        rows = await self.db.fetch(
            "SELECT m.user_id, p.displayname, count(*) AS media_count,"
            " coalesce(sum(m.media_length), 0)::bigint AS media_length,"
            " count(*) OVER () AS total"
            f" FROM local_media m LEFT JOIN profiles p ON p.user_id = m.user_id{where}"
            " GROUP BY m.user_id, p.displayname"
            f" ORDER BY {column} {direction} NULLS LAST, m.user_id OFFSET $2 LIMIT $3",
            pattern,
            offset,
            limit,
        )
        if rows:
            total = rows[0]["total"]
        else:
            total = await self.db.fetchval(
                "SELECT count(DISTINCT m.user_id) FROM local_media m"
                f" LEFT JOIN profiles p ON p.user_id = m.user_id{where}",
                pattern,
            )
        keys = ("user_id", "displayname", "media_count", "media_length")
        return [{k: r[k] for k in keys} for r in rows], total

    # --- admin selections ----------------------------------------------------------------

    async def set_protected(self, media_id: str, protected: bool) -> bool:
        """Marks local media safe from quarantine (or not); False for unknown media."""
        status = await self.db.execute(
            "UPDATE local_media SET safe_from_quarantine = $2 WHERE media_id = $1",
            media_id,
            protected,
        )
        return not status.endswith(" 0")

    async def local_media_to_delete(
        self, before_ts: int, size_gt: int, keep_profiles: bool, user_id: str | None = None
    ) -> list[str]:
        """Local media last used (or uploaded) before `before_ts` and larger than
        `size_gt` bytes, of one user or all; never media protected from quarantine, and
        with `keep_profiles` never a user's or a room's avatar."""
        prefix = f"mxc://{self.server_name}/"
        rows = await self.db.fetch(
            "SELECT m.media_id FROM local_media m WHERE m.uploaded_ts IS NOT NULL"
            " AND coalesce(m.last_access_ts, m.created_ts) < $1"
            " AND coalesce(m.media_length, 0) > $2 AND NOT m.safe_from_quarantine"
            " AND ($5::text IS NULL OR m.user_id = $5)"
            " AND NOT ($3 AND EXISTS (SELECT 1 FROM profiles p"
            "   WHERE p.avatar_url = $4 || m.media_id))"
            " AND NOT ($3 AND EXISTS (SELECT 1 FROM current_state cs"
            "   JOIN events e ON e.event_id = cs.event_id"
            "   WHERE cs.type = 'm.room.avatar' AND cs.state_key = ''"
            "   AND e.json::json -> 'content' ->> 'url' = $4 || m.media_id))"
            " ORDER BY m.created_ts",
            before_ts,
            size_gt,
            keep_profiles,
            prefix,
            user_id,
        )
        return [r["media_id"] for r in rows]

    async def user_media_ids(self, user_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT media_id FROM local_media WHERE user_id = $1 AND uploaded_ts IS NOT NULL",
            user_id,
        )
        return [r["media_id"] for r in rows]

    # --- remote media (filled by the federation fetcher) -------------------------------

    async def get_remote(self, origin: str, media_id: str) -> MediaInfo | None:
        row = await self.db.fetchrow(
            "SELECT media_id, media_type, media_length, upload_name, created_ts, quarantined_by,"
            " legacy_access FROM remote_media WHERE origin = $1 AND media_id = $2",
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
            legacy_access=row["legacy_access"],
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
        # A quarantine recorded while the fetch was under way still applies.
        await self.db.execute(
            "INSERT INTO remote_media (origin, media_id, media_type, media_length,"
            " upload_name, created_ts, legacy_access, quarantined_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT quarantined_by"
            "   FROM remote_media_quarantine WHERE origin = $1 AND media_id = $2))"
            " ON CONFLICT (origin, media_id) DO NOTHING",
            origin,
            media_id,
            media_type,
            length,
            upload_name,
            now_ms,
            self.legacy_open,
        )

    async def delete_remote_cached_before(
        self, before_ms: int, limit: int
    ) -> list[tuple[str, str, list[str]]]:
        """Forgets up to `limit` remote files cached before `before_ms`; for each,
        (origin, media ID, its thumbnails' storage keys). A quarantine outlives the cache
        entry, so that the file is not fetched again."""
        async with self.db.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM remote_media WHERE (origin, media_id) IN (SELECT origin, media_id"
                "   FROM remote_media WHERE created_ts < $1 ORDER BY created_ts LIMIT $2)"
                " RETURNING origin, media_id, quarantined_by",
                before_ms,
                limit,
            )
            origins = [r["origin"] for r in rows]
            media_ids = [r["media_id"] for r in rows]
            await conn.execute(
                "INSERT INTO remote_media_quarantine (origin, media_id, quarantined_by)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
                " AS t(origin, media_id, quarantined_by) WHERE t.quarantined_by IS NOT NULL"
                " ON CONFLICT (origin, media_id) DO NOTHING",
                origins,
                media_ids,
                [r["quarantined_by"] for r in rows],
            )
            thumbs = await conn.fetch(
                "DELETE FROM media_thumbnails m USING unnest($1::text[], $2::text[])"
                " AS t(origin, media_id) WHERE m.origin = t.origin AND m.media_id = t.media_id"
                " RETURNING m.origin, m.media_id, m.storage_key",
                origins,
                media_ids,
            )
        keys: dict[tuple[str, str], list[str]] = {}
        for t in thumbs:
            keys.setdefault((t["origin"], t["media_id"]), []).append(t["storage_key"])
        return [(o, m, keys.get((o, m), [])) for o, m in zip(origins, media_ids, strict=True)]

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

    # --- URL preview cache -------------------------------------------------------------

    async def get_preview(self, url: str, now_ms: int, want_bucket: int | None) -> dict | None:
        """A fresh cached preview of `url`: the one of `want_bucket` if kept, else the newest."""
        row = await self.db.fetchval(
            "SELECT og_json FROM media_url_previews WHERE url = $1 AND expires_ts > $2"
            " ORDER BY (bucket = $3) DESC, fetched_ts DESC LIMIT 1",
            url,
            now_ms,
            -1 if want_bucket is None else want_bucket,
        )
        return orjson.loads(row) if row is not None else None

    async def put_preview(
        self,
        url: str,
        bucket: int,
        og: dict,
        image_media_id: str | None,
        now_ms: int,
        expires_ms: int,
    ) -> tuple[dict, list[str]]:
        """Caches a preview; (the preview to answer, image media IDs no longer referenced).

        If another worker cached a fresh preview of the same URL meanwhile, that one is
        kept and answered, and our image is the one to delete; an expired entry of the same
        period is replaced and its image is to be deleted.
        """
        async with self.db.acquire() as conn, conn.transaction():
            old = await conn.fetchrow(
                "SELECT og_json, image_media_id, expires_ts FROM media_url_previews"
                " WHERE url = $1 AND bucket = $2 FOR UPDATE",
                url,
                bucket,
            )
            if old is not None and old["expires_ts"] > now_ms:
                return orjson.loads(old["og_json"]), [image_media_id] if image_media_id else []
            await conn.execute(
                "INSERT INTO media_url_previews (url, bucket, og_json, image_media_id,"
                " fetched_ts, expires_ts) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (url, bucket) DO UPDATE SET og_json = EXCLUDED.og_json,"
                " image_media_id = EXCLUDED.image_media_id, fetched_ts = EXCLUDED.fetched_ts,"
                " expires_ts = EXCLUDED.expires_ts",
                url,
                bucket,
                orjson.dumps(og).decode(),
                image_media_id,
                now_ms,
                expires_ms,
            )
        replaced = old["image_media_id"] if old is not None else None
        return og, [replaced] if replaced else []

    async def delete_previews_expired_before(self, before_ms: int) -> list[str]:
        """Drops previews that expired before `before_ms`; their images' media IDs."""
        rows = await self.db.fetch(
            "DELETE FROM media_url_previews WHERE expires_ts <= $1 RETURNING image_media_id",
            before_ms,
        )
        return [r["image_media_id"] for r in rows if r["image_media_id"]]
