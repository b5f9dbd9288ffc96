"""The housekeeping runner and its tasks, on the real server and PostgreSQL.

Tasks are triggered directly (`runner.run_task`, with the time of the run given where
the test needs time to have passed); no test waits for a period. The servers here run with
`housekeeping.enabled: false` so that no background tick runs a task behind the test's back.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
    ToDeviceResponse,
)
from nio.event_builders import ToDeviceMessage

from homeserver.housekeeping.runner import BUSY, NOT_DUE, HousekeepingRunner, Task
from homeserver.media import ids
from storage.database import Database
from storage.housekeeping import HousekeepingStore
from tests.harness import PASSWORD

V3 = "/_matrix/client/v3"
DAY_MS = 86_400_000
QUIET = {"enabled": False}


def now_ms() -> int:
    return int(time.time() * 1000)


async def _shared_room(creator, *others) -> str:
    resp = await creator.room_create(invite=[o.user_id for o in others])
    assert isinstance(resp, RoomCreateResponse), resp
    for other in others:
        await other.join(resp.room_id)
    return resp.room_id


# --- the runner: one process at a time, once per period --------------------------------------


async def test_two_runners_on_one_database_run_a_task_once(fresh_dsn):
    """Two runners with their own pools (two processes) on one database: while one runs the
    task the other finds it locked, and afterwards finds it already run this period."""
    calls = 0
    entered, release = asyncio.Event(), asyncio.Event()

    async def probe(_now: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await release.wait()
        return 1

    dbs = [Database(fresh_dsn, 1, 2), Database(fresh_dsn, 1, 2)]
    for db in dbs:
        await db.open()
    running = None
    try:
        first, second = (
            HousekeepingRunner(HousekeepingStore(db), [Task("probe", 3600, probe)], 10)
            for db in dbs
        )
        running = asyncio.get_running_loop().create_task(first.run_once())
        await entered.wait()
        assert await second.run_once() == {"probe": BUSY}
        release.set()
        assert await running == {"probe": 1}
        # Not due anywhere for an hour: the second process does not run it again.
        assert await second.run_once() == {"probe": NOT_DUE}
        assert calls == 1
        # Due again after its period, whoever asks.
        assert await second.run_once(now_ms() + 3_601_000) == {"probe": 1}
        assert calls == 2
    finally:
        release.set()  # a failed assertion must not leave the first run holding a connection
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
        for db in dbs:
            await db.close()


async def test_a_locked_task_is_not_run(make_server):
    """The real server's task while another session holds its advisory lock: skipped."""
    server = await make_server(housekeeping=QUIET)
    hk = server.hs.housekeeping
    await server.db.execute(
        "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts)"
        " VALUES ('@a:test.local', 'D', 't', 0)"
    )
    other = HousekeepingStore(server.db)
    async with other.task_lock("to_device_txns") as locked:
        assert locked
        assert await hk.runner.run_task("to_device_txns") is BUSY
        assert await server.db.fetchval("SELECT count(*) FROM to_device_txns") == 1
    assert await hk.runner.run_task("to_device_txns") == 1
    assert await server.db.fetchval("SELECT count(*) FROM to_device_txns") == 0


# --- pruning ----------------------------------------------------------------------------------


async def test_prune_to_device_txns_keeps_the_idempotency_window(make_server):
    server = await make_server(housekeeping=QUIET)
    alice, bob = await server.client(), await server.client()
    await bob.sync(timeout=0)
    for txn in ("old", "new"):
        message = ToDeviceMessage("org.example.ping", bob.user_id, bob.device_id, {"n": txn})
        assert isinstance(await alice.to_device(message, txn), ToDeviceResponse)
    retention_ms = server.hs.config.housekeeping.to_device_txn_retention_s * 1000
    await server.db.execute(
        "UPDATE to_device_txns SET created_ts = created_ts - $1 - 1000 WHERE txn_id = 'old'",
        retention_ms,
    )
    assert await server.hs.housekeeping.runner.run_task("to_device_txns") == 1
    rows = await server.db.fetch("SELECT txn_id FROM to_device_txns")
    assert [r["txn_id"] for r in rows] == ["new"]
    # Inside the window a retry is still recognised: bob gets "new" once, not twice.
    message = ToDeviceMessage("org.example.ping", bob.user_id, bob.device_id, {"n": "new"})
    assert isinstance(await alice.to_device(message, "new"), ToDeviceResponse)
    resp = await bob.sync(timeout=0)
    assert isinstance(resp, SyncResponse), resp
    assert sorted(e.source["content"]["n"] for e in resp.to_device_events) == ["new", "old"]


async def test_prune_event_txns_keeps_a_day_and_goes_with_the_device(make_server):
    server = await make_server(housekeeping=QUIET)
    assert server.hs.config.housekeeping.event_txn_retention_s == 86_400
    alice = await server.client()
    room = await alice.room_create()
    assert isinstance(room, RoomCreateResponse), room
    sent = {}
    for txn in ("old", "new"):
        content = {"msgtype": "m.text", "body": txn}
        resp = await alice.room_send(room.room_id, "m.room.message", content, tx_id=txn)
        assert isinstance(resp, RoomSendResponse), resp
        sent[txn] = resp.event_id
    # "old" was used a day and a minute ago, "new" just now.
    await server.db.execute(
        "UPDATE event_txns SET created_ts = created_ts - $1 WHERE txn_id = 'old'", DAY_MS + 60_000
    )
    at = now_ms() + 1000
    assert await server.hs.housekeeping.runner.run_task("event_txns", at) == 1
    rows = await server.db.fetch("SELECT txn_id, event_id FROM event_txns")
    assert [(r["txn_id"], r["event_id"]) for r in rows] == [("new", sent["new"])]
    assert await server.hs.housekeeping.store.last_run("event_txns") == at
    # Inside the window a retry is still the same event; past it, a new one.
    for txn in ("new", "old"):
        content = {"msgtype": "m.text", "body": txn}
        resp = await alice.room_send(room.room_id, "m.room.message", content, tx_id=txn)
        assert isinstance(resp, RoomSendResponse), resp
        assert (resp.event_id == sent[txn]) == (txn == "new")
    # The device's logout takes its transaction IDs with it.
    assert await server.db.fetchval("SELECT count(*) FROM event_txns") == 2
    await alice.logout()
    assert await server.db.fetchval("SELECT count(*) FROM event_txns") == 0


async def _e2e_login(server, tmp_path, localpart: str) -> AsyncClient:
    """A new device of an existing user, with its keys uploaded (a device-list change)."""
    store = tmp_path / f"store-{uuid.uuid4().hex[:8]}"
    store.mkdir()
    client = AsyncClient(
        server.base_url.rstrip("/"),
        f"@{localpart}:{server.server_name}",
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
        store_path=str(store),
    )
    server.clients.append(client)
    assert isinstance(await client.login(PASSWORD), LoginResponse)
    await client.sync(timeout=0, full_state=True)
    await client.keys_upload()
    return client


async def test_prune_device_list_changes_old_tokens_see_everything(make_server, tmp_path):
    server = await make_server(housekeeping=QUIET)
    alice, bob, carol = await server.client(), await server.client(), await server.client()
    await _shared_room(alice, bob, carol)
    t0 = (await bob.sync(timeout=0)).next_batch

    await _e2e_login(server, tmp_path, alice.user_id[1:].split(":")[0])
    resp = await bob.sync(timeout=0, since=t0)
    assert alice.user_id in resp.device_list.changed
    t1 = resp.next_batch

    retention_ms = server.hs.config.housekeeping.device_list_retention_s * 1000
    await server.db.execute(
        "UPDATE device_list_changes SET created_ts = created_ts - $1 - 1000", retention_ms
    )
    pruned = await server.hs.housekeeping.runner.run_task("device_list_changes")
    assert pruned >= 1
    assert await server.db.fetchval("SELECT count(*) FROM device_list_changes") == 0

    # A new change, inside the retention: kept.
    await _e2e_login(server, tmp_path, carol.user_id[1:].split(":")[0])
    assert await server.hs.housekeeping.runner.run_task("device_list_changes") == 0
    kept = await server.db.fetch("SELECT DISTINCT user_id FROM device_list_changes")
    assert [r["user_id"] for r in kept] == [carol.user_id]

    # A token from before the pruned changes cannot miss alice's: everyone is "changed".
    resp = await bob.sync(timeout=0, since=t0)
    assert isinstance(resp, SyncResponse), resp
    assert {alice.user_id, bob.user_id, carol.user_id} <= set(resp.device_list.changed)
    # A token after them sees only what happened since.
    resp = await bob.sync(timeout=0, since=t1)
    assert resp.device_list.changed == [carol.user_id]
    status, body = await server.request(
        "GET", f"{V3}/keys/changes?from={t0}&to={resp.next_batch}", token=bob.access_token
    )
    assert status == 200 and alice.user_id in body["changed"], body


async def test_prune_push_notifications_keeps_thirty_days(make_server):
    server = await make_server(housekeeping=QUIET)
    assert server.hs.config.housekeeping.push_notification_retention_s == 30 * 86_400
    alice, bob = await server.client(), await server.client()
    room_id = await _shared_room(alice, bob)
    sent = {}
    for body in ("old", "new"):
        resp = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
        assert isinstance(resp, RoomSendResponse), resp
        sent[body] = resp.event_id

    async def notified() -> list[str]:
        status, page = await server.request("GET", f"{V3}/notifications", token=bob.access_token)
        assert status == 200, page
        return [n["event"]["event_id"] for n in page["notifications"]]

    for _ in range(200):  # the push worker makes them in the background; bounded
        if set(sent.values()) <= set(await notified()):
            break
        await asyncio.sleep(0.05)
    before = await notified()  # the invite notified bob too
    assert before[:2] == [sent["new"], sent["old"]]
    # "old" was made thirty days and a minute ago.
    await server.db.execute(
        "UPDATE push_notifications SET ts = ts - $1 WHERE event_id = $2",
        30 * DAY_MS + 60_000,
        sent["old"],
    )
    assert await server.hs.housekeeping.runner.run_task("push_notifications", now_ms()) == 1
    assert await notified() == [e for e in before if e != sent["old"]]


async def test_prune_rejected_events_keeps_outliers_and_referenced_ones(make_server):
    server = await make_server(housekeeping=QUIET)
    old = now_ms() - server.hs.config.housekeeping.rejected_event_retention_s * 1000 - 1000
    recent = now_ms()
    rows = [
        ("$rejected_old", "rejected", old),
        ("$rejected_recent", "rejected", recent),
        ("$rejected_old_extremity", "rejected", old),
        ("$outlier_old", "outlier", old),
        ("$soft_failed_old", "soft_failed", old),
    ]
    for event_id, status, ts in rows:
        await server.db.execute(
            "INSERT INTO event_outliers (event_id, room_id, status, received_ts, json)"
            " VALUES ($1, '!room:remote.example', $2, $3, '{}')",
            event_id,
            status,
            ts,
        )
    await server.db.execute(
        "INSERT INTO room_forward_extremities (room_id, event_id)"
        " VALUES ('!room:remote.example', '$rejected_old_extremity')"
    )
    assert await server.hs.housekeeping.runner.run_task("rejected_events") == 1
    left = await server.db.fetch("SELECT event_id FROM event_outliers ORDER BY event_id")
    assert [r["event_id"] for r in left] == [
        "$outlier_old",
        "$rejected_old_extremity",
        "$rejected_recent",
        "$soft_failed_old",
    ]


async def test_media_task_expires_the_remote_and_preview_caches(make_server, tmp_path):
    server = await make_server(housekeeping=QUIET)
    media = server.hs.media
    max_age_ms = server.hs.config.housekeeping.remote_media_max_age_s * 1000
    for media_id, created in (("oldfile", now_ms() - max_age_ms - 1000), ("newfile", now_ms())):
        await server.db.execute(
            "INSERT INTO remote_media (origin, media_id, media_type, media_length, created_ts)"
            " VALUES ('remote.example', $1, 'text/plain', 5, $2)",
            media_id,
            created,
        )
        source = tmp_path / media_id
        source.write_bytes(b"bytes")
        await media.backend.put_file(ids.remote_key("remote.example", media_id), source)
    # URL previews: one expired two days ago (past the day its image is kept), one fresh.
    for url, expires in (
        ("https://old.example/", now_ms() - 2 * DAY_MS),
        ("https://new.example/", now_ms() + 3_600_000),
    ):
        await server.db.execute(
            "INSERT INTO media_url_previews (url, bucket, og_json, fetched_ts, expires_ts)"
            " VALUES ($1, 0, '{}', 0, $2)",
            url,
            expires,
        )
    assert await server.hs.housekeeping.runner.run_task("media") == 1
    previews = await server.db.fetch("SELECT url FROM media_url_previews")
    assert [r["url"] for r in previews] == ["https://new.example/"]
    left = await server.db.fetch("SELECT media_id FROM remote_media")
    assert [r["media_id"] for r in left] == ["newfile"]
    assert media.backend.local_path(ids.remote_key("remote.example", "newfile")).exists()
    assert not media.backend.local_path(ids.remote_key("remote.example", "oldfile")).exists()


# --- presence ---------------------------------------------------------------------------------


async def test_presence_times_out_and_wakes_co_members(make_server):
    server = await make_server(
        housekeeping={
            **QUIET,
            "presence_idle_timeout_s": 60,
            "presence_offline_timeout_s": 120,
        }
    )
    alice, bob = await server.client(), await server.client()
    await _shared_room(alice, bob)
    await alice.set_presence("online")
    since = (await bob.sync(timeout=0, set_presence="offline")).next_batch
    runner = server.hs.housekeeping.runner
    start = now_ms()

    # Inside the idle window: nobody changes.
    assert await runner.run_task("presence", start + 30_000) == 0

    # bob waits on a long-poll; the time-out wakes it with alice unavailable.
    waiting = asyncio.get_running_loop().create_task(
        bob.sync(timeout=30_000, since=since, set_presence="offline")
    )
    assert await runner.run_task("presence", start + 61_000) == 1
    resp = await waiting
    assert isinstance(resp, SyncResponse), resp
    seen = {e.user_id: e.presence for e in resp.presence_events}
    assert seen.get(alice.user_id) == "unavailable", seen
    status, body = await server.request(
        "GET", f"{V3}/presence/{alice.user_id}/status", token=bob.access_token
    )
    assert status == 200 and body["presence"] == "unavailable"

    assert await runner.run_task("presence", start + 121_000) == 1
    resp = await bob.sync(timeout=0, since=resp.next_batch, set_presence="offline")
    assert {e.user_id: e.presence for e in resp.presence_events}.get(alice.user_id) == "offline"
    # Already offline: nothing more to do.
    assert await runner.run_task("presence", start + 500_000) == 0

    # Syncing again brings alice back online.
    await alice.sync(timeout=0)
    status, body = await server.request(
        "GET", f"{V3}/presence/{alice.user_id}/status", token=bob.access_token
    )
    assert body["presence"] == "online"


# --- devices' last_seen -----------------------------------------------------------------------


async def test_last_seen_moves_on_use_after_a_flush(make_server):
    server = await make_server(housekeeping={**QUIET, "last_seen_flush_s": 3600})
    alice = await server.client()
    await server.db.execute(
        "UPDATE devices SET last_seen_ts = 1, last_seen_ip = '192.0.2.1' WHERE user_id = $1",
        alice.user_id,
    )
    for _ in range(3):
        await alice.whoami()
    # Requests write nothing themselves.
    row = await server.db.fetchrow(
        "SELECT last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1", alice.user_id
    )
    assert (row["last_seen_ts"], row["last_seen_ip"]) == (1, "192.0.2.1")

    before = now_ms()
    assert await server.hs.housekeeping.device_activity.flush() == 1
    resp = await alice.devices()
    (device,) = resp.devices
    assert device.id == alice.device_id
    assert device.last_seen_ip == "127.0.0.1"
    assert device.last_seen_date.timestamp() * 1000 >= before - 60_000


async def test_last_seen_is_flushed_at_stop(make_server, fresh_dsn):
    server = await make_server(housekeeping={**QUIET, "last_seen_flush_s": 3600})
    alice = await server.client()
    await server.db.execute("UPDATE devices SET last_seen_ts = 1 WHERE user_id = $1", alice.user_id)
    await alice.whoami()
    await server.close()
    db = Database(fresh_dsn, 1, 1)
    await db.open()
    try:
        ts = await db.fetchval("SELECT last_seen_ts FROM devices WHERE user_id = $1", alice.user_id)
    finally:
        await db.close()
    assert ts > 1


# --- deactivation with erase ------------------------------------------------------------------


async def _deactivate(server, client, erase: bool) -> None:
    status, body = await server.request(
        "POST",
        f"{V3}/account/deactivate",
        token=client.access_token,
        json={
            "erase": erase,
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": client.user_id},
                "password": PASSWORD,
            },
        },
    )
    assert status == 200, body


async def _contents(client, room_id: str) -> list[tuple[str, str, dict]]:
    resp = await client.room_messages(room_id, start="", limit=100)
    assert isinstance(resp, RoomMessagesResponse), resp
    return [(e.sender, e.source["type"], e.source["content"]) for e in reversed(resp.chunk)]


async def test_deactivate_with_erase_redacts_the_users_messages(make_server):
    server = await make_server(housekeeping={**QUIET, "erasure_batch": 2})
    alice, bob, carol = await server.client(), await server.client(), await server.client()
    # alice made the room: its state events are hers, and must stay whole.
    room_id = await _shared_room(alice, bob, carol)
    await alice.room_put_state(room_id, "m.room.topic", {"topic": "the plan"})
    for i in range(5):
        resp = await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": f"a{i}"}
        )
        assert isinstance(resp, RoomSendResponse), resp
    await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "from bob"})
    await carol.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "from carol"})
    await bob.room_messages(room_id, start="", limit=100)  # now in the event cache
    await alice.set_displayname("Alice Example")
    status, _ = await server.request(
        "PUT",
        f"{V3}/user/{alice.user_id}/account_data/org.example.notes",
        token=alice.access_token,
        json={"secret": "notes"},
    )
    assert status == 200

    await _deactivate(server, carol, erase=False)
    await _deactivate(server, alice, erase=True)
    # The request only records the erasure; the work is the task's.
    rows = await server.db.fetch("SELECT user_id FROM user_erasures")
    assert [r["user_id"] for r in rows] == [alice.user_id]
    texts = [c.get("body") for s, t, c in await _contents(bob, room_id) if s == alice.user_id]
    assert "a0" in texts

    # One batch, then the rest: resumable from the row's cursor.
    eraser = server.hs.housekeeping.eraser
    assert await eraser.step(alice.user_id) == 2
    cursor = await server.db.fetchval(
        "SELECT after_ordering FROM user_erasures WHERE user_id = $1", alice.user_id
    )
    assert cursor > -(2**63)
    assert await server.hs.housekeeping.runner.run_task("erasure") >= 4
    assert await server.db.fetchval("SELECT count(*) FROM user_erasures") == 0

    messages = await _contents(bob, room_id)
    from_alice = [(t, c) for s, t, c in messages if s == alice.user_id]
    assert [c for t, c in from_alice if t == "m.room.message"] == [{}] * 5
    members = [c for t, c in from_alice if t == "m.room.member"]
    assert members and all(set(c) == {"membership"} for c in members), members
    others = {c.get("body") for s, t, c in messages if t == "m.room.message" and s != alice.user_id}
    assert others == {"from bob", "from carol"}  # carol deactivated without erase
    stored = await server.db.fetchval(
        "SELECT json FROM events WHERE sender = $1 AND type = 'm.room.message' LIMIT 1",
        alice.user_id,
    )
    event = orjson.loads(stored)
    assert event["content"] == {} and "hashes" in event and "signatures" in event
    # Room state that auth and clients rely on is not erased (see erasure.py).
    topic = await bob.room_get_state_event(room_id, "m.room.topic")
    assert topic.content == {"topic": "the plan"}, topic
    create = await bob.room_get_state_event(room_id, "m.room.create")
    assert "room_version" in create.content, create
    # The non-event data goes too: account data, and the profile others see.
    assert not await server.db.fetchval(
        "SELECT count(*) FROM account_data WHERE user_id = $1", alice.user_id
    )
    assert (
        await server.db.fetchval(
            "SELECT displayname FROM profiles WHERE user_id = $1", alice.user_id
        )
        is None
    )


async def test_deactivate_with_erase_starts_the_erasure_at_once(make_server):
    """The erasure task runs right after the deactivation, not at its next period (an
    hour here): SyTest 32room-getevent fetches the event over federation a moment later
    and expects it redacted."""
    server = await make_server(housekeeping={"erasure_interval_s": 3600, "tick_s": 3600})
    alice, bob = await server.client(), await server.client()
    room_id = await _shared_room(alice, bob)
    resp = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    assert isinstance(resp, RoomSendResponse), resp
    await _deactivate(server, alice, erase=True)

    async def erased() -> bool:
        return not await server.db.fetchval("SELECT count(*) FROM user_erasures")

    for _ in range(400):  # bounded; the pass condition is the state, not the time
        if await erased():
            break
        await asyncio.sleep(0.05)
    assert await erased()
    stored = await server.hs.event_store.get_event(resp.event_id)
    assert stored.content == {}
