"""Issue 17 items 8 and 9: `homeserver run` as a process, stopped and killed.

SIGTERM with a /sync long-poll open answers it and exits at once (it used to wait out
the poll); the embedded PostgreSQL is stopped by SIGTERM however the previous run ended,
and a start after a crash waits for the old database to be gone instead of failing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import aiohttp
import psutil

from tests.processes import free_port, generate_config, homeserver, wait_ready


async def _register(http: aiohttp.ClientSession, url: str, name: str) -> str:
    body: dict = {"username": name, "password": "correct horse battery staple"}
    async with http.post(url + "/_matrix/client/v3/register", json=body) as resp:
        first = await resp.json()
    body["auth"] = {"type": "m.login.dummy", "session": first.get("session")}
    async with http.post(url + "/_matrix/client/v3/register", json=body) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
    return answer["access_token"]


async def test_sigterm_answers_open_long_polls_and_exits(tmp_path, fresh_dsn):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = await generate_config(tmp_path, port, "--database-dsn", fresh_dsn)
    proc = await homeserver("run", "-c", str(config))
    try:
        await wait_ready(url, proc)
        async with aiohttp.ClientSession() as http:
            token = await _register(http, url, "poller")
            headers = {"Authorization": f"Bearer {token}"}
            sync = url + "/_matrix/client/v3/sync"
            async with http.get(sync + "?timeout=0", headers=headers) as resp:
                since = (await resp.json())["next_batch"]

            async def long_poll() -> int:
                async with http.get(f"{sync}?timeout=30000&since={since}", headers=headers) as resp:
                    await resp.read()
                    return resp.status

            polls = [asyncio.create_task(long_poll()) for _ in range(3)]
            await asyncio.sleep(0.5)  # let them reach the notifier
            assert not any(p.done() for p in polls)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # Generous bounds: a broken build waits out the 30 s poll.
            statuses = await asyncio.wait_for(asyncio.gather(*polls), 20)
            await asyncio.wait_for(proc.wait(), 20)
            print(f"\nSIGTERM to exit with 3 long-polls open: {time.monotonic() - started:.2f} s")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()
    assert statuses == [200, 200, 200]
    assert proc.returncode == 0


def _postmaster(data: Path) -> psutil.Process | None:
    try:
        pid = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
        process = psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return process if process.status() != psutil.STATUS_ZOMBIE else None


async def _gone(process: psutil.Process) -> bool:
    for _ in range(300):
        if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_embedded_postgres_survives_crashes_and_stops_on_sigterm(embedded_pg_dir):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = embedded_pg_dir
    config = await generate_config(base, port)
    data = base / "data"
    procs = []
    try:
        # 1. A run killed with SIGKILL leaves its PostgreSQL running and its PID behind.
        first = await homeserver("run", "-c", str(config))
        procs.append(first)
        await wait_ready(url, first)
        first.kill()
        await first.wait()
        postmaster = _postmaster(data)
        assert postmaster is not None and postmaster.is_running()

        # 2. The database is killed too; a start right away waits for its remains.
        os.kill(postmaster.pid, signal.SIGKILL)
        second = await homeserver("run", "-c", str(config))
        procs.append(second)
        await wait_ready(url, second)
        second.kill()
        await second.wait()

        # 3. After all that, SIGTERM stops the database with the server.
        third = await homeserver("run", "-c", str(config))
        procs.append(third)
        await wait_ready(url, third)
        postmaster = _postmaster(data)
        assert postmaster is not None
        third.send_signal(signal.SIGTERM)
        await asyncio.wait_for(third.wait(), 60)
        assert third.returncode == 0
        assert await _gone(postmaster)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.communicate()
        leftover = _postmaster(data)
        if leftover is not None:
            leftover.kill()
        shutil.rmtree(base, ignore_errors=True)
