"""The SMTP client: aiosmtplib, so a slow or dead mail server never blocks the event loop
(smtplib would, for up to `smtp_timeout_s` per message)."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from homeserver.config import EmailConfig
from homeserver.http.errors import MatrixError

logger = logging.getLogger(__name__)


class MailError(Exception):
    """The mail could not be handed to the SMTP server."""


class Mailer:
    def __init__(self, config: EmailConfig):
        self.config = config

    async def send(self, to: str, subject: str, text: str, *, notice: bool = False) -> None:
        """Hands one plain-text mail to the SMTP server; MailError if it refuses or is
        unreachable. `notice` sends from `notif_from` instead of `from`."""
        config = self.config
        sender = config.notif_from if notice else config.from_address
        message = EmailMessage()
        message["From"] = sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid()
        message.set_content(text)
        try:
            await aiosmtplib.send(
                message,
                hostname=config.smtp_host,
                port=config.smtp_port,
                use_tls=config.smtp_tls == "tls",
                start_tls=True if config.smtp_tls == "starttls" else False,
                username=config.smtp_user,
                password=config.smtp_password,
                timeout=config.smtp_timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError) as err:
            # The error text can quote the recipient: only its kind is logged.
            logger.warning("sending mail failed: %s", type(err).__name__)
            raise MailError(type(err).__name__) from None


def mail_failed() -> MatrixError:
    return MatrixError(500, "M_UNKNOWN", "The e-mail could not be sent; try again later")
