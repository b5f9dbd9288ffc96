"""The media admin API beyond tests/integration/media/test_media_admin.py (protection,
deletion by age and size, a user's media), and federation destinations: admins only, bad
input answers Matrix errors and changes nothing."""

from __future__ import annotations

import time

from nio import DownloadError, MemoryDownloadResponse, UploadResponse

from tests.integration.admin.helpers import admin_server, create_room, forbidden_for
from tests.integration.media.helpers import split_mxc


async def _upload(client, data: bytes) -> str:
    resp, _ = await client.upload(lambda *_: data, content_type="text/plain", filesize=len(data))
    assert isinstance(resp, UploadResponse), resp
    return resp.content_uri


async def test_protect_delete_by_age_and_size_user_media(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    sn = server.server_name
    big = await _upload(alice, b"b" * 500)
    small = await _upload(alice, b"s" * 10)
    kept = await _upload(alice, b"k" * 800)
    avatar = await _upload(alice, b"a" * 900)
    await alice.set_avatar(avatar)
    big_id, small_id, kept_id, avatar_id = (split_mxc(u)[1] for u in (big, small, kept, avatar))

    await forbidden_for(
        server,
        alice.access_token,
        [
            ("POST", f"/v1/media/protect/{kept_id}"),
            ("POST", f"/v1/media/unprotect/{kept_id}"),
            ("POST", f"/v1/media/{sn}/delete?before_ts=1"),
            ("POST", "/v1/media/delete?before_ts=1"),
            ("DELETE", f"/v1/users/{alice.user_id}/media"),
            ("POST", f"/v1/user/{alice.user_id}/media/quarantine"),
        ],
    )

    status, body = await admin("GET", f"/v1/users/{alice.user_id}/media?order_by=media_length")
    assert [m["media_id"] for m in body["media"]] == [small_id, big_id, kept_id, avatar_id]
    status, body = await admin("GET", f"/v1/users/{alice.user_id}/media")
    assert [m["media_id"] for m in body["media"]] == [avatar_id, kept_id, small_id, big_id]
    status, body = await admin("GET", f"/v1/users/{alice.user_id}/media?order_by=sha256")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

    status, body = await admin("POST", "/v1/media/protect/unknownmediaid")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, _ = await admin("POST", f"/v1/media/protect/{kept_id}")
    assert status == 200
    status, body = await admin("GET", f"/v1/users/{alice.user_id}/media?limit=10")
    protected = {m["media_id"]: m["safe_from_quarantine"] for m in body["media"]}
    assert protected[kept_id] is True and protected[big_id] is False

    for bad in ("", "?before_ts=x", "?before_ts=1&size_gt=-1", "?before_ts=1&keep_profiles=no"):
        status, body = await admin("POST", f"/v1/media/{sn}/delete{bad}")
        assert status == 400 and body["errcode"] in ("M_MISSING_PARAM", "M_INVALID_PARAM"), bad
    status, body = await admin("POST", "/v1/media/elsewhere.example/delete?before_ts=1")
    assert status == 400
    assert (await alice.download(big)).body == b"b" * 500

    now = int(time.time() * 1000) + 1000
    status, body = await admin("POST", f"/v1/media/{sn}/delete?before_ts={now}&size_gt=100")
    # Protected media and the avatar (keep_profiles defaults to true) stay.
    assert (status, body) == (200, {"deleted_media": [big_id], "total": 1})
    assert isinstance(await alice.download(big), DownloadError)
    assert isinstance(await alice.download(kept), MemoryDownloadResponse)
    status, body = await admin("POST", f"/v1/media/delete?before_ts={now}&keep_profiles=false")
    assert body == {"deleted_media": [small_id, avatar_id], "total": 2}

    status, _ = await admin("POST", f"/v1/media/unprotect/{kept_id}")
    status, body = await admin("POST", f"/v1/user/{alice.user_id}/media/quarantine")
    assert (status, body) == (200, {"num_quarantined": 1})
    assert isinstance(await alice.download(kept), DownloadError)
    status, body = await admin("DELETE", f"/v1/users/{alice.user_id}/media")
    assert (status, body) == (200, {"deleted_media": [kept_id], "total": 1})
    status, body = await admin("GET", f"/v1/users/{alice.user_id}/media")
    assert body == {"media": [], "total": 0}
    actions = {e["action"] for e in (await admin("GET", "/v1/audit_log?limit=100"))[1]["entries"]}
    assert {"protect_media", "delete_old_media", "quarantine_user_media"} <= actions


async def test_federation_destinations(make_server):
    server, admin = await admin_server(make_server)
    alice = await server.client("alice")
    room_id = await create_room(alice)
    now = int(time.time() * 1000)
    await server.db.execute(
        "INSERT INTO federation_destinations (destination, failures, retry_at_ts,"
        " last_success_ts) VALUES ('a.example', 0, 0, $1), ('b.example', 3, $2, NULL)",
        now,
        now + 60_000,
    )
    # A remote member makes b.example a server we share the room with.
    event_id = await server.db.fetchval(
        "SELECT event_id FROM current_state WHERE room_id = $1 AND type = 'm.room.create'",
        room_id,
    )
    await server.db.execute(
        "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
        " VALUES ($1, 'm.room.member', '@remote:b.example', $2, 'join')",
        room_id,
        event_id,
    )
    base = "/v1/federation/destinations"
    await forbidden_for(
        server,
        alice.access_token,
        [
            ("GET", base),
            ("GET", f"{base}/b.example"),
            ("GET", f"{base}/b.example/rooms"),
            ("POST", f"{base}/b.example/reset_connection"),
        ],
    )

    status, body = await admin("GET", base)
    assert status == 200 and body["total"] == 2
    assert body["destinations"][0] == {
        "destination": "a.example",
        "retry_last_ts": 0,
        "retry_interval": 0,
        "failure_ts": None,
        "last_successful_stream_ordering": now,
    }
    status, body = await admin("GET", f"{base}?order_by=retry_interval&dir=b&limit=1")
    assert [d["destination"] for d in body["destinations"]] == ["b.example"]
    assert body["next_token"] == "1"
    status, body = await admin("GET", f"{base}?destination=a.ex")
    assert [d["destination"] for d in body["destinations"]] == ["a.example"]
    status, body = await admin("GET", f"{base}?order_by=nonsense")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

    status, body = await admin("GET", f"{base}/b.example")
    assert body["retry_interval"] == 3 and body["failure_ts"] == now + 60_000
    status, body = await admin("GET", f"{base}/unknown.example")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await admin("GET", f"{base}/b.example/rooms")
    assert body == {"rooms": [{"room_id": room_id, "stream_ordering": 0}], "total": 1}

    status, body = await admin("POST", f"{base}/a.example/reset_connection")
    assert status == 400  # not backing off: nothing to reset
    status, body = await admin("POST", f"{base}/b.example/reset_connection")
    assert (status, body) == (200, {})
    status, body = await admin("GET", f"{base}/b.example")
    assert body["retry_interval"] == 0 and body["retry_last_ts"] == 0
    [entry] = await admin.audit("reset_connection")
    assert entry["target"] == "b.example"
