"""Driving simplified sliding sync over raw HTTP, as matrix-rust-sdk does."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


class Connection:
    """One connection (conn_id) of one device: keeps `pos` as the SDK does."""

    def __init__(self, server, token: str, conn_id: str | None = "room-list"):
        self.server = server
        self.token = token
        self.conn_id = conn_id
        self.pos: str | None = None

    async def raw(
        self, body: dict[str, Any], *, pos: str | None = None, timeout: int = 0
    ) -> tuple[int, dict]:
        query: dict[str, Any] = {"timeout": timeout}
        if pos is not None:
            query["pos"] = pos
        if self.conn_id is not None:
            body = {"conn_id": self.conn_id, **body}
        return await self.server.request(
            "POST", f"{PATH}?{urlencode(query)}", token=self.token, json=body
        )

    async def sync(self, body: dict[str, Any], *, timeout: int = 0) -> dict:
        status, resp = await self.raw(body, pos=self.pos, timeout=timeout)
        assert status == 200, resp
        self.pos = resp["pos"]
        return resp


def list_ids(resp: dict, name: str) -> list[str]:
    return [r for op in resp["lists"][name]["ops"] for r in op["room_ids"]]
