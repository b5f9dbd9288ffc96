"""Where media bytes live: a storage interface with a local-disk and an S3-compatible backend.

Keys are relative paths built by homeserver.media.ids from validated IDs only. Every
backend takes finished files from the scratch directory (uploads are streamed there
first, so a failed or oversized upload never reaches the backend) and hands bytes back as
an async stream of chunks. File I/O runs in threads: nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

CHUNK_SIZE = 256 * 1024


class MediaBackend(Protocol):
    async def prepare(self) -> None:
        """Makes the storage ready at start-up (an S3 bucket that may not exist yet)."""

    async def put_file(self, key: str, path: Path) -> None:
        """Stores the file at `path` under `key`; the file is consumed (moved or deleted)."""

    def local_path(self, key: str) -> Path | None:
        """A path the server may read directly (sendfile), or None for remote storage."""

    def read_chunks(self, key: str) -> AsyncIterator[bytes]:
        """The stored bytes, in chunks; FileNotFoundError if the key is absent."""

    async def fetch_to(self, key: str, dest: Path) -> None:
        """Copies the stored bytes into `dest` (for thumbnailing from object storage)."""

    async def delete(self, key: str) -> None:
        """Removes `key`; absent keys are not an error."""


class StreamTooLarge(Exception):
    """More bytes arrived than the limit allows; nothing was kept."""


async def stream_to_file(
    dest: Path, read: Callable[[int], Awaitable[bytes]], max_size: int
) -> tuple[int, str]:
    """Writes what `read(n)` yields (b"" at the end) into a new file `dest`, in chunks;
    (length, sha256 hex). Stops with StreamTooLarge past `max_size`. On any failure the
    partial file is removed: nothing half-received is ever kept."""
    digest = hashlib.sha256()
    length = 0

    def write(f, chunk: bytes) -> None:
        f.write(chunk)
        digest.update(chunk)

    f = await _run(open, dest, "xb")
    try:
        try:
            while chunk := await read(CHUNK_SIZE):
                length += len(chunk)
                if length > max_size:
                    raise StreamTooLarge()
                await _run(write, f, chunk)
        finally:
            await _run(f.close)
    except BaseException:
        await _run(_unlink_quietly, dest)
        raise
    return length, digest.hexdigest()


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _run(fn, *args):
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


class LocalBackend:
    def __init__(self, root: Path):
        self.root = root.resolve()

    async def prepare(self) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.root.mkdir(parents=True, exist_ok=True)
        )

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys come from validated IDs; this is a second wall against traversal.
        if not path.is_relative_to(self.root):
            raise ValueError("storage key escapes the media store")
        return path

    async def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)

        def move() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)

        await _run(move)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def read_chunks(self, key: str) -> AsyncIterator[bytes]:
        f = await _run(open, self._path(key), "rb")
        try:
            while chunk := await _run(f.read, CHUNK_SIZE):
                yield chunk
        finally:
            await _run(f.close)

    async def fetch_to(self, key: str, dest: Path) -> None:
        await _run(shutil.copyfile, self._path(key), dest)

    async def delete(self, key: str) -> None:
        await _run(_unlink_quietly, self._path(key))


def build_backend(config, store_path: Path) -> MediaBackend:
    if config.backend == "s3":
        from homeserver.media.s3 import S3Backend

        return S3Backend(config.s3)
    return LocalBackend(store_path)
