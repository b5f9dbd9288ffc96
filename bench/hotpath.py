"""The per-request hot path of one server: whoami requests/s and incremental /sync times.

    .venv/bin/python -m bench.hotpath [--seconds 15] [--port 48550] [--source DIR]

Starts this server (or the tree at --source) on loopback with a fresh database, then:
whoami at 16 concurrent clients for --seconds (requests/s; each request is an access
token check and nothing else), and /sync of a user in 20 rooms with unread messages, an
uploaded device with one-time keys and a fallback key: the incremental /sync after one
new message from another user (p50, p95) and the empty incremental /sync (p50). Bounded
in count and time; a figure, never a pass or fail. Run it under `flock /tmp/bench.lock`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
from pathlib import Path

from bench.client import PREFIX, new_session, register
from bench.servers import REPO_DIR, Ours, recreate_database
from bench.stats import percentile

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOMS = 20
SYNC_ROUNDS = 150
WHOAMI_CONCURRENCY = 16


async def _whoami_rate(user, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await user.call("GET", f"{PREFIX}/account/whoami")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(WHOAMI_CONCURRENCY)))
    return done / (time.perf_counter() - started)


def _public_key() -> str:
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


async def _upload_keys(user) -> None:
    # Unsigned curve25519 keys: what the server checks of signed ones is not measured here.
    body = {
        "one_time_keys": {f"curve25519:K{i}": _public_key() for i in range(50)},
        "fallback_keys": {"curve25519:F1": _public_key()},
    }
    await user.call("POST", f"{PREFIX}/keys/upload", body=body)


async def run(base_url: str, seconds: float, rounds: int = SYNC_ROUNDS) -> dict[str, float | None]:
    async with new_session() as session:
        stamp = int(time.time())
        alice = await register(session, base_url, f"hot_a{stamp}", "bench-password-1")
        bob = await register(session, base_url, f"hot_b{stamp}", "bench-password-1")
        rooms = [await alice.create_room(name=f"r{i}") for i in range(ROOMS)]
        for room in rooms:
            await bob.join(room)
            await bob.send_text(room, "hello")
        await _upload_keys(alice)
        whoami = await _whoami_rate(alice, seconds)
        since = (await alice.sync()).body["next_batch"]
        with_message, empty = [], []
        for i in range(rounds):
            await bob.send_text(rooms[i % ROOMS], f"m{i}")
            resp = await alice.sync(since=since)
            with_message.append(resp.seconds * 1000)
            since = resp.body["next_batch"]
            resp = await alice.sync(since=since)
            empty.append(resp.seconds * 1000)
            since = resp.body["next_batch"]
        return {
            "whoami_per_s": whoami,
            "sync_incremental_p50_ms": percentile(with_message, 50),
            "sync_incremental_p95_ms": percentile(with_message, 95),
            "sync_empty_p50_ms": percentile(empty, 50),
        }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--port", type=int, default=48550)
    parser.add_argument("--source", type=Path, default=REPO_DIR)
    parser.add_argument("--sync-rounds", type=int, default=SYNC_ROUNDS)
    parser.add_argument("--url", help="an already running server instead of starting one")
    args = parser.parse_args()
    if args.url:
        figures = await run(args.url, args.seconds, args.sync_rounds)
    else:
        server = Ours(
            "ours", args.port, Path(f"/tmp/bench-hotpath-{args.port}"), source_dir=args.source
        )
        server.install()
        db_name = f"bench_hotpath_{args.port}"
        await recreate_database(ADMIN_DSN, db_name)
        server.start(server.configure(db_name, ADMIN_DSN))
        try:
            await server.wait_ready()
            figures = await run(server.base_url, args.seconds, args.sync_rounds)
        finally:
            server.stop()
        print(f"server: {server.version}")
    for name, value in figures.items():
        print(f"{name}: {value:.2f}" if value is not None else f"{name}: -")


if __name__ == "__main__":
    asyncio.run(main())
