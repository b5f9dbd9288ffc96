"""`homeserver` run as a child process, as an operator runs it (for tests of the command
line, signals, restarts and crashes)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def homeserver(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "homeserver",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_to_end(*args: str) -> tuple[int, str]:
    proc = await homeserver(*args)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def generate_config(tmp_path: Path, port: int, *extra: str) -> Path:
    out = tmp_path / "homeserver.yaml"
    code, err = await run_to_end(
        "generate-config",
        "--server-name",
        "cli.test",
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        f"127.0.0.1:{port}",
        "--open-registration",
        "--no-rate-limits",
        "--output",
        str(out),
        *extra,
    )
    assert code == 0, err
    return out


async def wait_ready(url: str, proc) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(1200):
            if proc.returncode is not None:
                _, err = await proc.communicate()
                raise AssertionError(f"server exited early: {err.decode()[-2000:]}")
            try:
                async with http.get(url + "/_matrix/client/versions") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not start")
