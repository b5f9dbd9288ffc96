"""Media repository: uploads and downloads with matrix-nio, async uploads, limits, safety."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import orjson
from nio import DownloadError, MemoryDownloadResponse, UploadResponse
from nio.crypto.attachments import decrypt_attachment

from tests.integration.media.helpers import png_bytes, raw, split_mxc, stored_files, wait_for


async def test_multi_megabyte_round_trip_is_byte_identical(server):
    client = await server.client()
    payload = os.urandom(5 * 1024 * 1024 + 123)

    def chunks(_got_429, _got_timeouts):
        # An async generator: nio streams it, as a client sending a large file does.
        async def gen():
            for i in range(0, len(payload), 64 * 1024):
                yield payload[i : i + 64 * 1024]

        return gen()

    resp, _ = await client.upload(
        chunks, content_type="application/pdf", filename="report.pdf", filesize=len(payload)
    )
    assert isinstance(resp, UploadResponse), resp
    assert split_mxc(resp.content_uri)[0] == server.server_name

    down = await client.download(resp.content_uri)
    assert isinstance(down, MemoryDownloadResponse), down
    assert down.body == payload
    assert down.filename == "report.pdf"
    assert down.content_type == "application/pdf"

    named = await client.download(resp.content_uri, filename="other.pdf")
    assert named.body == payload and named.filename == "other.pdf"

    # The bytes sit in the store once, and nothing is left in the scratch space.
    files = stored_files(server)
    assert len(files) == 1 and files[0].stat().st_size == len(payload)


async def test_encrypted_attachment_round_trip(server):
    client = await server.client()
    plaintext = os.urandom(300_000)
    resp, keys = await client.upload(
        lambda *_: plaintext, filename="secret.bin", encrypt=True, filesize=len(plaintext)
    )
    assert isinstance(resp, UploadResponse), resp
    down = await client.download(resp.content_uri)
    assert isinstance(down, MemoryDownloadResponse), down
    assert down.body != plaintext  # the server only ever saw ciphertext
    decrypted = decrypt_attachment(
        down.body, keys["key"]["k"], keys["hashes"]["sha256"], keys["iv"]
    )
    assert decrypted == plaintext


async def test_unknown_media_is_not_found(server):
    client = await server.client()
    down = await client.download(f"mxc://{server.server_name}/doesNotExist123")
    assert isinstance(down, DownloadError) and down.status_code == "M_NOT_FOUND"
    # Remote media without a federation fetcher is not found either, never a crash.
    down = await client.download("mxc://elsewhere.example/abcDEF")
    assert isinstance(down, DownloadError) and down.status_code == "M_NOT_FOUND"


async def test_authenticated_media_needs_a_token(server):
    client = await server.client()
    resp, _ = await client.upload(lambda *_: b"hello", content_type="text/plain")
    _, media_id = split_mxc(resp.content_uri)
    for path in (
        f"/_matrix/client/v1/media/download/{server.server_name}/{media_id}",
        f"/_matrix/client/v1/media/download/{server.server_name}/{media_id}/a.txt",
        f"/_matrix/client/v1/media/thumbnail/{server.server_name}/{media_id}?width=32&height=32",
        "/_matrix/client/v1/media/config",
        "/_matrix/client/v1/media/preview_url?url=https://example.org/",
    ):
        status, body = await server.request("GET", path)
        assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN"), path
    status, body = await server.request("POST", "/_matrix/media/v3/upload", data=b"x")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = await server.request(
        "GET", f"/_matrix/client/v1/media/download/{server.server_name}/{media_id}", token="nope"
    )
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def test_upload_size_limit_leaves_nothing(make_server):
    server = await make_server(media={"max_upload_size": 10_000})
    client = await server.client()
    token = client.access_token

    status, body = await server.request("GET", "/_matrix/client/v1/media/config", token=token)
    assert status == 200 and body["m.upload.size"] == 10_000

    # Declared too large: refused before a byte is read.
    status, body = await server.request(
        "POST", "/_matrix/media/v3/upload", token=token, data=os.urandom(10_001)
    )
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")

    # Chunked, with no Content-Length: caught while streaming, the partial file removed.
    async def body_stream():
        for _ in range(5):
            yield os.urandom(4096)

    status, body = await server.request(
        "POST", "/_matrix/media/v3/upload", token=token, data=body_stream()
    )
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")

    resp, _ = await client.upload(lambda *_: os.urandom(20_000), filesize=20_000)
    assert not isinstance(resp, UploadResponse) and resp.status_code == "M_TOO_LARGE"

    assert stored_files(server) == []
    assert await server.db.fetchval("SELECT count(*) FROM local_media") == 0

    # Exactly at the limit is fine.
    resp, _ = await client.upload(lambda *_: b"x" * 10_000, filesize=10_000)
    assert isinstance(resp, UploadResponse), resp


async def test_bad_media_ids_are_refused_and_write_nothing(server):
    client = await server.client()
    token = client.access_token
    sn = server.server_name
    for media_id in ("bad$id", "..%2F..%2Fetc", "a.b", "%2E%2E%2Fetc%2Fpasswd", "sp%20ace"):
        status, body = await server.request(
            "GET", f"/_matrix/client/v1/media/download/{sn}/{media_id}", token=token
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), media_id
        status, body = await server.request(
            "PUT", f"/_matrix/media/v3/upload/{sn}/{media_id}", token=token, data=b"data"
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), media_id
    status, body = await server.request(
        "GET", "/_matrix/client/v1/media/download/bad_server!/abc", token=token
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert stored_files(server) == []


async def test_async_upload(server):
    alice = await server.client()
    bob = await server.client()
    sn = server.server_name

    status, body = await server.request(
        "POST", "/_matrix/media/v1/create", token=alice.access_token
    )
    assert status == 200 and body["unused_expires_at"] > 0
    uri = body["content_uri"]
    _, media_id = split_mxc(uri)

    status, body = await server.request(
        "GET",
        f"/_matrix/client/v1/media/download/{sn}/{media_id}?timeout_ms=0",
        token=alice.access_token,
    )
    assert (status, body["errcode"]) == (504, "M_NOT_YET_UPLOADED")

    # A download that starts waiting before the bytes arrive gets them.
    waiting = asyncio.ensure_future(alice.download(uri))

    status, body = await server.request(
        "PUT", f"/_matrix/media/v3/upload/{sn}/{media_id}", token=bob.access_token, data=b"b"
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")

    payload = os.urandom(70_000)
    status, body = await server.request(
        "PUT",
        f"/_matrix/media/v3/upload/{sn}/{media_id}?filename=late.bin",
        token=alice.access_token,
        data=payload,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 200, body

    status, body = await server.request(
        "PUT", f"/_matrix/media/v3/upload/{sn}/{media_id}", token=alice.access_token, data=b"x"
    )
    assert (status, body["errcode"]) == (409, "M_CANNOT_OVERWRITE_MEDIA")

    down = await waiting
    assert isinstance(down, MemoryDownloadResponse), down
    assert down.body == payload and down.filename == "late.bin"

    status, body = await server.request(
        "PUT", f"/_matrix/media/v3/upload/{sn}/neverCreated", token=alice.access_token, data=b"x"
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def _create(server, token: str) -> str:
    status, body = await server.request("POST", "/_matrix/media/v1/create", token=token)
    assert status == 200, body
    return split_mxc(body["content_uri"])[1]


async def test_concurrent_puts_to_one_id_store_exactly_one_file(server):
    client = await server.client()
    token = client.access_token
    sn = server.server_name
    media_id = await _create(server, token)
    path = f"/_matrix/media/v3/upload/{sn}/{media_id}"
    first, second = os.urandom(50_000), os.urandom(30_000)
    gate = asyncio.Event()

    async def held_body():
        yield first[:10_000]
        await gate.wait()
        yield first[10_000:]

    put_first = asyncio.ensure_future(server.request("PUT", path, token=token, data=held_body()))
    try:
        # The first PUT is receiving (its scratch file exists): it passed every check made
        # before the body, and is still in flight when the second one completes.
        async def first_receiving():
            return len(stored_files(server)) == 1

        await wait_for(first_receiving)
        status, body = await server.request("PUT", path, token=token, data=second)
        assert (status, body) == (200, {})
    finally:
        gate.set()
    status, body = await put_first
    assert (status, body["errcode"]) == (409, "M_CANNOT_OVERWRITE_MEDIA")

    down = await client.download(f"mxc://{sn}/{media_id}")
    assert down.body == second
    files = stored_files(server)
    assert len(files) == 1 and files[0].read_bytes() == second
    assert (
        await server.db.fetchval("SELECT sha256 FROM local_media WHERE media_id = $1", media_id)
        == hashlib.sha256(second).hexdigest()
    )

    # Both at once, whole bodies: one wins, the other is refused, one file either way.
    media_id = await _create(server, token)
    path = f"/_matrix/media/v3/upload/{sn}/{media_id}"
    bodies = [os.urandom(20_000), os.urandom(25_000)]
    answers = await asyncio.gather(
        *(server.request("PUT", path, token=token, data=b) for b in bodies)
    )
    assert sorted(status for status, _ in answers) == [200, 409]
    winner = bodies[[status for status, _ in answers].index(200)]
    assert (await client.download(f"mxc://{sn}/{media_id}")).body == winner
    sizes = sorted(f.stat().st_size for f in stored_files(server))
    assert sizes == sorted([len(second), len(winner)])


async def test_unused_media_ids_expire(make_server):
    server = await make_server(media={"max_pending_uploads": 1})
    client = await server.client()
    token = client.access_token
    sn = server.server_name

    status, body = await server.request("POST", "/_matrix/media/v1/create", token=token)
    media_id = split_mxc(body["content_uri"])[1]
    expires = await server.db.fetchval(
        "SELECT expires_ts FROM local_media WHERE media_id = $1", media_id
    )
    created = await server.db.fetchval(
        "SELECT created_ts FROM local_media WHERE media_id = $1", media_id
    )
    # The spec's recommended lifetime, 24 hours, is the default.
    assert body["unused_expires_at"] == expires == created + 86_400_000

    status, body = await server.request("POST", "/_matrix/media/v1/create", token=token)
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")

    # As if its unused_expires_at had passed.
    await server.db.execute("UPDATE local_media SET expires_ts = 1 WHERE media_id = $1", media_id)
    status, body = await server.request(
        "PUT", f"/_matrix/media/v3/upload/{sn}/{media_id}", token=token, data=b"late"
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await server.request(
        "GET", f"/_matrix/client/v1/media/download/{sn}/{media_id}", token=token
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert stored_files(server) == []

    # An expired ID is no longer pending: the user may create another.
    await _create(server, token)
    await server.hs.media.reap_expired(int(time.time() * 1000))
    assert (
        await server.db.fetchval("SELECT count(*) FROM local_media WHERE media_id = $1", media_id)
        == 0
    )


async def test_pending_upload_limit(make_server):
    server = await make_server(media={"max_pending_uploads": 2})
    client = await server.client()
    for _ in range(2):
        status, _ = await server.request(
            "POST", "/_matrix/media/v1/create", token=client.access_token
        )
        assert status == 200
    status, body = await server.request(
        "POST", "/_matrix/media/v1/create", token=client.access_token
    )
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")


async def test_download_safety_headers(server):
    client = await server.client()
    token = client.access_token
    sn = server.server_name

    html, _ = await client.upload(
        lambda *_: b"<script>alert(1)</script>", content_type="text/html", filename='a"b\\c.html'
    )
    status, headers, body = await raw(
        server,
        "GET",
        f"/_matrix/client/v1/media/download/{sn}/{split_mxc(html.content_uri)[1]}",
        token=token,
    )
    assert status == 200 and body == b"<script>alert(1)</script>"
    assert headers["Content-Disposition"] == 'attachment; filename="a\\"b\\\\c.html"'
    assert headers["Content-Security-Policy"].startswith("sandbox;")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Content-Type"].startswith("text/html")

    image, _ = await client.upload(lambda *_: b"\x89PNG...", content_type="image/png")
    image_id = split_mxc(image.content_uri)[1]
    status, headers, _ = await raw(
        server, "GET", f"/_matrix/client/v1/media/download/{sn}/{image_id}", token=token
    )
    # Known-safe type, no file name given at upload: inline, no filename parameter.
    assert headers["Content-Disposition"] == "inline"

    status, headers, _ = await raw(
        server,
        "GET",
        f"/_matrix/client/v1/media/download/{sn}/{image_id}/%C3%A9t%C3%A9%20photo.png",
        token=token,
    )
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''%C3%A9t%C3%A9%20photo.png"

    # A malformed Content-Type is not echoed back: the bytes become an opaque attachment.
    status, _, body = await raw(
        server,
        "POST",
        "/_matrix/media/v3/upload",
        token=token,
        data=b"x",
        headers={"Content-Type": "text/html <script>"},
    )
    assert status == 200
    odd_id = split_mxc(orjson.loads(body)["content_uri"])[1]
    status, headers, _ = await raw(
        server, "GET", f"/_matrix/client/v1/media/download/{sn}/{odd_id}", token=token
    )
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"


async def test_legacy_endpoints_frozen_by_default(make_server):
    server = await make_server()
    client = await server.client()
    resp, _ = await client.upload(lambda *_: b"legacy", content_type="text/plain")
    _, media_id = split_mxc(resp.content_uri)
    path = f"/_matrix/media/v3/download/{server.server_name}/{media_id}"
    status, body = await server.request("GET", path)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await server.request(
        "GET", f"/_matrix/media/v3/thumbnail/{server.server_name}/{media_id}?width=1&height=1"
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_legacy_endpoints_when_unfrozen(make_server):
    server = await make_server(media={"legacy_endpoints_frozen": False})
    client = await server.client()
    resp, _ = await client.upload(lambda *_: b"legacy", content_type="text/plain")
    _, media_id = split_mxc(resp.content_uri)
    status, headers, body = await raw(
        server, "GET", f"/_matrix/media/v3/download/{server.server_name}/{media_id}/x.txt"
    )
    assert status == 200 and body == b"legacy"
    assert headers["Content-Disposition"] == 'inline; filename="x.txt"'


def mxc_id(upload: UploadResponse) -> str:
    return split_mxc(upload.content_uri)[1]


async def test_a_freeze_keeps_older_media_on_the_legacy_endpoints(make_server, fresh_dsn):
    """Spec v1.11: media from before the freeze stays downloadable unauthenticated; media
    uploaded once frozen is served only by the authenticated endpoints."""
    before = await make_server(media={"legacy_endpoints_frozen": False})
    client = await before.client()
    old, _ = await client.upload(lambda *_: b"from before", content_type="text/plain")
    old_image, _ = await client.upload(lambda *_: png_bytes(64, 64), content_type="image/png")

    # The operator freezes: a server on the same database and media store.
    after = await make_server(
        dsn=fresh_dsn,
        media={
            "legacy_endpoints_frozen": True,
            "store_path": str(before.hs.media.store_path),
        },
    )
    client = await after.login(client.user_id.split(":")[0][1:])
    new, _ = await client.upload(lambda *_: b"after the freeze", content_type="text/plain")

    sn = after.server_name
    status, _, body = await raw(after, "GET", f"/_matrix/media/v3/download/{sn}/{mxc_id(old)}")
    assert (status, body) == (200, b"from before")
    status, headers, _ = await raw(
        after,
        "GET",
        f"/_matrix/media/v3/thumbnail/{sn}/{mxc_id(old_image)}?width=32&height=32&method=crop",
    )
    assert status == 200 and headers["Content-Type"].startswith("image/")
    status, body = await after.request("GET", f"/_matrix/media/v3/download/{sn}/{mxc_id(new)}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    down = await client.download(new.content_uri)
    assert isinstance(down, MemoryDownloadResponse) and down.body == b"after the freeze"
