"""Two worker processes on one database behind a real nginx, configured by the files in
deploy/nginx/: the first worker writes every event, the second answers every /sync, every
message reaches every member, and when either worker stops, clients carry on through the
other with nothing lost."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import ssl
import sys
from pathlib import Path

import aiohttp
import yaml
from nio import AsyncClient, AsyncClientConfig, RegisterResponse, RoomMessageText

from bench.nginx import nginx_conf, render_federation, render_site
from tests.federation_ca import TestCA
from tests.harness import PASSWORD

ROOT = Path(__file__).resolve().parents[3]
USERS = 4
MESSAGES_EACH = 5
# Without it a sync after many messages is `limited` and starts at the latest ones.
WHOLE_TIMELINE = {"room": {"timeline": {"limit": 500}}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_http(url: str, proc, ssl_context=None) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.returncode is not None:
                raise AssertionError(f"{url}: process exited early")
            try:
                async with http.get(url, ssl=ssl_context) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


async def _requests_served(metrics_url: str, endpoint: str = "/sync") -> int:
    async with aiohttp.ClientSession() as http, http.get(metrics_url) as resp:
        text = await resp.text()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("matrix_http_requests_total{") and endpoint in line
    )


async def _collect(client: AsyncClient, room_id: str, want: set[str]) -> set[str]:
    seen: set[str] = set()
    for _ in range(20):  # bounded; each sync long-polls at most 5 s
        resp = await client.sync(timeout=5_000, since=client.next_batch, sync_filter=WHOLE_TIMELINE)
        room = getattr(resp, "rooms", None)
        if room is not None and room_id in room.join:
            seen |= {
                e.body for e in room.join[room_id].timeline.events if isinstance(e, RoomMessageText)
            }
        if want <= seen:
            break
    return seen


async def test_two_workers_behind_nginx_lose_nothing(tmp_path, fresh_dsn):
    nginx = shutil.which("nginx")
    assert nginx, "nginx is missing: scripts/test.sh installs it (Debian's nginx-light)"
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("127.0.0.1")
    client_ports = [_free_port(), _free_port()]
    metrics_ports = [_free_port(), _free_port()]
    federation_ports = [_free_port(), _free_port()]
    nginx_port, nginx_fed_port = _free_port(), _free_port()

    config_path = tmp_path / "homeserver.yaml"
    gen = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "homeserver", "generate-config",
        "--server-name", "workers.test", "--data-dir", str(tmp_path / "data"),
        "--listen", "127.0.0.1:8008", "--database-dsn", fresh_dsn,
        "--open-registration", "--no-rate-limits",
        "--federation-listen", "127.0.0.1:8448", "--tls-cert", str(cert), "--tls-key", str(key),
        "--output", str(config_path),
        cwd=ROOT,
    )  # fmt: skip
    assert await asyncio.wait_for(gen.wait(), 60) == 0
    config = yaml.safe_load(config_path.read_text())
    config["listeners"]["trusted_proxies"] = ["127.0.0.1/32"]
    config["public_baseurl"] = f"https://127.0.0.1:{nginx_port}/"
    config_path.write_text(yaml.safe_dump(config))

    site, stream = tmp_path / "site.conf", tmp_path / "stream.conf"
    site.write_text(render_site(client_ports, nginx_port, cert, key))
    stream.write_text(render_federation(federation_ports, nginx_fed_port))
    conf = nginx_conf(tmp_path, site, stream)
    check = await asyncio.create_subprocess_exec(
        nginx, "-t", "-p", str(tmp_path), "-c", str(conf),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(check.communicate(), 30)
    assert check.returncode == 0, err.decode()

    procs: list[asyncio.subprocess.Process] = []
    clients: list[AsyncClient] = []
    tls = ssl.create_default_context(cafile=str(ca.ca_path))

    async def start_worker(i: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "homeserver", "run", "-c", str(config_path),
            "--listen", f"127.0.0.1:{client_ports[i]}",
            "--metrics-listen", f"127.0.0.1:{metrics_ports[i]}",
            "--federation-listen", f"127.0.0.1:{federation_ports[i]}",
            cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
        await _wait_http(f"http://127.0.0.1:{client_ports[i]}/_matrix/client/versions", proc)
        return proc

    async def stop(proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)

    try:
        workers = [await start_worker(0), await start_worker(1)]
        proxy = await asyncio.create_subprocess_exec(
            nginx, "-p", str(tmp_path), "-c", str(conf), stderr=asyncio.subprocess.PIPE
        )
        procs.append(proxy)
        base = f"https://127.0.0.1:{nginx_port}"
        await _wait_http(base + "/_matrix/client/versions", proxy, tls)

        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/.well-known/matrix/client", ssl=tls) as resp:
                assert resp.status == 200 and "m.homeserver" in await resp.json()
            # Federation TLS passes through nginx's stream proxy to a worker.
            fed = f"https://127.0.0.1:{nginx_fed_port}/_matrix/federation/v1/version"
            async with http.get(fed, ssl=tls) as resp:
                assert resp.status == 200 and "server" in await resp.json()

        metrics = [f"http://127.0.0.1:{p}/metrics" for p in metrics_ports]
        for n in range(USERS):
            client = AsyncClient(base, config=AsyncClientConfig(store_sync_tokens=False), ssl=tls)  # type: ignore[arg-type]
            clients.append(client)
            assert isinstance(await client.register(f"worker{n}", PASSWORD), RegisterResponse)
            await client.sync(timeout=0)

        owner, *others = clients
        room_id = (await owner.room_create(invite=[c.user_id for c in others])).room_id
        for c in others:
            await c.join(room_id)
        for c in clients:
            await c.sync(timeout=0, since=c.next_batch)

        async def send_all(tag: str) -> set[str]:
            bodies = {f"{tag}-{i}-{k}" for i in range(len(clients)) for k in range(MESSAGES_EACH)}

            async def send(i: int, c: AsyncClient) -> None:
                for k in range(MESSAGES_EACH):
                    content = {"msgtype": "m.text", "body": f"{tag}-{i}-{k}"}
                    resp = await c.room_send(room_id, "m.room.message", content)
                    assert getattr(resp, "event_id", None), resp

            await asyncio.gather(*(send(i, c) for i, c in enumerate(clients)))
            return bodies

        sent = await send_all("before")
        for c in clients:
            assert await _collect(c, room_id, sent) == sent
        # The first worker took every send (and the room's creation and joins), the
        # second every /sync.
        sends = [await _requests_served(url, "/send/") for url in metrics]
        assert sends == [len(clients) * MESSAGES_EACH, 0], sends
        syncs = [await _requests_served(url) for url in metrics]
        assert syncs[0] == 0 and syncs[1] > 0, syncs

        # The /sync worker stops (SIGTERM): the event writer answers /sync too.
        await stop(workers[1])
        sent = await send_all("sync-worker-down")
        for c in clients:
            assert await _collect(c, room_id, sent) == sent
        assert await _requests_served(metrics[0]) > 0

        # It is back, and the writer stops: the other worker persists the events.
        workers[1] = await start_worker(1)
        await stop(workers[0])
        sent = await send_all("writer-down")
        for c in clients:
            assert await _collect(c, room_id, sent) == sent
        assert await _requests_served(metrics[1], "/send/") == len(clients) * MESSAGES_EACH
    finally:
        for c in clients:
            await c.close()
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
