"""Hand-written remote servers on loopback, for answers our own server never gives
(redirects, legacy-only media, oversized or slow bodies): raw HTTP, as the wire tests are.

A fake federation server speaks TLS with a certificate from the test CA for its host name;
the server under test reaches it through `federation.resolve_overrides`.
"""

from __future__ import annotations

import ssl

from aiohttp import web

from tests.federation_ca import TEST_HOSTS, TestCA, start_federating_server


async def start_site(app: web.Application, ssl_context=None) -> tuple[web.AppRunner, int]:
    """Serves `app` on a free loopback port; (runner to clean up, port)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def start_fake_federation_server(
    ca: TestCA, host: str, app: web.Application
) -> tuple[web.AppRunner, str]:
    """`app` over TLS as `host`; (runner, server name "host:port")."""
    cert, key = ca.issue(host)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    runner, port = await start_site(app, ctx)
    return runner, f"{host}:{port}"


async def server_admitting(
    make_server, ca: TestCA, host: str, remotes: list[str], resolve_only=(), **config
):
    """A federating test server named `host` that admits (and resolves to loopback) the
    fake `remotes`, given as bare host names, and resolves the `resolve_only` hosts (not
    servers it federates with, e.g. a CDN) to loopback; `config` overrides other sections."""

    async def factory(**kw):
        return await make_server(**kw, **config)

    overrides = {**TEST_HOSTS, **{name: "127.0.0.1" for name in (*remotes, *resolve_only)}}
    return await start_federating_server(factory, ca, host, remotes, resolve_overrides=overrides)


def multipart(parts: list[tuple[dict[str, str], bytes]]) -> tuple[bytes, str]:
    """A multipart/mixed body as the federation media endpoints send; (body, content type)."""
    boundary = "fakeboundary7d2a"
    body = b""
    for headers, content in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        body += f"--{boundary}\r\n{head}\r\n".encode() + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/mixed; boundary={boundary}"
