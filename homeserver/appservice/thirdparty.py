"""Third-party networks (spec: Client-Server API "Third-party Networks"): the protocols
the appservices' registrations list, and lookups of users and locations on them, each
answered by asking the appservices that bridge the protocol (Application Service API
/thirdparty/...).

A protocol's metadata is merged over its appservices: the first answer's fields, and the
instances of all of them. An instance with a `network_id` gets `instance_id`
"{appservice id}|{network_id}", the ID that /publicRooms' third_party_instance_id names.
Metadata rarely changes, so answers are kept for an hour (per process).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from homeserver.appservice.client import AppServiceClient
from homeserver.appservice.registration import AppService

PROTOCOL_CACHE_S = 3600.0


def _valid_metadata(info: Any) -> bool:
    return isinstance(info, dict) and isinstance(info.get("instances"), list)


def _valid_result(result: Any, key: str) -> bool:
    """A user (key "userid") or location (key "alias") lookup result, as the spec's."""
    return (
        isinstance(result, dict)
        and isinstance(result.get(key), str)
        and isinstance(result.get("protocol"), str)
        and isinstance(result.get("fields"), dict)
    )


class ThirdPartyNetworks:
    def __init__(self, services: tuple[AppService, ...], client: AppServiceClient):
        self.services = services
        self.client = client
        self._metadata: dict[tuple[str, str], tuple[float, dict]] = {}

    def _bridging(self, protocol: str | None) -> list[AppService]:
        """The appservices asked about `protocol` (None: about any of theirs)."""
        return [
            svc
            for svc in self.services
            if svc.url and (protocol in svc.protocols if protocol else svc.protocols)
        ]

    async def _metadata_of(self, svc: AppService, protocol: str) -> dict | None:
        key = (svc.id, protocol)
        cached = self._metadata.get(key)
        if cached is not None and time.monotonic() - cached[0] < PROTOCOL_CACHE_S:
            return cached[1]
        info = await self.client.get_json(svc, f"/thirdparty/protocol/{_segment(protocol)}", [])
        if not _valid_metadata(info):
            return None
        instances = []
        for instance in info["instances"]:
            if not isinstance(instance, dict):
                continue
            instance = dict(instance)
            if isinstance(instance.get("network_id"), str):
                instance["instance_id"] = f"{svc.id}|{instance['network_id']}"
            instances.append(instance)
        info = {**info, "instances": instances}
        self._metadata[key] = (time.monotonic(), info)
        return info

    async def protocol(self, protocol: str) -> dict | None:
        """The merged metadata of one protocol; None when no appservice describes it."""
        answers = await asyncio.gather(
            *(self._metadata_of(svc, protocol) for svc in self._bridging(protocol))
        )
        found = [a for a in answers if a is not None]
        if not found:
            return None
        return {**found[0], "instances": [i for a in found for i in a["instances"]]}

    async def protocols(self) -> dict[str, dict]:
        names = sorted({p for svc in self._bridging(None) for p in svc.protocols})
        merged = await asyncio.gather(*(self.protocol(p) for p in names))
        return {name: info for name, info in zip(names, merged, strict=True) if info is not None}

    async def lookup(
        self, kind: str, protocol: str | None, params: list[tuple[str, str]]
    ) -> list[dict]:
        """Users (kind "user") or locations ("location") matching `params`, from every
        appservice bridging `protocol` (None: a reverse lookup by Matrix ID or alias)."""
        path = f"/thirdparty/{kind}" + (f"/{_segment(protocol)}" if protocol else "")
        key = "userid" if kind == "user" else "alias"
        answers = await asyncio.gather(
            *(self.client.get_json(svc, path, params) for svc in self._bridging(protocol))
        )
        return [
            result
            for answer in answers
            if isinstance(answer, list)
            for result in answer
            if _valid_result(result, key)
        ]


def _segment(value: str) -> str:
    return quote(value, safe="")
