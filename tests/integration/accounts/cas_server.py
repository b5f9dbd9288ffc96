"""A fake CAS server (protocol 2/3) on loopback for the SSO tests: /cas/login records the
service URL a browser was sent with, /cas/proxyValidate answers the tickets a test issued
(for that service only, once each) with the CAS XML, and anything else with
authenticationFailure. `captcha_verified` answers a reCAPTCHA siteverify POST too."""

from __future__ import annotations

from html import escape

from aiohttp import web

CAS_NS = "http://www.yale.edu/tp/cas"


def success_xml(user: str, attributes: dict[str, list[str]] | None = None) -> str:
    attrs = "".join(
        f"<cas:{name}>{escape(v)}</cas:{name}>"
        for name, values in (attributes or {}).items()
        for v in values
    )
    return (
        f"<cas:serviceResponse xmlns:cas='{CAS_NS}'><cas:authenticationSuccess>"
        f"<cas:user>{escape(user)}</cas:user><cas:attributes>{attrs}</cas:attributes>"
        "</cas:authenticationSuccess></cas:serviceResponse>"
    )


FAILURE_XML = (
    f"<cas:serviceResponse xmlns:cas='{CAS_NS}'><cas:authenticationFailure"
    " code='INVALID_TICKET'>Ticket not recognized</cas:authenticationFailure>"
    "</cas:serviceResponse>"
)


class FakeCas:
    def __init__(self) -> None:
        self.logins: list[str] = []  # service URLs browsers arrived with
        self.validations: list[dict[str, str]] = []  # query of each /proxyValidate
        self.tickets: dict[str, tuple[str, str]] = {}  # ticket -> (service, XML)
        self.captcha_requests: list[dict[str, str]] = []
        self.captcha_answer = "good-answer"
        self.runner: web.AppRunner | None = None
        self.url = ""

    def issue(self, ticket: str, service: str, xml: str) -> None:
        self.tickets[ticket] = (service, xml)

    async def _login(self, request: web.Request) -> web.Response:
        self.logins.append(request.query["service"])
        return web.Response(text="<html>CAS sign-in form</html>", content_type="text/html")

    async def _validate(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.validations.append(query)
        issued = self.tickets.pop(query.get("ticket", ""), None)
        if issued is None or issued[0] != query.get("service"):
            return web.Response(text=FAILURE_XML, content_type="text/xml")
        return web.Response(text=issued[1], content_type="text/xml")

    async def _siteverify(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.captcha_requests.append({k: str(v) for k, v in form.items()})
        return web.json_response({"success": form.get("response") == self.captcha_answer})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/cas/login", self._login)
        app.router.add_get("/cas/proxyValidate", self._validate)
        app.router.add_post("/siteverify", self._siteverify)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
