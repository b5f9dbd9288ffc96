"""The media repository service: uploads, lookups, thumbnails, deletion.

HTTP handlers (routes/) stay thin; everything that touches bytes or metadata is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from homeserver.http.errors import MatrixError, limit_exceeded, not_found, too_large
from homeserver.http.request import body_reader
from homeserver.media import ids
from homeserver.media.backends import StreamTooLarge, build_backend, stream_to_file
from homeserver.media.headers import clean_media_type, content_disposition, media_headers
from homeserver.media.preview import UrlPreviewService
from homeserver.media.remote import RemoteMediaFetcher
from homeserver.media.singleflight import SingleFlight
from homeserver.media.thumbnailer import (
    THUMBNAILABLE,
    CannotThumbnail,
    Spec,
    TooLarge,
    make_thumbnails,
)
from storage.media import Completion, MediaInfo, MediaStore, ThumbnailInfo

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

MAX_TIMEOUT_MS = 60_000
_PENDING_POLL_S = 0.2
_PURGE_BATCH = 500
# Preview images stay this long after their preview expires: clients that showed the
# preview may still fetch the image.
_PREVIEW_IMAGE_GRACE_MS = 24 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


class MediaRepository:
    def __init__(self, hs: Homeserver, remote_fetcher: RemoteMediaFetcher | None = None):
        self.hs = hs
        self.server_name = hs.server_name
        self.config = hs.config.media
        self.store_path = self.config.store_path or hs.config.data_dir / "media_store"
        # Scratch space for uploads in flight and thumbnails being made; same filesystem
        # as the local store so finishing an upload is a rename.
        self.scratch = self.store_path / "tmp"
        self.backend = build_backend(self.config, self.store_path)
        self.store = MediaStore(
            hs.db, hs.server_name, legacy_open=not self.config.legacy_endpoints_frozen
        )
        # Pillow releases the GIL while resampling; two threads suit the 2-core target.
        self._thumbnail_pool = ThreadPoolExecutor(2, thread_name_prefix="thumbnail")
        self._inflight: dict[tuple, asyncio.Future] = {}
        # Handed in by the composition root (federation's fetcher) when federation is
        # configured; None answers remote mxc:// URIs 404.
        self.remote_fetcher = remote_fetcher
        # One fetch per remote file however many clients ask for it at once.
        self.remote_fetches = SingleFlight(hs.run_in_background)
        self.previews = UrlPreviewService(self)

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.scratch.mkdir(parents=True, exist_ok=True)
        )
        await self.backend.prepare()

    async def stop(self) -> None:
        self._thumbnail_pool.shutdown(wait=False, cancel_futures=True)

    async def reap_expired(self, now: int) -> None:
        """Deletes unused async-upload reservations past their unused_expires_at, and
        cached URL previews (with their images) well past their expiry. Run by the
        housekeeping runner (homeserver/housekeeping)."""
        await self.store.delete_expired_reservations(now)
        for media_id in await self.store.delete_previews_expired_before(
            now - _PREVIEW_IMAGE_GRACE_MS
        ):
            await self.delete_local(media_id)

    # --- receiving bytes ---------------------------------------------------------------

    def scratch_file(self, prefix: str) -> Path:
        return self.scratch / f"{prefix}-{secrets.token_hex(12)}"

    async def _receive(self, request: web.Request) -> tuple[Path, int, str]:
        """Streams the request body to a scratch file; (path, length, sha256 hex).

        Never holds the body in memory, stops at max_upload_size, and removes the partial
        file whatever goes wrong (limit, client disconnect, disk full).
        """
        limit = self.config.max_upload_size
        if request.content_length is not None and request.content_length > limit:
            raise too_large("Upload is larger than the server allows")
        path = self.scratch_file("upload")
        try:
            length, sha256 = await stream_to_file(path, body_reader(request), limit)
        except StreamTooLarge:
            raise too_large("Upload is larger than the server allows") from None
        return path, length, sha256

    async def discard(self, path: Path) -> None:
        def unlink() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        await asyncio.get_running_loop().run_in_executor(None, unlink)

    async def _store_file(self, key: str, path: Path) -> None:
        try:
            await self.backend.put_file(key, path)
        except BaseException:
            await self.discard(path)
            raise

    # --- uploads -----------------------------------------------------------------------

    async def upload(
        self, user_id: str, request: web.Request, media_type: str | None, filename: str | None
    ) -> str:
        media_type = clean_media_type(media_type)
        path, length, sha256 = await self._receive(request)
        media_id = ids.new_media_id()
        await self._store_file(ids.local_key(media_id), path)
        try:
            await self.store.insert_uploaded(
                media_id, user_id, media_type, length, filename, sha256, now_ms()
            )
        except BaseException:
            await self.backend.delete(ids.local_key(media_id))
            raise
        self._after_upload(media_id, media_type)
        return f"mxc://{self.server_name}/{media_id}"

    async def create(self, user_id: str) -> tuple[str, int]:
        """Reserves a media ID for an async upload; (mxc URI, unused_expires_at)."""
        media_id = ids.new_media_id()
        now = now_ms()
        expires = now + self.config.pending_upload_lifetime_s * 1000
        if not await self.store.reserve(
            media_id, user_id, now, expires, self.config.max_pending_uploads
        ):
            # The spec's answer to too many pending uploads (POST /create): 429.
            raise limit_exceeded(60_000)
        return f"mxc://{self.server_name}/{media_id}", expires

    async def upload_reserved(
        self,
        user_id: str,
        server_name: str,
        media_id: str,
        request: web.Request,
        media_type: str | None,
        filename: str | None,
    ) -> None:
        ids.check_server_name(server_name)
        ids.check_media_id(media_id)
        if server_name != self.server_name:
            raise not_found("Unknown media ID")
        # Checked before reading the body, so a refused upload writes nothing.
        reservation = await self.store.get_reservation(media_id, now_ms())
        if reservation is None:
            raise not_found("Unknown or expired media ID")
        owner, uploaded = reservation
        if owner != user_id:
            raise MatrixError(403, "M_FORBIDDEN", "This media ID was created by another user")
        if uploaded:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        media_type = clean_media_type(media_type)
        path, length, sha256 = await self._receive(request)
        try:
            # The bytes go in place only while the reservation row is locked and still
            # empty: of two concurrent PUTs, exactly one stores its file.
            outcome = await self.store.complete_reservation(
                media_id,
                media_type,
                length,
                filename,
                sha256,
                now_ms(),
                lambda: self.backend.put_file(ids.local_key(media_id), path),
            )
        finally:
            await self.discard(path)  # moved into the store already, unless we lost
        if outcome is Completion.TAKEN:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        if outcome is Completion.GONE:
            raise not_found("Unknown or expired media ID")
        self._after_upload(media_id, media_type)

    async def store_server_media(self, path: Path, media_type: str, length: int, sha256: str):
        """Stores a file the server itself obtained (a URL preview's image) as local media
        owned by the server; its media ID."""
        media_id = ids.new_media_id()
        await self._store_file(ids.local_key(media_id), path)
        try:
            await self.store.insert_uploaded(
                media_id, self.server_name, media_type, length, None, sha256, now_ms()
            )
        except BaseException:
            await self.backend.delete(ids.local_key(media_id))
            raise
        self._after_upload(media_id, media_type)
        return media_id

    def _after_upload(self, media_id: str, media_type: str) -> None:
        if media_type.split(";")[0].strip().lower() in THUMBNAILABLE:
            self.hs.run_in_background(self._pregenerate(media_id))

    async def _pregenerate(self, media_id: str) -> None:
        info = await self.store.get_local(media_id)
        if info is None:
            return
        sizes = [(w, h, m, False) for w, h, m in self.config.thumbnail_sizes]
        try:
            await self._generate(info, sizes)
        except MatrixError:
            # Not decodable or too large: clients get the error when they ask.
            logger.debug("no thumbnails for %s", media_id)
        except Exception:
            logger.exception("pre-generating thumbnails for %s failed", media_id)

    # --- lookups -----------------------------------------------------------------------

    async def resolve(self, server_name: str, media_id: str, timeout_ms: int = 20_000) -> MediaInfo:
        """The media's metadata, waiting up to timeout_ms for an async upload to arrive."""
        ids.check_server_name(server_name)
        ids.check_media_id(media_id)
        if server_name == self.server_name:
            info = await self._resolve_local(media_id, min(timeout_ms, MAX_TIMEOUT_MS))
        else:
            info = await self._resolve_remote(server_name, media_id)
        if info.quarantined:
            raise not_found("Media not found")
        return info

    async def _resolve_local(self, media_id: str, timeout_ms: int) -> MediaInfo:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            info = await self.store.get_local(media_id)
            if info is None:
                raise not_found("Media not found")
            if info.uploaded:
                return info
            if info.expires_ts is not None and info.expires_ts <= now_ms():
                raise not_found("Media not found")  # an async upload that never came
            # Polling the database (not an in-process event) so that an upload finished
            # on another worker process is seen too.
            if time.monotonic() >= deadline:
                raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
            await asyncio.sleep(_PENDING_POLL_S)

    async def _resolve_remote(self, origin: str, media_id: str) -> MediaInfo:
        info = await self.store.get_remote(origin, media_id)
        if info is not None:
            return info
        if self.remote_fetcher is None:
            raise not_found("Remote media is not available on this server")
        if await self.store.remote_quarantined(origin, media_id):
            raise not_found("Media not found")
        fetcher = self.remote_fetcher
        return await self.remote_fetches.run(
            (origin, media_id), lambda: self._fetch_remote(fetcher, origin, media_id)
        )

    async def _fetch_remote(
        self, fetcher: RemoteMediaFetcher, origin: str, media_id: str
    ) -> MediaInfo:
        info = await self.store.get_remote(origin, media_id)
        if info is not None:
            return info  # cached by a fetch that finished just before ours started
        path = self.scratch_file("remote")
        try:
            remote = await fetcher.fetch(origin, media_id, path, self.config.max_upload_size)
        except BaseException as e:
            await self.discard(path)
            if isinstance(e, StreamTooLarge):
                raise MatrixError(502, "M_TOO_LARGE", "Remote content is too large") from None
            if isinstance(e, LookupError):
                raise not_found("Media not found") from None
            raise
        await self._store_file(ids.remote_key(origin, media_id), path)
        await self.store.insert_remote(
            origin,
            media_id,
            clean_media_type(remote.media_type),
            remote.length,
            remote.upload_name,
            now_ms(),
        )
        stored = await self.store.get_remote(origin, media_id)
        if stored is None:  # deleted (purged, quarantined) between insert and read
            raise not_found("Media not found")
        return stored

    def _key(self, info: MediaInfo) -> str:
        if info.origin == self.server_name:
            return ids.local_key(info.media_id)
        return ids.remote_key(info.origin, info.media_id)

    # --- serving -----------------------------------------------------------------------

    async def respond(
        self, request: web.Request, info: MediaInfo, filename: str | None
    ) -> web.StreamResponse:
        media_type = info.media_type or "application/octet-stream"
        disposition = content_disposition(media_type, filename or info.upload_name)
        return await self._send(request, self._key(info), media_type, disposition, None)

    async def _send(
        self,
        request: web.Request,
        key: str,
        media_type: str,
        disposition: str,
        length: int | None,
    ) -> web.StreamResponse:
        headers = media_headers(media_type, disposition, length)
        path = self.backend.local_path(key)
        if path is not None:
            # sendfile from local disk; aiohttp sets Content-Length and handles Range.
            return web.FileResponse(path, headers=headers)
        chunks = self.backend.read_chunks(key)
        try:
            first = await anext(chunks, b"")
        except FileNotFoundError:
            raise not_found("Media not found") from None
        # Headers (CORS included) go on before prepare(): after it they cannot change.
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        await resp.write(first)
        async for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def federation_file(self, media_id: str, timeout_ms: int = 0):
        """(MediaInfo, chunk iterator) of local media, for the federation server."""
        info = await self.resolve(self.server_name, media_id, timeout_ms)
        return info, self.backend.read_chunks(self._key(info))

    async def cached(self, server_name: str, media_id: str) -> MediaInfo | None:
        """What is stored here under an mxc:// URI, without fetching or waiting."""
        ids.check_server_name(server_name)
        ids.check_media_id(media_id)
        if server_name == self.server_name:
            info = await self.store.get_local(media_id)
        else:
            info = await self.store.get_remote(server_name, media_id)
        return info if info is not None and info.uploaded and not info.quarantined else None

    # --- thumbnails --------------------------------------------------------------------

    def _bucket(self, width: int, height: int, method: str) -> tuple[int, int]:
        """The smallest configured size that is at least as large as asked, so that most
        requests hit pre-generated thumbnails; otherwise exactly what was asked."""
        fits = [
            (w, h)
            for w, h, m in self.config.thumbnail_sizes
            if m == method and w >= width and h >= height
        ]
        return min(fits, key=lambda s: s[0] * s[1]) if fits else (width, height)

    async def _thumbnail_for(
        self, info: MediaInfo, width: int, height: int, method: str, animated: bool
    ) -> ThumbnailInfo:
        """The cached thumbnail for this request, made now if there is none yet."""
        if (info.media_type or "").split(";")[0].strip().lower() not in THUMBNAILABLE:
            raise MatrixError(
                400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content"
            )
        width, height = self._bucket(width, height, method)
        thumb = await self.store.get_thumbnail(
            info.origin, info.media_id, width, height, method, animated
        )
        if thumb is None:
            (thumb,) = await self._generate(info, [(width, height, method, animated)])
        return thumb

    async def thumbnail(
        self,
        request: web.Request,
        info: MediaInfo,
        width: int,
        height: int,
        method: str,
        animated: bool,
    ) -> web.StreamResponse:
        thumb = await self._thumbnail_for(info, width, height, method, animated)
        disposition = content_disposition(
            thumb.media_type, f"thumbnail.{thumb.storage_key.rsplit('.', 1)[-1]}", True
        )
        return await self._send(request, thumb.storage_key, thumb.media_type, disposition, None)

    async def federation_thumbnail(
        self, media_id: str, width: int, height: int, method: str, timeout_ms: int = 0
    ):
        """(ThumbnailInfo, chunk iterator) of local media, for the federation server."""
        info = await self.resolve(self.server_name, media_id, timeout_ms)
        thumb = await self._thumbnail_for(info, width, height, method, False)
        return thumb, self.backend.read_chunks(thumb.storage_key)

    async def _generate(self, info: MediaInfo, sizes: list[tuple]) -> list[ThumbnailInfo]:
        """Makes (or joins the making of) thumbnails; one decode for all `sizes`."""
        keys = [(info.origin, info.media_id, *size) for size in sizes]
        waiting = [self._inflight.get(k) for k in keys]
        if all(w is not None for w in waiting):
            return [await asyncio.shield(w) for w in waiting if w is not None]
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in keys]
        for key, fut in zip(keys, futures, strict=True):
            self._inflight[key] = fut
        try:
            made = await self._make(info, sizes)
            for fut, thumb in zip(futures, made, strict=True):
                fut.set_result(thumb)
            return made
        except BaseException as e:
            for fut in futures:
                if isinstance(e, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(e)
                    fut.exception()  # retrieved: no "never retrieved" warning when unshared
            raise
        finally:
            for key in keys:
                self._inflight.pop(key, None)

    async def _make(self, info: MediaInfo, sizes: list[tuple]) -> list[ThumbnailInfo]:
        loop = asyncio.get_running_loop()
        source = self.backend.local_path(self._key(info))
        fetched = None
        if source is None:
            fetched = source = self.scratch_file("source")
            await self.backend.fetch_to(self._key(info), source)
        specs = [Spec(w, h, m, a, self.scratch_file("thumb")) for w, h, m, a in sizes]
        try:
            made = await loop.run_in_executor(
                self._thumbnail_pool,
                make_thumbnails,
                source,
                specs,
                self.config.max_thumbnail_pixels,
            )
        except TooLarge:
            raise MatrixError(413, "M_TOO_LARGE", "Content is too large to thumbnail") from None
        except (CannotThumbnail, FileNotFoundError):
            raise MatrixError(
                400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content"
            ) from None
        finally:
            if fetched is not None:
                await self.discard(fetched)
        results = []
        try:
            for (w, h, method, animated), spec, m in zip(sizes, specs, made, strict=True):
                key = ids.thumbnail_key(info.origin, info.media_id, w, h, method, animated, m.ext)
                await self.backend.put_file(key, spec.dest)
                thumb = ThumbnailInfo(
                    m.width, m.height, method, animated, m.media_type, m.length, key
                )
                await self.store.insert_thumbnail(info.origin, info.media_id, w, h, thumb)
                results.append(thumb)
        finally:
            for spec in specs:
                await self.discard(spec.dest)
        return results

    # --- admin -------------------------------------------------------------------------

    async def delete_local(self, media_id: str) -> bool:
        info = await self.store.get_local(media_id)
        if info is None:
            return False
        thumbnail_keys = await self.store.delete_local(media_id)
        for key in [ids.local_key(media_id), *thumbnail_keys]:
            await self.backend.delete(key)
        return True

    async def delete_local_many(self, media_ids: list[str]) -> list[str]:
        """Deletes each local item (file, thumbnails, rows); the IDs that existed."""
        return [media_id for media_id in media_ids if await self.delete_local(media_id)]

    async def purge_remote_cache(self, before_ms: int) -> int:
        """Deletes remote files cached before `before_ms` (fetched again when asked for);
        how many. In batches, so no transaction grows with the size of the cache."""
        deleted = 0
        while True:
            batch = await self.store.delete_remote_cached_before(before_ms, _PURGE_BATCH)
            for origin, media_id, thumbnail_keys in batch:
                for key in [ids.remote_key(origin, media_id), *thumbnail_keys]:
                    await self.backend.delete(key)
            deleted += len(batch)
            if len(batch) < _PURGE_BATCH:
                return deleted
