"""The S3-compatible backend (AWS S3, MinIO, Ceph RGW, Garage, ...), via boto3 in threads.

boto3 is synchronous; each call runs in the default executor so the event loop never
waits on the network. Uploads use boto3's managed transfer (multipart for large files),
downloads are streamed in chunks, never read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from homeserver.media.backends import CHUNK_SIZE


def _run(fn, *args, **kwargs):
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(None, lambda: fn(*args, **kwargs))


class S3Backend:
    def __init__(self, config):
        import boto3
        from botocore.config import Config as BotoConfig

        self.bucket = config.bucket
        self.prefix = config.prefix + "/" if config.prefix else ""
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def put_file(self, key: str, path: Path) -> None:
        try:
            await _run(self.client.upload_file, str(path), self.bucket, self._key(key))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def local_path(self, key: str) -> Path | None:
        return None

    async def _get_body(self, key: str):
        from botocore.exceptions import ClientError

        try:
            response = await _run(self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from None
            raise
        return response["Body"]

    async def read_chunks(self, key: str) -> AsyncIterator[bytes]:
        body = await self._get_body(key)
        try:
            while chunk := await _run(body.read, CHUNK_SIZE):
                yield chunk
        finally:
            await _run(body.close)

    async def fetch_to(self, key: str, dest: Path) -> None:
        f = await _run(open, dest, "wb")
        try:
            async for chunk in self.read_chunks(key):
                await _run(f.write, chunk)
        finally:
            await _run(f.close)

    async def delete(self, key: str) -> None:
        await _run(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def prepare(self) -> None:
        """Creates the bucket when absent (handy for fresh MinIO set-ups and tests)."""
        from botocore.exceptions import ClientError

        try:
            await _run(self.client.head_bucket, Bucket=self.bucket)
        except ClientError:
            await _run(self.client.create_bucket, Bucket=self.bucket)
