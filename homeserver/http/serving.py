"""How the HTTP listeners run: aiohttp's runner with our limits, and aiohttp's own log
kept free of request data.

aiohttp logs a request it cannot parse (request line or header over its limit, a bad
request line) with the parser's exception, whose message quotes the offending bytes: the
request line carries `?access_token=`, a header `Authorization: Bearer`. Its records keep
the exception's type and status and lose the exception.
"""

from __future__ import annotations

import logging

from aiohttp import web

from homeserver.config import HttpConfig

protocol_logger = logging.getLogger("homeserver.http.protocol")


class _WithoutRequestData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            exc = record.exc_info[1]
            status = getattr(exc, "code", None)
            what = type(exc).__name__ + (f" {status}" if isinstance(status, int) else "")
            # The message names the client's address only (aiohttp's own format strings).
            record.msg = f"{record.msg} ({what})"
            record.exc_info = None
            record.exc_text = None
        return True


for _name in (protocol_logger.name, "aiohttp.server"):
    logging.getLogger(_name).addFilter(_WithoutRequestData())


def make_runner(app: web.Application, http: HttpConfig) -> web.AppRunner:
    """The runner of every listener (client, metrics, federation) and of the tests' servers."""
    return web.AppRunner(
        app,
        handle_signals=False,
        # aiohttp's access log prints full URLs, query strings included (access tokens);
        # the middleware logs the route template instead.
        access_log=None,
        logger=protocol_logger,
        # aiohttp closes a connection still waiting for a request's headers this long after
        # it opened or answered its previous request: the header read timeout. A trickle
        # of bytes does not extend it.
        keepalive_timeout=http.header_read_timeout_s,
        # Waiting /sync long-polls are answered before the listeners close (cli._serve);
        # this bounds any other request still running.
        shutdown_timeout=http.shutdown_timeout_s,
    )
