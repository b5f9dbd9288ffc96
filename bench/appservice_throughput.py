"""Delivery throughput to one application service (events/s), ours only.

    flock /tmp/bench.lock .venv/bin/python -m bench.appservice_throughput [--events 5000]

Starts the server in this process on a fresh database `bench_appservice` (on the
PostgreSQL of --admin-dsn), with one appservice: a recorder on a loopback port that
answers every transaction at once. 16 concurrent senders post N messages into a room
the appservice's bot is in; the figure is events/s from the first send to the last
event the appservice received (end to end: persisting, queueing, delivery).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import asyncpg
import yaml
from aiohttp import web
from nio import RoomPreset

from tests.harness import start_test_server

DB = "bench_appservice"


async def _fresh_db(admin_dsn: str) -> str:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await admin.close()
    return admin_dsn.rsplit("/", 1)[0] + "/" + DB


class Recorder:
    def __init__(self, hs_token: str):
        self.hs_token = hs_token
        self.events = 0
        self.transactions = 0
        self.first: float | None = None
        self.last = 0.0
        self.target = 0
        self.done = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.monotonic()
        self.first = self.first or now
        self.last = now
        self.transactions += 1
        self.events += sum(1 for e in body["events"] if e["type"] == "m.room.message")
        if self.target and self.events >= self.target:
            self.done.set()
        return web.json_response({})


async def main(admin_dsn: str, events: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-appservice-"))
    app = web.Application(client_max_size=64 * 1024 * 1024)
    hs_token = secrets.token_hex(16)
    recorder = Recorder(hs_token)
    app.router.add_put("/_matrix/app/v1/transactions/{txn}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    as_token = secrets.token_hex(16)
    reg = tmp / "registration.yaml"
    reg.write_text(
        yaml.safe_dump(
            {
                "id": "bench",
                "url": f"http://127.0.0.1:{port}",
                "as_token": as_token,
                "hs_token": hs_token,
                "sender_localpart": "_bench_bot",
                "namespaces": {"users": [{"exclusive": True, "regex": "@_bench_.*"}]},
                "rate_limited": False,
            }
        )
    )
    dsn = await _fresh_db(admin_dsn)
    server = await start_test_server(dsn, tmp / "server", app_services=[str(reg)])
    try:
        alice = await server.client("alice")
        room = await alice.room_create(preset=RoomPreset.public_chat)
        room_id = room.room_id
        status, _ = await server.request(
            "POST", f"/_matrix/client/v3/join/{room_id}", token=as_token, json={}
        )
        assert status == 200
        for _ in range(200):  # the room's first events are not counted
            if not await server.hs.appservices.store.pending_count("bench"):
                break
            await asyncio.sleep(0.05)
        recorder.events = recorder.transactions = 0
        recorder.first = None

        async def send_many(n: int, tag: str) -> None:
            queue = list(range(n))

            async def worker() -> None:
                while queue:
                    i = queue.pop()
                    status, _ = await server.request(
                        "PUT",
                        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{tag}{i}",
                        token=alice.access_token,
                        json={"msgtype": "m.text", "body": f"{tag} {i}"},
                    )
                    assert status == 200

            await asyncio.gather(*(worker() for _ in range(16)))

        # live
        recorder.target = events
        start = time.monotonic()
        await send_many(events, "live")
        await asyncio.wait_for(recorder.done.wait(), 300)
        live = events / (recorder.last - start)
        live_txns = recorder.transactions

        print(f"events: {events}")
        print(f"live: {live:,.0f} events/s end to end ({live_txns} transactions)")
    finally:
        await server.close()
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.admin_dsn, args.events))
