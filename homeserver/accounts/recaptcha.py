"""The m.login.recaptcha registration stage: the client's captcha answer is checked at the
operator's `recaptcha.siteverify_api` (Google's reCAPTCHA API, or a self-hosted captcha
speaking it: a form POST of secret, response and remoteip answered with
{"success": true|false}). Off unless `recaptcha.enabled`; nothing is contacted then."""

from __future__ import annotations

import logging
import ssl

import aiohttp
import orjson

from homeserver.config import RecaptchaConfig

logger = logging.getLogger(__name__)

STAGE = "m.login.recaptcha"
_TIMEOUT = aiohttp.ClientTimeout(total=15)


class CaptchaUnavailable(Exception):
    """The verifier could not be reached or gave no usable answer."""


class Recaptcha:
    def __init__(self, config: RecaptchaConfig):
        self.config = config

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def params(self) -> dict:
        """The stage's UIA params: what a client needs to show the captcha."""
        return {STAGE: {"public_key": self.config.public_key}}

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.config.ca_bundle is None:
            return True
        return ssl.create_default_context(cafile=str(self.config.ca_bundle))

    async def verify(self, response: str, remote_ip: str | None) -> bool:
        form = {"secret": self.config.private_key, "response": response}
        if remote_ip:
            form["remoteip"] = remote_ip
        try:
            async with aiohttp.ClientSession(
                timeout=_TIMEOUT, connector=aiohttp.TCPConnector(ssl=self._ssl())
            ) as session:
                async with session.post(
                    self.config.siteverify_api, data=form, allow_redirects=False
                ) as resp:
                    body = await resp.content.read(1 << 16)
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
            logger.warning("captcha verifier unreachable: %s", type(e).__name__)
            raise CaptchaUnavailable() from None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if status != 200 or not isinstance(answer, dict):
            logger.warning("captcha verifier answered HTTP %d without a verdict", status)
            raise CaptchaUnavailable()
        return answer.get("success") is True
