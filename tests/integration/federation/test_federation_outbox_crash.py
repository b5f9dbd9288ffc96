"""The federation outbox survives a crash: what a server committed reaches the other
server even when the process dies (kill -9) right after answering the client.

Server A runs as a child process (`homeserver run`), server B in this process. B's user
is in A's room; B's federation listener is down while A's user sends messages, a
to-device message to B's user and signs in on a new device (a device-list update).
A is killed with SIGKILL right after the last message's 200, then started again on the
same database; B comes back, and must receive every message, the to-device message and
the device-list update.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import yaml
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomPreset,
    RoomSendResponse,
    RoomVisibility,
    ToDeviceMessage,
    ToDeviceResponse,
)

from homeserver.keys import write_signing_key
from tests.federation_ca import TEST_HOSTS, TestCA, start_federating_server
from tests.harness import PASSWORD
from tests.integration.federation.helpers import (
    eventually,
    start_federation_listener,
    stop_federation_listener,
)

ROOT = Path(__file__).resolve().parents[3]
MESSAGES = 20
# Members of a server that is not admitted, written into A's current state as stand-ins
# (as federation_helpers.remote_member does): in a crowded room, finding the servers to
# send to takes milliseconds, which is the window in which a hand-off after the commit
# loses events. Never contacted: the server is not admitted.
CROWD = 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChildServer:
    """Server A: `homeserver run` in a child process, restartable on its database."""

    def __init__(self, tmp_path: Path, ca: TestCA, dsn: str, allowed: list[str]):
        self.fed_port = _free_port()
        self.client_port = _free_port()
        self.server_name = f"hs1.test.local:{self.fed_port}"
        self.url = f"http://127.0.0.1:{self.client_port}"
        data_dir = tmp_path / "server-a"
        data_dir.mkdir()
        write_signing_key(data_dir / "signing.key")
        cert, key = ca.issue("hs1.test.local")
        config = {
            "server_name": self.server_name,
            "data_dir": str(data_dir),
            "listeners": {"client": f"127.0.0.1:{self.client_port}"},
            "database": {"dsn": dsn, "min_size": 1, "max_size": 5},
            "registration": {"open": True, "shared_secret": uuid.uuid4().hex},
            "rate_limits": {"enabled": False},
            "federation": {
                "listen": f"127.0.0.1:{self.fed_port}",
                "tls_certificate": str(cert),
                "tls_private_key": str(key),
                "ca_bundle": str(ca.ca_path),
                "allowed_servers": allowed,
                "allow_private_addresses": True,
                "resolve_overrides": TEST_HOSTS,
            },
        }
        self.config_path = tmp_path / "server-a.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp_path / "server-a.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    async def start(self) -> None:
        self.runs += 1
        with open(self.log_path, "a") as log:
            log.write(f"--- run {self.runs}\n")
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "homeserver",
                "run",
                "-c",
                str(self.config_path),
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):  # 30 s at most
                if self.proc.returncode is not None:
                    raise AssertionError(f"server A exited: {self.log_path.read_text()[-2000:]}")
                try:
                    async with http.get(self.url + "/_matrix/client/versions") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server A did not start")

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing in memory survives."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)
        assert self.proc.returncode == -signal.SIGKILL

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _nio(url: str, user_id: str, *, store_path: Path | None = None) -> AsyncClient:
    config = AsyncClientConfig(encryption_enabled=store_path is not None, store_sync_tokens=False)
    return AsyncClient(url, user_id, config=config, store_path=str(store_path or ""))


async def test_a_crash_after_commit_loses_nothing_for_the_other_server(
    make_server, fresh_dsns, ca, tmp_path
):
    hs_b = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    a = ChildServer(tmp_path, ca, await fresh_dsns(), ["hs2.test.local"])
    clients: list[AsyncClient] = []
    try:
        await a.start()
        alice = _nio(a.url, f"@alice:{a.server_name}")
        clients.append(alice)
        assert isinstance(await alice.register("alice", PASSWORD), RegisterResponse)
        created = await alice.room_create(
            visibility=RoomVisibility.public, preset=RoomPreset.public_chat, alias="crash"
        )
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        bob = await hs_b.client("bob")
        assert isinstance(await bob.join(f"#crash:{a.server_name}"), JoinResponse)
        await _crowd(a, room_id)

        # B records every transaction it accepts from A.
        received: list[dict] = []
        receiver = hs_b.hs.federation.transactions
        original = receiver.receive

        async def receive(origin, txn_id, content):
            answer = await original(origin, txn_id, content)
            if origin == a.server_name:
                received.append(content)
            return answer

        receiver.receive = receive

        # B is down: everything below waits in A's queue.
        await stop_federation_listener(hs_b)
        store = tmp_path / "alice-device-2"
        store.mkdir()
        alice2 = _nio(a.url, alice.user_id, store_path=store)
        clients.append(alice2)
        assert isinstance(await alice2.login(PASSWORD), LoginResponse)
        await alice2.keys_upload()  # the new device's keys: a device-list update for B
        ping = ToDeviceMessage("org.example.ping", bob.user_id, bob.device_id, {"body": "ping"})
        assert isinstance(await alice.to_device(ping), ToDeviceResponse)
        sent: list[str] = []
        for i in range(MESSAGES):
            resp = await alice.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"}
            )
            assert isinstance(resp, RoomSendResponse), resp
            sent.append(resp.event_id)
        await a.kill()  # right after the last 200

        # A leaves its lease on B's queue behind (a crashed process does); it would run
        # out after two minutes, which the test does not wait for.
        await _expire_leases(a)

        await start_federation_listener(hs_b)
        await a.start()
        # B talks to A (a typing notice): A knows B is back and sends what waits for it.
        await bob.room_typing(room_id, True, timeout=5000)

        async def missing_on_b() -> list[str]:
            stored = await hs_b.hs.event_store.get_events(sent)
            return [
                f"m{i}"
                for i, event_id in enumerate(sent)
                if event_id not in stored or stored[event_id].status is not None
            ]

        missing = await missing_on_b()
        for _ in range(300):  # 30 s at most
            if not missing:
                break
            await asyncio.sleep(0.1)
            missing = await missing_on_b()
        assert missing == [], f"messages A committed that never reached B: {missing}"

        bodies: list[str] = []

        async def ping_for_bob():
            resp = await bob.sync(timeout=0)
            bodies.extend(e.source["content"].get("body") for e in resp.to_device_events)
            return "ping" in bodies

        await eventually(ping_for_bob, timeout=30)

        def device_updates() -> list[dict]:
            return [
                edu["content"]
                for txn in received
                for edu in txn.get("edus", [])
                if edu["edu_type"] == "m.device_list_update"
            ]

        async def new_device_announced():
            return [u for u in device_updates() if u.get("device_id") == alice2.device_id]

        [update] = await eventually(new_device_announced, timeout=30)
        assert update["user_id"] == alice.user_id and update["deleted"] is False
    finally:
        for client in clients:
            await client.close()
        await a.stop()


async def _on_a_database(a: ChildServer, query: str, *args) -> None:
    dsn = yaml.safe_load(a.config_path.read_text())["database"]["dsn"]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


async def _expire_leases(a: ChildServer) -> None:
    await _on_a_database(a, "UPDATE federation_destinations SET lease_until_ts = 0")


async def _crowd(a: ChildServer, room_id: str) -> None:
    await _on_a_database(
        a,
        "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
        " SELECT $1, 'm.room.member', '@crowd' || g || ':crowd.invalid', '$stand-in-' || g,"
        " 'join' FROM generate_series(1, $2) g",
        room_id,
        CROWD,
    )
