"""Issue 17 items 6 and 11: bodies and account data are bounded in size, and a client
that sends its headers or its body too slowly is cut off."""

from __future__ import annotations

import asyncio
import urllib.parse

import aiohttp
import pytest

import homeserver.sync.handler
from homeserver.config import LimitsConfig

ACCOUNT_DATA_PATHS = [
    "/_matrix/client/v3/user/{user}/account_data/org.example.big",
    "/_matrix/client/v3/user/{user}/rooms/{room}/account_data/org.example.big",
]


async def _user_and_room(server):
    client = await server.client()
    status, room = await server.request(
        "POST", "/_matrix/client/v3/createRoom", token=client.access_token, json={}
    )
    assert status == 200
    return client, room["room_id"]


@pytest.mark.parametrize("template", ACCOUNT_DATA_PATHS)
async def test_account_data_over_64_kib_is_refused_and_not_stored(server, template):
    client, room_id = await _user_and_room(server)
    path = template.format(user=urllib.parse.quote(client.user_id), room=room_id)
    limit = LimitsConfig.account_data_bytes
    assert limit == 64 * 1024
    overhead = len('{"v":""}')
    status, body = await server.request(
        "PUT", path, token=client.access_token, json={"v": "a" * (limit - overhead + 1)}
    )
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    status, _ = await server.request("GET", path, token=client.access_token)
    assert status == 404
    status, _ = await server.request(
        "PUT", path, token=client.access_token, json={"v": "a" * (limit - overhead)}
    )
    assert status == 200


async def test_account_data_limit_is_configurable_and_bounds_tags(make_server):
    server = await make_server(limits={"account_data_bytes": 200})
    client, room_id = await _user_and_room(server)
    user = urllib.parse.quote(client.user_id)
    path = f"/_matrix/client/v3/user/{user}/account_data/m.x"
    status, body = await server.request(
        "PUT", path, token=client.access_token, json={"v": "a" * 200}
    )
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    # Room tags are one m.tag object: tag after tag, it reaches the bound too.
    tags = f"/_matrix/client/v3/user/{user}/rooms/{room_id}/tags"
    answers = []
    for n in range(10):
        status, body = await server.request(
            "PUT", f"{tags}/u.tag{n}", token=client.access_token, json={"order": 0.5}
        )
        answers.append((status, body.get("errcode")))
    assert answers[0] == (200, None) and answers[-1] == (413, "M_TOO_LARGE"), answers
    status, body = await server.request("GET", tags, token=client.access_token)
    assert len(body["tags"]) == answers.count((200, None))


async def _chunks(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_json_bodies_over_the_limit_get_413_and_uploads_their_own_limit(make_server):
    server = await make_server(http={"max_body_bytes": 4096})
    client, room_id = await _user_and_room(server)
    path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/big"
    big = b'{"msgtype": "m.text", "body": "' + b"a" * 5000 + b'"}'
    # Announced by Content-Length, and streamed without one (chunked).
    for data in (big, _chunks(big, 1000)):
        status, body = await server.request(
            "PUT",
            path,
            token=client.access_token,
            data=data,
            headers={"Content-Type": "application/json"},
        )
        assert (status, body.get("errcode")) == (413, "M_TOO_LARGE")
    status, _ = await server.request(
        "PUT", path, token=client.access_token, json={"msgtype": "m.text", "body": "small"}
    )
    assert status == 200
    # Media uploads stream to disk under media.max_upload_size, not the JSON limit.
    status, body = await server.request(
        "POST",
        "/_matrix/media/v3/upload?filename=a.bin",
        token=client.access_token,
        data=b"x" * 20000,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 200, body


async def _connect(server):
    url = urllib.parse.urlsplit(server.base_url)
    return await asyncio.open_connection(url.hostname, url.port)


async def test_slowloris_headers_are_cut_off(make_server):
    """A client trickling header bytes is disconnected once the header timeout passes,
    however regularly it sends."""
    server = await make_server(http={"header_read_timeout_s": 0.5})
    reader, writer = await _connect(server)

    async def trickle():
        writer.write(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n")
        for n in range(600):
            writer.write(f"X-Slow-{n}: 1\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    try:
        # EOF: the server closed the connection (the bound only keeps a broken build from
        # hanging the run; the default timeout would keep the socket for 30 s).
        assert await asyncio.wait_for(reader.read(), 20) == b""
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


async def test_stalled_body_gets_408(make_server):
    server = await make_server(http={"body_read_timeout_s": 0.5})
    client, room_id = await _user_and_room(server)
    reader, writer = await _connect(server)
    path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/slow"
    writer.write(
        (
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {client.access_token}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"msgtype"'
        ).encode()
    )
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(4096), 20)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"errcode":"M_UNKNOWN"' in answer


async def test_abandoned_long_polls_are_released(server, monkeypatch):
    """A client that closes its connection mid-poll frees the poll long before its
    timeout (aiohttp does not cancel the handler): the memory leak of issue 17 item 11."""
    monkeypatch.setattr(homeserver.sync.handler, "CONNECTION_CHECK_S", 0.2)
    client = await server.client()
    status, first = await server.request(
        "GET", "/_matrix/client/v3/sync?timeout=0", token=client.access_token
    )
    assert status == 200
    url = f"{server.base_url}_matrix/client/v3/sync?timeout=60000&since={first['next_batch']}"
    session = aiohttp.ClientSession()
    headers = {"Authorization": f"Bearer {client.access_token}"}
    polls = [asyncio.create_task(session.get(url, headers=headers)) for _ in range(20)]
    for _ in range(200):
        if server.hs.notifier.waiting == len(polls):
            break
        await asyncio.sleep(0.05)
    assert server.hs.notifier.waiting == len(polls)
    for poll in polls:
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    await session.close()
    for _ in range(200):  # bounded; a broken build keeps them for the full minute
        if server.hs.notifier.waiting == 0:
            break
        await asyncio.sleep(0.05)
    assert server.hs.notifier.waiting == 0
