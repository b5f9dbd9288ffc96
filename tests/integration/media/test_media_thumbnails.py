"""Thumbnails: sizes and methods the spec recommends, pre-generation, caching, errors."""

from __future__ import annotations

import io

from nio import ResizingMethod, ThumbnailError, ThumbnailResponse, UploadResponse
from PIL import Image

from tests.integration.media.helpers import image_size, png_bytes, raw, split_mxc, wait_for


async def _upload(client, data: bytes, content_type: str = "image/png") -> tuple[str, str]:
    resp, _ = await client.upload(lambda *_: data, content_type=content_type, filesize=len(data))
    assert isinstance(resp, UploadResponse), resp
    return split_mxc(resp.content_uri)


async def test_thumbnails_have_the_asked_size(server):
    client = await server.client()
    sn, media_id = await _upload(client, png_bytes(1600, 1200))

    for width, height, method in (
        (32, 32, ResizingMethod.crop),
        (96, 96, ResizingMethod.crop),
        (320, 240, ResizingMethod.scale),
        (640, 480, ResizingMethod.scale),
        (800, 600, ResizingMethod.scale),
    ):
        resp = await client.thumbnail(sn, media_id, width, height, method)
        assert isinstance(resp, ThumbnailResponse), resp
        assert image_size(resp.body) == (width, height), (width, height, method)
        assert resp.content_type in ("image/png", "image/jpeg")

    # Scale keeps the aspect ratio: a 4:3 source asked into a square box comes from the
    # next pre-generated size up (never smaller than asked), still 4:3.
    resp = await client.thumbnail(sn, media_id, 400, 400, ResizingMethod.scale)
    width, height = image_size(resp.body)
    assert width * 3 == height * 4 and width >= 400


async def test_thumbnails_are_pregenerated_and_cached(server):
    client = await server.client()
    sn, media_id = await _upload(client, png_bytes(1000, 1000))

    async def all_made():
        count = await server.db.fetchval(
            "SELECT count(*) FROM media_thumbnails WHERE media_id = $1", media_id
        )
        return count == len(server.hs.config.media.thumbnail_sizes)

    await wait_for(all_made)
    rows = await server.db.fetch(
        "SELECT req_width, req_height, method, width, height FROM media_thumbnails"
        " WHERE media_id = $1 ORDER BY req_width",
        media_id,
    )
    assert [(r["req_width"], r["method"]) for r in rows] == [
        (32, "crop"),
        (96, "crop"),
        (320, "scale"),
        (640, "scale"),
        (800, "scale"),
    ]
    # A request between two sizes is answered from the next larger pre-generated one.
    resp = await client.thumbnail(sn, media_id, 50, 50, ResizingMethod.crop)
    assert image_size(resp.body) == (96, 96)
    assert await server.db.fetchval("SELECT count(*) FROM media_thumbnails") == 5


async def test_no_upscaling_of_small_images(server):
    client = await server.client()
    sn, media_id = await _upload(client, png_bytes(100, 50))
    resp = await client.thumbnail(sn, media_id, 320, 240, ResizingMethod.scale)
    assert image_size(resp.body) == (100, 50)
    resp = await client.thumbnail(sn, media_id, 96, 96, ResizingMethod.crop)
    assert image_size(resp.body) == (50, 50)


async def test_animated_thumbnail(server):
    client = await server.client()
    frames = [Image.new("RGB", (400, 400), color) for color in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    sn, media_id = await _upload(client, out.getvalue(), "image/gif")

    path = f"/_matrix/client/v1/media/thumbnail/{sn}/{media_id}?width=96&height=96&method=crop"
    status, headers, body = await raw(
        server, "GET", path + "&animated=true", token=client.access_token
    )
    assert status == 200 and headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (96, 96) and image.n_frames == 3

    status, headers, body = await raw(
        server, "GET", path + "&animated=false", token=client.access_token
    )
    assert status == 200 and headers["Content-Type"] in ("image/png", "image/jpeg")
    assert headers["Content-Disposition"].startswith('inline; filename="thumbnail.')
    assert image_size(body) == (96, 96)


async def test_thumbnail_errors(make_server):
    server = await make_server(media={"max_thumbnail_pixels": 1_000_000})
    client = await server.client()
    token = client.access_token
    base = "/_matrix/client/v1/media/thumbnail"

    sn, text_id = await _upload(client, b"just text", "text/plain")
    resp = await client.thumbnail(sn, text_id, 32, 32)
    assert isinstance(resp, ThumbnailError)
    status, body = await server.request(
        "GET", f"{base}/{sn}/{text_id}?width=32&height=32", token=token
    )
    assert (status, body["errcode"]) == (400, "M_UNKNOWN")

    # Claims to be an image, is not.
    _, fake_id = await _upload(client, b"\x89PNG not really", "image/png")
    status, body = await server.request(
        "GET", f"{base}/{sn}/{fake_id}?width=32&height=32", token=token
    )
    assert (status, body["errcode"]) == (400, "M_UNKNOWN")

    # More pixels than the operator allows to decode.
    _, big_id = await _upload(client, png_bytes(1200, 1000))
    status, body = await server.request(
        "GET", f"{base}/{sn}/{big_id}?width=32&height=32", token=token
    )
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")

    _, ok_id = await _upload(client, png_bytes(64, 64))
    for query, errcode in (
        ("height=32", "M_MISSING_PARAM"),
        ("width=32", "M_MISSING_PARAM"),
        ("width=-1&height=32", "M_INVALID_PARAM"),
        ("width=abc&height=32", "M_INVALID_PARAM"),
        ("width=32&height=32&method=stretch", "M_INVALID_PARAM"),
    ):
        status, body = await server.request("GET", f"{base}/{sn}/{ok_id}?{query}", token=token)
        assert (status, body["errcode"]) == (400, errcode), query
