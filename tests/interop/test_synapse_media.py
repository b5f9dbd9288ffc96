"""Media across our server and Synapse: each side's users download what the other side's
users uploaded (authenticated federation media: /_matrix/federation/v1/media/download)."""

from __future__ import annotations

import io
import os

from nio import MemoryDownloadResponse, ThumbnailResponse, UploadResponse
from PIL import Image


async def _upload(client, payload: bytes, content_type: str, filename: str) -> str:
    resp, _ = await client.upload(
        lambda *_: payload, content_type=content_type, filename=filename, filesize=len(payload)
    )
    assert isinstance(resp, UploadResponse), resp
    return resp.content_uri


async def test_media_downloads_both_ways(ours, synapse_peer):
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    try:
        ours_file = os.urandom(150_000)
        theirs_file = os.urandom(120_000)
        ours_uri = await _upload(alice, ours_file, "application/pdf", "note é.pdf")
        theirs_uri = await _upload(bob, theirs_file, "application/zip", "plans.zip")
        assert ours_uri.startswith(f"mxc://{ours.server_name}/")
        assert theirs_uri.startswith(f"mxc://{synapse_peer.server_name}/")

        got = await bob.download(ours_uri)
        assert isinstance(got, MemoryDownloadResponse), got
        assert (got.body, got.content_type) == (ours_file, "application/pdf")
        got = await alice.download(theirs_uri)
        assert isinstance(got, MemoryDownloadResponse), got
        assert (got.body, got.content_type) == (theirs_file, "application/zip")
        assert got.filename == "plans.zip"
        cached = await ours.db.fetchval("SELECT media_length FROM remote_media")
        assert cached == len(theirs_file)
    finally:
        await bob.close()


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def test_thumbnails_both_ways(ours, synapse_peer):
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    try:
        ours_uri = await _upload(alice, _png(640, 480), "image/png", "a.png")
        theirs_uri = await _upload(bob, _png(800, 600), "image/png", "b.png")
        # Each side thumbnails the other's image (fetched over federation, or asked of
        # the origin's thumbnail endpoint), smaller than the original, same shape.
        for client, uri in ((bob, ours_uri), (alice, theirs_uri)):
            server, media_id = uri[len("mxc://") :].split("/", 1)
            got = await client.thumbnail(server, media_id, 96, 96)
            assert isinstance(got, ThumbnailResponse), got
            assert got.content_type in ("image/png", "image/jpeg")
            import io

            from PIL import Image

            image = Image.open(io.BytesIO(got.body))
            assert max(image.size) <= 800 and min(image.size) >= 96 // 2
    finally:
        await bob.close()
