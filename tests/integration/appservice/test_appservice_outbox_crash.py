"""The appservice outbox survives a crash: what the server committed reaches the
appservice even when the process dies (kill -9) right after answering the client.

The server runs as a child process (`homeserver run`); the appservice is a small
recorder in this process, down while a user sends messages into a room the appservice's
bot is in. The server is killed with SIGKILL right after the last message's 200, then
started again on the same database with the appservice up: every message must arrive,
in order, in transactions whose IDs only grow.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import yaml
from aiohttp import web

from homeserver.keys import write_signing_key
from tests.integration.appservice.helpers import SERVER_NAME, free_port, write_registration
from tests.integration.federation.helpers import eventually

ROOT = Path(__file__).resolve().parents[3]
MESSAGES = 20


class Child:
    """The server in a child process, restartable on its database."""

    def __init__(self, tmp_path: Path, dsn: str, registration: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dsn = dsn
        data_dir = tmp_path / "server"
        data_dir.mkdir()
        write_signing_key(data_dir / "signing.key")
        config = {
            "server_name": SERVER_NAME,
            "data_dir": str(data_dir),
            "listeners": {"client": f"127.0.0.1:{self.port}"},
            "database": {"dsn": dsn, "min_size": 1, "max_size": 5},
            "registration": {"open": True, "shared_secret": uuid.uuid4().hex},
            "rate_limits": {"enabled": False},
            "app_services": [str(registration)],
        }
        self.config_path = tmp_path / "server.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp_path / "server.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with open(self.log_path, "a") as log:
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
                    raise AssertionError(f"server exited: {self.log_path.read_text()[-2000:]}")
                try:
                    async with http.get(self.url + "/_matrix/client/versions") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server did not start")

    async def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def sql(self, query: str, *args) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(query, *args)
        finally:
            await conn.close()


async def _call(http, method: str, url: str, token: str, body=None) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, json=body, headers=headers) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
        return answer


async def test_a_crash_after_commit_loses_no_transaction(fresh_dsns, tmp_path):
    reg = write_registration(tmp_path)
    child = Child(tmp_path, await fresh_dsns(), reg.path)
    received: list[tuple[int, dict]] = []

    async def transaction(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {reg.hs_token}"
        received.append((int(request.match_info["txn"]), await request.json()))
        return web.json_response({})

    app = web.Application()
    app.router.add_put("/_matrix/app/v1/transactions/{txn}", transaction)
    runner = web.AppRunner(app)
    await runner.setup()
    http = aiohttp.ClientSession()
    try:
        await child.start()
        api = child.url + "/_matrix/client/v3"
        alice = await _call(
            http,
            "POST",
            api + "/register",
            "",
            {"username": "alice", "password": "p" * 12, "auth": {"type": "m.login.dummy"}},
        )
        token = alice["access_token"]
        room = await _call(http, "POST", api + "/createRoom", token, {"preset": "public_chat"})
        room_id = room["room_id"]
        # The bridge's bot joins (as_token, no user_id: the registration's sender).
        await _call(http, "POST", f"{api}/join/{room_id}", reg.as_token, {})

        # The appservice is down: everything waits in the outbox.
        sent = []
        for i in range(MESSAGES):
            answer = await _call(
                http,
                "PUT",
                f"{api}/rooms/{room_id}/send/m.room.message/t{i}",
                token,
                {"msgtype": "m.text", "body": f"m{i}"},
            )
            sent.append(answer["event_id"])
        await child.kill()  # right after the last 200

        # A crashed process leaves its lease and backoff behind, which would run out
        # after minutes; the test does not wait for that.
        await child.sql("UPDATE appservice_state SET lease_until_ts = 0, retry_at_ts = 0")
        await web.TCPSite(runner, "127.0.0.1", reg.port).start()
        await child.start()

        def delivered() -> list[str]:
            return [
                e["event_id"]
                for _, body in received
                for e in body["events"]
                if e["type"] == "m.room.message"
            ]

        async def all_delivered() -> bool:
            return len(delivered()) >= MESSAGES

        await eventually(all_delivered, timeout=30)
        assert delivered() == sent, "messages missing, duplicated or out of order"
        txn_ids = [t for t, _ in received]
        assert txn_ids == sorted(set(txn_ids)), txn_ids
    finally:
        await http.close()
        await child.stop()
        await runner.cleanup()
