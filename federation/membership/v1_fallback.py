"""The deprecated v1 send_join / send_leave / invite, for servers that serve no v2.

A server that does not know a v2 endpoint answers 404 (or 400) M_UNRECOGNIZED, or a bare
404 or 405; the request is then made again on v1, whose answer is [200, body] (the spec
keeps that quirk). Synapse falls back the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from federation.errors import FederationError

if TYPE_CHECKING:
    from homeserver.app import Homeserver


def unrecognised(error: FederationError) -> bool:
    if error.errcode == "M_UNRECOGNIZED":
        return error.status in (400, 404, 405)
    return error.status in (404, 405) and error.errcode is None


def v1_answer(answer: Any) -> Any:
    """The body of a v1 answer: [200, body]; anything else is returned as it is (and
    judged by the caller as a malformed answer)."""
    if isinstance(answer, list) and len(answer) == 2 and answer[0] == 200:
        return answer[1]
    return answer


async def put_v2_or_v1(
    hs: Homeserver, server: str, v2_path: str, v2_body: Any, v1_path: str, v1_body: Any
) -> Any:
    try:
        return await hs.federation.client.put_json(server, v2_path, v2_body)
    except FederationError as e:
        if not unrecognised(e):
            raise
    return v1_answer(await hs.federation.client.put_json(server, v1_path, v1_body))
