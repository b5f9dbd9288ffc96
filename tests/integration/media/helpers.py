"""Shared helpers for the media tests: images, raw HTTP with headers, store inspection."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import aiohttp
from PIL import Image


def png_bytes(width: int, height: int, mode: str = "RGBA") -> bytes:
    image = Image.new(mode, (width, height), (200, 40, 40, 255) if mode == "RGBA" else 128)
    # A gradient, so that resampling has something to do and corruption would show.
    for x in range(0, width, max(1, width // 16)):
        for y in range(height):
            image.putpixel((x, y), (x % 256, y % 256, 90, 255) if mode == "RGBA" else 40)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def split_mxc(uri: str) -> tuple[str, str]:
    assert uri.startswith("mxc://"), uri
    server_name, media_id = uri[len("mxc://") :].split("/", 1)
    return server_name, media_id


async def raw(
    server, method: str, path: str, *, token=None, data=None, headers=None
) -> tuple[int, dict, bytes]:
    """(status, headers, body bytes): for tests of headers and exact bytes on the wire."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.base_url.rstrip("/") + path, data=data, headers=hdrs) as r,
    ):
        return r.status, dict(r.headers), await r.read()


def stored_files(server) -> list[Path]:
    """Every file under the media store, scratch space included."""
    root = server.hs.media.store_path
    return [Path(d) / f for d, _, files in os.walk(root) for f in files]


async def wait_for(predicate, attempts: int = 200):
    """Polls an async predicate (background work finishing); fails the test if it never holds."""
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")
