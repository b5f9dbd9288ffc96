"""Application services for the tests: registration files, and mautrix-python's AppService
listening on a loopback port of its own."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mautrix.appservice import AppService
from mautrix.appservice.state_store.memory import ASStateStore
from mautrix.client.state_store.memory import MemoryStateStore
from mautrix.types import Event

SERVER_NAME = "test.local"


class MemoryASStateStore(ASStateStore, MemoryStateStore):
    def __init__(self) -> None:
        ASStateStore.__init__(self)
        MemoryStateStore.__init__(self)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registration:
    path: Path
    id: str
    url: str
    port: int
    as_token: str
    hs_token: str
    sender_localpart: str
    data: dict[str, Any]


def write_registration(
    directory: Path,
    as_id: str = "bridge",
    prefix: str = "_bridge_",
    server_regex: str = SERVER_NAME.replace(".", r"\."),
    **extra: Any,
) -> Registration:
    """A registration file as bridges generate them, for an appservice on a free port;
    `server_regex` matches the server name (a federating test server's carries its port)."""
    port = free_port()
    data: dict[str, Any] = {
        "id": as_id,
        "url": f"http://127.0.0.1:{port}",
        "as_token": secrets.token_hex(16),
        "hs_token": secrets.token_hex(16),
        "sender_localpart": f"{prefix}bot",
        "namespaces": {
            "users": [{"exclusive": True, "regex": f"@{prefix}.*:{server_regex}"}],
            "aliases": [{"exclusive": True, "regex": f"#{prefix}.*:{server_regex}"}],
            "rooms": [],
        },
        "rate_limited": False,
        "receive_ephemeral": True,
        **extra,
    }
    path = directory / f"{as_id}-registration.yaml"
    path.write_text(yaml.safe_dump(data))
    return Registration(
        path,
        as_id,
        data["url"],
        port,
        data["as_token"],
        data["hs_token"],
        data["sender_localpart"],
        data,
    )


@dataclass
class Bridge:
    """A running mautrix AppService and what it received."""

    appservice: AppService
    events: list[Event] = field(default_factory=list)  # room events and ephemeral ones
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, predicate, timeout: float = 20.0) -> Any:
        """The first received event that satisfies `predicate`."""
        async with asyncio.timeout(timeout):
            while True:
                for evt in self.events:
                    if predicate(evt):
                        return evt
                self.changed.clear()
                await self.changed.wait()


async def start_bridge(
    base_url: str, reg: Registration, domain: str = SERVER_NAME, **kw: Any
) -> Bridge:
    appservice = AppService(
        server=base_url.rstrip("/"),
        domain=domain,
        as_token=reg.as_token,
        hs_token=reg.hs_token,
        bot_localpart=reg.sender_localpart,
        id=reg.id,
        log=logging.getLogger("test.bridge"),
        state_store=MemoryASStateStore(),
        ephemeral_events=True,
        **kw,
    )
    bridge = Bridge(appservice)

    async def on_event(evt: Event) -> None:
        bridge.events.append(evt)
        bridge.changed.set()

    appservice.matrix_event_handler(on_event)
    await appservice.start("127.0.0.1", reg.port)
    return bridge
