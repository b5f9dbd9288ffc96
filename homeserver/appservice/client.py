"""HTTP calls to application services: transactions, user and alias queries, ping.

Every request carries `Authorization: Bearer hs_token` (spec v1.4); the registration
names the URL, which the operator chose, so loopback and private addresses are allowed.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from homeserver.appservice.registration import AppService

logger = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_S = 60.0
QUERY_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 10.0


class AppServiceError(Exception):
    def __init__(self, status: int | None, body: str = "", *, timeout: bool = False):
        super().__init__(f"appservice answered {status}" if status else "no answer")
        self.status = status
        self.body = body
        self.timeout = timeout


@dataclass(frozen=True)
class PingResult:
    duration_ms: int


class AppServiceClient:
    def __init__(self, ca_bundle: Path | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
        )

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=8, ssl=self._ssl),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self, svc: AppService, method: str, path: str, body: dict | None, timeout: float
    ) -> tuple[int, bytes]:
        if not svc.url:
            raise AppServiceError(None)
        headers = {"Authorization": f"Bearer {svc.hs_token}"}
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(
                method,
                svc.url + path,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                return resp.status, await resp.read()
        except TimeoutError:
            raise AppServiceError(None, timeout=True) from None
        except (aiohttp.ClientError, OSError) as e:
            logger.debug("appservice %s: %s", svc.id, e)
            raise AppServiceError(None) from None

    async def put_transaction(self, svc: AppService, txn_id: int, body: dict) -> None:
        """Raises AppServiceError unless the appservice answers 200."""
        status, text = await self._request(
            svc, "PUT", f"/_matrix/app/v1/transactions/{txn_id}", body, TRANSACTION_TIMEOUT_S
        )
        if status != 200:
            raise AppServiceError(status, text[:1000].decode("utf-8", "replace"))

    async def query(self, svc: AppService, kind: str, value: str) -> bool:
        """GET /_matrix/app/v1/users/{id} or /rooms/{alias}: True on 200."""
        try:
            status, _ = await self._request(
                svc, "GET", f"/_matrix/app/v1/{kind}/{quote(value, safe='')}", None, QUERY_TIMEOUT_S
            )
        except AppServiceError:
            return False
        return status == 200

    async def get_json(self, svc: AppService, path: str, params: list[tuple[str, str]]) -> Any:
        """GET /_matrix/app/v1{path}?params: the JSON body of a 200, else None (an
        appservice that is down or answers nonsense just has nothing to say)."""
        query = ("?" + urlencode(params)) if params else ""
        try:
            status, body = await self._request(
                svc, "GET", f"/_matrix/app/v1{path}{query}", None, QUERY_TIMEOUT_S
            )
            return orjson.loads(body) if status == 200 else None
        except (AppServiceError, orjson.JSONDecodeError):
            return None

    async def ping(self, svc: AppService, transaction_id: str | None) -> PingResult:
        body: dict = {}
        if transaction_id is not None:
            body["transaction_id"] = transaction_id
        start = time.monotonic()
        status, text = await self._request(
            svc, "POST", "/_matrix/app/v1/ping", body, PING_TIMEOUT_S
        )
        if status != 200:
            raise AppServiceError(status, text[:1000].decode("utf-8", "replace"))
        # Rounded up: a loopback round trip under a millisecond is still not 0 ms, and
        # mautrix's ping_self reads a duration of 0 as "no duration" (-1).
        return PingResult(math.ceil((time.monotonic() - start) * 1000))
