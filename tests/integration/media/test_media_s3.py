"""The S3-compatible backend against a real S3 API server (moto's, on loopback)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest
import pytest_asyncio
from nio import MemoryDownloadResponse, ResizingMethod, ThumbnailResponse, UploadResponse

from tests.integration.media.helpers import image_size, png_bytes, split_mxc, stored_files

pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

PORTS = range(18500, 18511)
BUCKET = "media-test"


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 18500-18510 for the S3 server")


async def _wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the S3 server did not start")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def s3_endpoint():
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _wait_listening(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


def _s3_config(endpoint: str, prefix: str) -> dict:
    return {
        "backend": "s3",
        "s3": {
            "bucket": BUCKET,
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "access_key_id": "testing",
            "secret_access_key": "testing",
            "prefix": prefix,
        },
    }


def _objects(endpoint: str, prefix: str) -> dict[str, int]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}


async def test_s3_round_trip_thumbnails_limits_and_delete(make_server, s3_endpoint):
    prefix = os.urandom(6).hex()  # each test run its own corner of the bucket
    media = {**_s3_config(s3_endpoint, prefix), "max_upload_size": 4 * 1024 * 1024}
    server = await make_server(media=media, admins=["@boss:test.local"])
    client = await server.client("boss")
    objects = lambda: asyncio.to_thread(_objects, s3_endpoint, prefix)  # noqa: E731

    payload = os.urandom(3 * 1024 * 1024 + 7)
    resp, _ = await client.upload(
        lambda *_: payload, content_type="video/mp4", filename="clip.mp4", filesize=len(payload)
    )
    assert isinstance(resp, UploadResponse), resp
    down = await client.download(resp.content_uri)
    assert isinstance(down, MemoryDownloadResponse) and down.body == payload
    assert down.filename == "clip.mp4"
    stored = await objects()
    assert list(stored.values()) == [len(payload)]
    # Nothing stays on local disk: the scratch copy went to the bucket.
    assert stored_files(server) == []

    # Too large: refused, and neither the bucket nor the disk keeps anything.
    big, _ = await client.upload(lambda *_: os.urandom(4 * 1024 * 1024 + 1))
    assert big.status_code == "M_TOO_LARGE"
    assert len(await objects()) == 1 and stored_files(server) == []

    # Thumbnails are made from the object and stored back in the bucket.
    image, _ = await client.upload(lambda *_: png_bytes(640, 480), content_type="image/png")
    sn, image_id = split_mxc(image.content_uri)
    thumb = await client.thumbnail(sn, image_id, 96, 96, ResizingMethod.crop)
    assert isinstance(thumb, ThumbnailResponse), thumb
    assert image_size(thumb.body) == (96, 96)
    assert any(key.startswith(f"{prefix}/thumbnails/") for key in await objects())

    # Deleting removes the object.
    _, media_id = split_mxc(resp.content_uri)
    status, _ = await server.request(
        "DELETE", f"/_synapse/admin/v1/media/{sn}/{media_id}", token=client.access_token
    )
    assert status == 200
    assert all(size != len(payload) for size in (await objects()).values())
