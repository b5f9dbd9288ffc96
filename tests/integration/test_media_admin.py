"""Media admin API (Synapse shapes): quarantine, delete, per-user usage; admins only."""

from __future__ import annotations

from nio import DownloadError, MemoryDownloadResponse, UploadResponse

from tests.integration.media_helpers import split_mxc, stored_files

ADMIN = "/_synapse/admin/v1"


async def _upload(client, data: bytes) -> str:
    resp, _ = await client.upload(lambda *_: data, content_type="text/plain", filesize=len(data))
    assert isinstance(resp, UploadResponse), resp
    return resp.content_uri


async def test_admin_media_api(make_server):
    server = await make_server(admins=["@boss:test.local"])
    admin = await server.client("boss")
    alice = await server.client("alice")
    token = admin.access_token
    sn = server.server_name

    first = await _upload(alice, b"a" * 100)
    second = await _upload(alice, b"b" * 50)
    await _upload(admin, b"c" * 7)
    _, first_id = split_mxc(first)

    # Not an admin: refused, nothing changes.
    status, body = await server.request(
        "POST", f"{ADMIN}/media/quarantine/{sn}/{first_id}", token=alice.access_token
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")

    status, body = await server.request(
        "POST", f"{ADMIN}/media/quarantine/{sn}/{first_id}", token=token
    )
    assert (status, body) == (200, {})
    down = await alice.download(first)
    assert isinstance(down, DownloadError) and down.status_code == "M_NOT_FOUND"

    status, _ = await server.request(
        "POST", f"{ADMIN}/media/unquarantine/{sn}/{first_id}", token=token
    )
    assert status == 200
    down = await alice.download(first)
    assert isinstance(down, MemoryDownloadResponse) and down.body == b"a" * 100

    status, body = await server.request(
        "GET", f"{ADMIN}/users/@alice:test.local/media?limit=1", token=token
    )
    assert status == 200 and body["total"] == 2 and len(body["media"]) == 1
    assert body["next_token"] == 1
    assert body["media"][0]["media_id"] == split_mxc(second)[1]  # newest first

    status, body = await server.request(
        "GET", f"{ADMIN}/statistics/users/media?order_by=media_length&dir=b", token=token
    )
    assert status == 200 and body["total"] == 2
    assert [(u["user_id"], u["media_count"], u["media_length"]) for u in body["users"]] == [
        ("@alice:test.local", 2, 150),
        ("@boss:test.local", 1, 7),
    ]

    files_before = len(stored_files(server))
    status, body = await server.request("DELETE", f"{ADMIN}/media/{sn}/{first_id}", token=token)
    assert (status, body) == (200, {"deleted_media": [first_id], "total": 1})
    assert len(stored_files(server)) == files_before - 1
    down = await alice.download(first)
    assert isinstance(down, DownloadError) and down.status_code == "M_NOT_FOUND"
    status, body = await server.request("DELETE", f"{ADMIN}/media/{sn}/{first_id}", token=token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
