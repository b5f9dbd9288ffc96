"""Media admin API (Synapse shapes): quarantine, delete, per-user usage, a room's media;
admins only."""

from __future__ import annotations

from nio import (
    DownloadError,
    MemoryDownloadResponse,
    RoomPutStateResponse,
    RoomSendResponse,
    UploadResponse,
)

from tests.integration.media.helpers import split_mxc, stored_files

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


async def test_room_media_listing_and_quarantine(make_server):
    server = await make_server(admins=["@boss:test.local"])
    admin = await server.client("boss")
    alice = await server.client("alice")
    sn = server.server_name

    photo, thumb, secret, avatar, me, edited, kept, unrelated = [
        await _upload(alice, f"file {i}".encode()) for i in range(8)
    ]
    remote = "mxc://elsewhere.example/remoteAbc"
    room = await alice.room_create(name="files")
    room_id = room.room_id

    async def send(content, event_type="m.room.message"):
        resp = await alice.room_send(room_id, event_type, content)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    await send({"msgtype": "m.image", "body": "p", "url": photo, "info": {"thumbnail_url": thumb}})
    await send({"msgtype": "m.file", "body": "s", "file": {"url": secret, "v": "v2"}})
    original = await send({"msgtype": "m.file", "body": "r", "url": remote})
    await send(
        {
            "msgtype": "m.image",
            "body": "* new",
            "m.new_content": {"msgtype": "m.image", "body": "new", "url": edited},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        }
    )
    await send({"msgtype": "m.file", "body": "k", "url": kept})
    await send({"msgtype": "m.text", "body": "not a link: mxc://x/../../etc"})
    resp = await alice.room_put_state(room_id, "m.room.avatar", {"url": avatar})
    assert isinstance(resp, RoomPutStateResponse), resp
    resp = await alice.room_put_state(
        room_id,
        "m.room.member",
        {"membership": "join", "avatar_url": me},
        state_key=alice.user_id,
    )
    assert isinstance(resp, RoomPutStateResponse), resp

    path = f"{ADMIN}/room/{room_id}/media"
    status, body = await server.request("GET", path, token=alice.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.request("GET", path, token=admin.access_token)
    assert status == 200, body
    assert sorted(body["local"]) == sorted([photo, thumb, secret, avatar, me, edited, kept])
    assert body["remote"] == [remote]

    status, body = await server.request(
        "GET", f"{ADMIN}/room/!nowhere:{sn}/media", token=admin.access_token
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

    # Media an admin marked safe stays available (as in Synapse).
    await server.db.execute(
        "UPDATE local_media SET safe_from_quarantine = TRUE WHERE media_id = $1",
        split_mxc(kept)[1],
    )
    status, body = await server.request(
        "POST", f"{path}/quarantine", token=alice.access_token, json={}
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.request(
        "POST", f"{path}/quarantine", token=admin.access_token, json={}
    )
    assert (status, body) == (200, {"num_quarantined": 7})  # 6 local + the remote one
    for uri in (photo, thumb, secret, avatar, me, edited):
        down = await alice.download(uri)
        assert isinstance(down, DownloadError) and down.status_code == "M_NOT_FOUND", uri
    for uri in (kept, unrelated):
        down = await alice.download(uri)
        assert isinstance(down, MemoryDownloadResponse), uri
    # The remote file was never fetched; it is recorded so that it never will be.
    assert (
        await server.db.fetchval(
            "SELECT quarantined_by FROM remote_media_quarantine WHERE media_id = 'remoteAbc'"
        )
        == admin.user_id
    )
