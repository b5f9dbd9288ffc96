"""A bare aiohttp server: the most requests/s this machine's Python HTTP stack answers.

    python -m bench.bare --port 28700

One process with uvloop installed (as `homeserver run` does), aiohttp's runner without
an access log (as ours), and one handler for GET /_matrix/client/v3/account/whoami that
answers a fixed small JSON body: no middleware, no token check, no database. bench/limits.py
starts it and loads it with the whoami scenario's load (same client code, concurrency
and duration), so its requests/s is the ceiling of our whoami figure.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from bench.client import PREFIX

BODY = b'{"user_id":"@bare:bench.bare","device_id":"BARE","is_guest":false}'


async def whoami(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def versions(request: web.Request) -> web.Response:
    return web.Response(body=b'{"versions":["v1.11"]}', content_type="application/json")


def app() -> web.Application:
    application = web.Application()
    application.router.add_get(f"{PREFIX}/account/whoami", whoami)
    application.router.add_get("/_matrix/client/versions", versions)
    return application


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--port", type=int, default=28700)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app(), host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
