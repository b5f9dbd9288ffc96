"""Media over federation: an admitted server fetches, caches and serves our media."""

from __future__ import annotations

import os

from nio import DownloadError, MemoryDownloadResponse, UploadResponse

from tests.federation_ca import start_federating_server


async def test_remote_media_is_fetched_cached_and_served(make_server, ca):
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    hs3 = await start_federating_server(make_server, ca, "hs3.test.local", ["hs1.test.local"])

    alice = await hs1.client()
    payload = os.urandom(200_000)
    resp, _ = await alice.upload(
        lambda *_: payload,
        content_type="application/zip",
        filename="plans été.zip",
        filesize=len(payload),
    )
    assert isinstance(resp, UploadResponse), resp

    bob = await hs2.client()
    down = await bob.download(resp.content_uri)
    assert isinstance(down, MemoryDownloadResponse), down
    assert down.body == payload and down.content_type == "application/zip"
    # The file name travels in the federation answer's Content-Disposition.
    assert down.filename == "plans été.zip"
    cached = await hs2.db.fetchval("SELECT media_length FROM remote_media")
    assert cached == len(payload)

    # hs1 does not admit hs3: hs3's users cannot pull hs1's media.
    carol = await hs3.client()
    down = await carol.download(resp.content_uri)
    assert isinstance(down, DownloadError) and down.status_code == "M_NOT_FOUND"
