"""Issue 16 item 1: per-process caches follow changes made through another process.

Two `homeserver run` processes (A and B) share one database. Each caches access tokens'
sessions, devices' one-time key counts, push rules and unread counts in its own memory;
a change made through B (logout, device deletion, password change, deactivation, an
admin lock, key upload and claim, a push rule, a read receipt) must be what A answers
right after. Each check first makes A cache the old answer (and the metrics show A
answered from its cache), so a cache that missed an invalidation would fail it.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import aiohttp
import pytest_asyncio
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DeleteDevicesResponse,
    KeysClaimResponse,
    KeysUploadResponse,
    LoginResponse,
    LogoutResponse,
    PushRuleKind,
    RegisterResponse,
    RoomSendResponse,
    SyncResponse,
    WhoamiError,
    WhoamiResponse,
)

from tests.integration.sliding_sync.helpers import Connection, list_ids
from tests.processes import free_port, generate_config, homeserver, run_to_end, wait_ready

PASSWORD = "correct horse battery staple"
SERVER = "cli.test"


class Process:
    def __init__(self, url: str, metrics_url: str, config: Path, proc):
        self.url = url
        self.metrics_url = metrics_url
        self.config = config
        self.proc = proc
        self.clients: list[AsyncClient] = []

    def client(self, localpart: str, *, encryption: bool = False, store: Path | None = None):
        config = AsyncClientConfig(encryption_enabled=encryption, store_sync_tokens=False)
        client = AsyncClient(
            self.url, f"@{localpart}:{SERVER}", config=config, store_path=str(store or "")
        )
        self.clients.append(client)
        return client

    async def register(self, localpart: str, **kw) -> AsyncClient:
        client = self.client(localpart, **kw)
        assert isinstance(await client.register(localpart, PASSWORD), RegisterResponse)
        return client

    async def login(self, localpart: str, **kw) -> AsyncClient:
        client = self.client(localpart, **kw)
        assert isinstance(await client.login(PASSWORD), LoginResponse)
        return client

    def session_of(self, other: AsyncClient) -> AsyncClient:
        """A client on this process using another client's access token."""
        client = self.client(other.user_id.split(":")[0][1:])
        client.restore_login(other.user_id, other.device_id, other.access_token)
        return client

    async def cache_hits(self, cache: str) -> float:
        async with aiohttp.ClientSession() as http, http.get(self.metrics_url) as resp:
            text = await resp.text()
        pattern = (
            r"^homeserver_process_cache_lookups_total"
            + re.escape(f'{{cache="{cache}",result="hit"}}')
            + r" (\S+)$"
        )
        match = re.search(pattern, text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


async def _start(tmp_path: Path, dsn: str) -> Process:
    tmp_path.mkdir()
    port, metrics_port = free_port(), free_port()
    config = await generate_config(
        tmp_path,
        port,
        "--database-dsn",
        dsn,
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
    )
    url = f"http://127.0.0.1:{port}"
    proc = await homeserver("run", "-c", str(config))
    await wait_ready(url, proc)
    return Process(url, f"http://127.0.0.1:{metrics_port}/metrics", config, proc)


@pytest_asyncio.fixture(loop_scope="session")
async def two_processes(tmp_path, fresh_dsn):
    started: list[Process] = []
    try:
        for name in ("a", "b"):
            started.append(await _start(tmp_path / name, fresh_dsn))
        yield started[0], started[1]
    finally:
        for process in started:
            for client in process.clients:
                await client.close()
            if process.proc.returncode is None:
                process.proc.send_signal(signal.SIGTERM)
            await process.proc.communicate()


async def _whoami_ok(client: AsyncClient) -> bool:
    resp = await client.whoami()
    if isinstance(resp, WhoamiResponse):
        assert resp.user_id == client.user_id
        return True
    assert isinstance(resp, WhoamiError)
    return False


async def _raw(process: Process, method: str, path: str, token: str, body: dict) -> tuple:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            process.url + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)


def _password_auth(user_id: str) -> dict:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": PASSWORD,
    }


async def test_tokens_refused_on_one_process_after_changes_through_the_other(two_processes):
    a, b = two_processes
    alice_first = await a.register("alice")
    sessions_on_b = [await b.login("alice") for _ in range(4)]
    on_a = [a.session_of(s) for s in [alice_first, *sessions_on_b]]
    hits = await a.cache_hits("sessions")
    for client in on_a:
        assert await _whoami_ok(client)
        assert await _whoami_ok(client)  # the second from A's cache
    assert await a.cache_hits("sessions") >= hits + len(on_a)

    # Logout through B: A refuses that token at once, and only that one.
    assert isinstance(await sessions_on_b[0].logout(), LogoutResponse)
    assert not await _whoami_ok(on_a[1])
    assert await _whoami_ok(on_a[2])

    # Device deletion through B.
    deleted = await sessions_on_b[1].delete_devices(
        [sessions_on_b[1].device_id], auth=_password_auth(alice_first.user_id)
    )
    assert isinstance(deleted, DeleteDevicesResponse)
    assert not await _whoami_ok(on_a[2])
    assert await _whoami_ok(on_a[3])

    # Password change through B logs out every other device, on A too.
    status, _ = await _raw(
        b,
        "POST",
        "/_matrix/client/v3/account/password",
        sessions_on_b[2].access_token,
        {"new_password": PASSWORD, "auth": _password_auth(alice_first.user_id)},
    )
    assert status == 200
    assert not await _whoami_ok(on_a[0])
    assert not await _whoami_ok(on_a[4])
    assert await _whoami_ok(on_a[3])

    # logout/all through B.
    assert isinstance(await sessions_on_b[2].logout(all_devices=True), LogoutResponse)
    assert not await _whoami_ok(on_a[3])


async def test_deactivation_and_admin_actions_reach_the_other_process(two_processes):
    a, b = two_processes
    carol = await a.register("carol")
    dave = await a.register("dave")
    ivan = await a.register("ivan")
    admin = await a.register("admin")
    for client in (carol, dave, ivan, admin):
        assert await _whoami_ok(client)  # cached on A

    carol_on_b = b.session_of(carol)
    status, _ = await _raw(
        b,
        "POST",
        "/_matrix/client/v3/account/deactivate",
        carol_on_b.access_token,
        {"auth": _password_auth(carol.user_id)},
    )
    assert status == 200
    assert not await _whoami_ok(carol)

    # The operator's command (a third process) makes `admin` an admin: A, which cached
    # its session as a non-admin one, follows.
    users_path = f"/_synapse/admin/v2/users/{dave.user_id}"
    status, body = await _raw(a, "GET", users_path, admin.access_token, {})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    code, err = await run_to_end("make-admin", "-c", str(b.config), "admin")
    assert code == 0, err
    status, _ = await _raw(a, "GET", users_path, admin.access_token, {})
    assert status == 200

    # Suspension through B: dave, whose session A cached, may no longer create rooms on A.
    status, _ = await _raw(
        b,
        "PUT",
        f"/_synapse/admin/v1/suspend/{dave.user_id}",
        admin.access_token,
        {"suspend": True},
    )
    assert status == 200
    status, body = await _raw(a, "POST", "/_matrix/client/v3/createRoom", dave.access_token, {})
    assert (status, body["errcode"]) == (403, "M_USER_SUSPENDED")

    # A lock through B (which also logs the account out everywhere).
    status, _ = await _raw(
        b,
        "PUT",
        f"/_synapse/admin/v2/users/{ivan.user_id}",
        admin.access_token,
        {"locked": True},
    )
    assert status == 200
    assert not await _whoami_ok(ivan)


def _otk_count(sync: SyncResponse) -> int:
    return sync.device_key_count.signed_curve25519 or 0


async def test_one_time_key_counts_follow_uploads_and_claims_through_the_other_process(
    two_processes, tmp_path
):
    a, b = two_processes
    (tmp_path / "erin").mkdir()
    (tmp_path / "frank").mkdir()
    erin_on_b = await b.register("erin", encryption=True, store=tmp_path / "erin")
    erin_on_a = a.session_of(erin_on_b)
    first = await erin_on_a.sync(timeout=0)
    assert isinstance(first, SyncResponse) and _otk_count(first) == 0
    hits = await a.cache_hits("key_counts")
    again = await erin_on_a.sync(timeout=0, since=first.next_batch)
    assert _otk_count(again) == 0
    assert await a.cache_hits("key_counts") > hits  # A answers from its cache

    uploaded = await erin_on_b.keys_upload()
    assert isinstance(uploaded, KeysUploadResponse)
    count = uploaded.signed_curve25519_count
    assert count > 0
    sync = await erin_on_a.sync(timeout=0, since=again.next_batch)
    assert _otk_count(sync) == count

    frank = await b.register("frank", encryption=True, store=tmp_path / "frank")
    claimed = await frank.keys_claim({erin_on_b.user_id: [erin_on_b.device_id]})
    assert isinstance(claimed, KeysClaimResponse)
    assert claimed.one_time_keys[erin_on_b.user_id][erin_on_b.device_id]
    sync = await erin_on_a.sync(timeout=0, since=sync.next_batch)
    assert _otk_count(sync) == count - 1


async def _room_with_unread(a: Process) -> tuple[AsyncClient, AsyncClient, str, list[str]]:
    grace = await a.register("grace")
    heidi = await a.register("heidi")
    room_id = (await grace.room_create(invite=[heidi.user_id])).room_id
    await heidi.join(room_id)
    sent = []
    for body in ("one", "two"):
        resp = await heidi.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
        assert isinstance(resp, RoomSendResponse)
        sent.append(resp.event_id)
    return grace, heidi, room_id, sent


async def test_push_rules_and_unread_counts_follow_the_other_process(two_processes):
    a, b = two_processes
    grace, heidi, room_id, sent = await _room_with_unread(a)
    grace_on_b = await b.login("grace")

    # Unread counts are cached on A from this initial sync (the second one hits).
    sync = await grace.sync(timeout=0, full_state=True)
    assert sync.rooms.join[room_id].unread_notifications.notification_count == 2
    hits = await a.cache_hits("unread_counts")
    grace.next_batch = None
    sync = await grace.sync(timeout=0, full_state=True)
    assert sync.rooms.join[room_id].unread_notifications.notification_count == 2
    assert await a.cache_hits("unread_counts") > hits

    # A read receipt sent through B: A's long-poll wakes for it, and the counts follow, in
    # that incremental sync and in the next initial sync (A's cached entry is gone).
    read = await grace_on_b.update_receipt_marker(room_id, sent[0], thread_id=None)
    assert not hasattr(read, "status_code"), read
    woken = await grace.sync(timeout=10_000, since=sync.next_batch)
    assert woken.rooms.join[room_id].unread_notifications.notification_count == 1
    grace.next_batch = None
    sync = await grace.sync(timeout=0, full_state=True)
    assert sync.rooms.join[room_id].unread_notifications.notification_count == 1

    # A push rule set through B (this room: don't notify) applies on A: the unread
    # message and a new one count for nothing.
    rule = await grace_on_b.set_pushrule("global", PushRuleKind.room, room_id, actions=[])
    assert not hasattr(rule, "status_code"), rule
    await heidi.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "three"})
    sync = await grace.sync(timeout=10_000, since=sync.next_batch)
    assert sync.rooms.join[room_id].unread_notifications.notification_count == 0


async def test_redactions_reach_the_other_process_event_cache(two_processes):
    """Each process keeps the events it read in memory; an event redacted through A must
    be served redacted by B, which had it cached (with nginx's roles, A persists every
    redaction and B answers the /syncs)."""
    a, b = two_processes
    grace, heidi, room_id, sent = await _room_with_unread(a)
    grace_on_b = await b.login("grace")
    path = f"/_matrix/client/v3/rooms/{room_id}/event/{sent[1]}"
    for _ in range(2):  # the second read is served from B's cache
        status, event = await _raw(b, "GET", path, grace_on_b.access_token, {})
        assert status == 200 and event["content"]["body"] == "two", event
    redaction = await heidi.room_redact(room_id, sent[1], reason="sent by mistake")
    assert not hasattr(redaction, "status_code"), redaction
    # The redaction is visible on B once its events stream says so.
    await grace_on_b.sync(timeout=10_000, full_state=True)
    status, event = await _raw(b, "GET", path, grace_on_b.access_token, {})
    assert status == 200 and event["content"] == {}, event
    assert event["unsigned"]["redacted_because"]["event_id"] == redaction.event_id


def _bodies(sync: SyncResponse, room_id: str) -> list[str]:
    room = sync.rooms.join.get(room_id)
    return [getattr(e, "body", "") for e in room.timeline.events] if room else []


async def test_ignore_list_and_sync_presence_follow_the_other_process(two_processes):
    """A woken /sync reads neither the ignore list nor the user's presence from the
    database while nothing changed them; a change through B must still reach A."""
    a, b = two_processes
    grace, heidi, room_id, _ = await _room_with_unread(a)
    grace_on_b = await b.login("grace")
    sync = await grace.sync(timeout=0, full_state=True)  # A caches both
    await heidi.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "seen"})
    sync = await grace.sync(timeout=10_000, since=sync.next_batch)
    assert "seen" in _bodies(sync, room_id)

    # Grace ignores heidi through B: her long-poll on A wakes for it, and heidi's next
    # message is hidden there.
    status, _ = await _raw(
        b,
        "PUT",
        f"/_matrix/client/v3/user/{grace.user_id}/account_data/m.ignored_user_list",
        grace_on_b.access_token,
        {"ignored_users": {heidi.user_id: {}}},
    )
    assert status == 200
    sync = await grace.sync(timeout=10_000, since=sync.next_batch)
    await heidi.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hidden"})
    await grace.sync(timeout=0, since=sync.next_batch)
    grace.next_batch = None
    sync = await grace.sync(timeout=0, full_state=True)
    assert "seen" not in _bodies(sync, room_id) and "hidden" not in _bodies(sync, room_id)

    # Grace goes "unavailable" through B; her next /sync on A (set_presence defaults to
    # online) sets her online again, as it would without the cache.
    status, _ = await _raw(
        b,
        "PUT",
        f"/_matrix/client/v3/presence/{grace.user_id}/status",
        grace_on_b.access_token,
        {"presence": "unavailable"},
    )
    assert status == 200
    sync = await grace.sync(timeout=10_000, since=sync.next_batch)  # woken by it
    await grace.sync(timeout=0, since=sync.next_batch)
    status, body = await _raw(
        a, "GET", f"/_matrix/client/v3/presence/{grace.user_id}/status", grace.access_token, {}
    )
    assert status == 200 and body["presence"] == "online", body


class _Over:
    """A process as the sliding sync test helper's `server`: raw requests to it."""

    def __init__(self, process: Process):
        self.process = process

    async def request(self, method: str, path: str, *, token: str, json: dict) -> tuple:
        return await _raw(self.process, method, path, token, json)


async def test_sliding_sync_room_list_and_sent_rooms_follow_the_other_process(two_processes):
    """Each process keeps a user's room list rows and what a connection had sent as of the
    positions it handed out. Renames, invites and messages made through A must show in
    B's room list, and a connection answered by A and B in turn must get each room once."""
    a, b = two_processes
    ivan = await a.register("ivan")
    judy = await a.register("judy")
    first = (await ivan.room_create(name="first")).room_id
    second = (await ivan.room_create(name="second")).room_id
    body = {
        "lists": {
            "all": {"ranges": [[0, 9]], "timeline_limit": 1},
            "renamed": {
                "ranges": [[0, 9]],
                "timeline_limit": 1,
                "filters": {"room_name_like": "renamed"},
            },
        }
    }
    on_a, on_b = Connection(_Over(a), ivan.access_token), Connection(_Over(b), ivan.access_token)
    resp = await on_b.sync(body)
    assert list_ids(resp, "all") == [second, first] and resp["lists"]["renamed"]["count"] == 0
    on_b.pos = (await on_b.sync(body))["pos"]  # B answers from what it holds now

    await ivan.room_put_state(first, "m.room.name", {"name": "renamed"})
    third = (await judy.room_create(name="third", invite=[ivan.user_id])).room_id
    resp = await on_b.sync(body, timeout=10_000)
    for _ in range(20):  # until B's notifier has heard both (each wakes the poll)
        if resp["lists"]["all"]["count"] == 3 and resp["lists"]["renamed"]["count"] == 1:
            break
        resp = await on_b.sync(body, timeout=10_000)
    assert set(list_ids(resp, "all")) == {first, second, third}
    assert list_ids(resp, "renamed") == [first]

    # A answers the connection from B's position, then B from A's.
    on_a.pos = on_b.pos
    sent = await ivan.room_send(second, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    assert isinstance(sent, RoomSendResponse)
    resp = await on_a.sync(body, timeout=10_000)
    assert list_ids(resp, "all")[0] == second
    assert [e["event_id"] for e in resp["rooms"][second]["timeline"]] == [sent.event_id]
    on_b.pos = on_a.pos
    resp = await on_b.sync(body)
    assert second not in resp["rooms"], resp["rooms"].keys()  # A sent it already
    assert list_ids(resp, "all")[0] == second


async def test_a_process_runs_and_reports_the_gc_policy(two_processes):
    """homeserver/gc_policy.py is installed in a served process: the full collection it
    runs before freezing the start-up objects shows in the pause histogram."""
    a, _ = two_processes
    async with aiohttp.ClientSession() as http, http.get(a.metrics_url) as resp:
        text = await resp.text()
    match = re.search(
        r'^python_gc_pause_seconds_count\{generation="2"\} (\S+)$', text, re.MULTILINE
    )
    assert match is not None and float(match.group(1)) >= 1
