"""A real SMTP server for the e-mail tests: aiosmtpd on a loopback port, in the test's
event loop, keeping what it receives. A mail is in `messages` once the server's SMTP
exchange has answered 250, which happens before the homeserver's request returns."""

from __future__ import annotations

import asyncio
import email
import re
from email.message import Message

from aiosmtpd.smtp import SMTP

LINK = re.compile(r"https?://\S+")


class Inbox:
    def __init__(self):
        self.messages: list[Message] = []
        self.refuse = False  # answer 451 to every mail: the homeserver's SMTP failure path
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, _server, _session, envelope) -> str:
        if self.refuse:
            return "451 Try again later"
        message = email.message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["X-Envelope-To"] == address]

    @staticmethod
    def body(message: Message) -> str:
        payload = message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode()

    def last_link(self, address: str) -> str:
        mails = self.to(address)
        assert mails, f"no mail to {address}"
        return LINK.findall(self.body(mails[-1]))[0]

    async def start(self) -> Inbox:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="smtp.test", loop=loop), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def config(self, **extra) -> dict:
        """The `email` section of a homeserver sending here."""
        return {
            "enabled": True,
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_tls": "none",
            "from": "Test HS <noreply@test.local>",
            "app_name": "TestHS",
            **extra,
        }
