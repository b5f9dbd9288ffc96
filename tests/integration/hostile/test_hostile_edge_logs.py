"""Issue 17 items 4 and 5: nothing secret, and no forged line, reaches the log.

aiohttp logs the requests it cannot parse with the parser's exception, whose message
quotes the offending bytes; the middleware logs the path of a failing request. The
records are checked as the process's own formatter writes them (homeserver/logs.py).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse

import pytest

from homeserver.logs import OneLineFormatter

SECRET = "syt_SECRETSECRET_token"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _written(caplog) -> str:
    formatter = OneLineFormatter(FORMAT)
    return "\n".join(formatter.format(record) for record in caplog.records)


async def _raw(server, data: bytes) -> bytes:
    """Sends `data` on a fresh connection; what the server answered before closing."""
    url = urllib.parse.urlsplit(server.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 30)
    writer.close()
    return answer


BAD_REQUESTS = {
    "request line over the limit": (
        f"GET /_matrix/client/v3/sync?access_token={SECRET}&x={'a' * 9000} HTTP/1.1\r\n"
        "Host: x\r\n\r\n"
    ),
    "Authorization header over the limit": (
        "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {SECRET}{'a' * 9000}\r\n\r\n"
    ),
    "bad request line": f"GET /_matrix/client/v3/sync?access_token={SECRET} HTTP/1.1 x\r\n\r\n",
    "bad header line": (
        f"GET /_matrix/client/v3/sync HTTP/1.1\r\nAuthorization: Bearer {SECRET}\x01\r\n\r\n"
    ),
    "bad method": f"G\x01T /?access_token={SECRET} HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_REQUESTS))
async def test_parser_errors_are_logged_without_request_data(server, caplog, kind):
    caplog.set_level(logging.DEBUG)
    answer = await _raw(server, BAD_REQUESTS[kind].encode("latin-1"))
    assert answer.split(b" ", 2)[1].startswith(b"4"), answer[:100]
    written = _written(caplog)
    assert "Error handling request" in written  # the event is still logged
    assert SECRET not in written


async def test_a_failing_request_cannot_forge_log_lines(server, caplog, monkeypatch):
    """A CR or LF in the path of a request that fails (500) stays inside its record."""
    client = await server.client()

    async def broken(*_args, **_kwargs):
        raise RuntimeError("boom\nFORGED-IN-MESSAGE")

    monkeypatch.setattr(server.hs.accounts.profiles, "get", broken, raising=False)
    caplog.set_level(logging.INFO)
    forged = "@x%0A2026-01-01 ERROR forged%0DFORGED:test.local"
    status, _ = await server.request(
        "GET", f"/_matrix/client/v3/profile/{forged}", token=client.access_token
    )
    failing = [r for r in caplog.records if r.name == "homeserver.http"]
    assert status == 500 and failing, status
    written = _written(caplog)
    for line in written.splitlines():
        assert "forged" not in line or not line.startswith("2026-01-01"), line
        assert not line.startswith("FORGED"), line
    assert "\r" not in written
    assert "\\n2026-01-01" in written  # the path is there, escaped


def test_formatter_keeps_one_record_on_one_line():
    formatter = OneLineFormatter(FORMAT)
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "path %s", ("/a\n2026 INFO forged\r\x00\u2028",), None
    )
    assert len(formatter.format(record).splitlines()) == 1
    try:
        raise ValueError("multi\nline")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), exc_info)
    first, *rest = formatter.format(record).splitlines()
    assert rest and all(line.startswith("    | ") for line in rest)
