"""Account validity (Synapse's account_validity): accounts expire `period` after
registration or renewal. `renew_at` before expiry the housekeeping task mails the account's
addresses a one-time renewal link (GET /_matrix/client/unstable/account_validity/renew);
once expired, every authenticated request but renewal and logout answers 403
ORG_MATRIX_EXPIRED_ACCOUNT (homeserver/http/auth.py, refuse_if_expired); and
`deactivate_expired_after` past expiry the task deactivates the account.

Renewal tokens are stored as SHA-256 and cleared when used. Sending is derived from
committed rows: the row is marked sent with its token before the mail goes, and unmarked
if the SMTP server refuses it, so the next run tries again and a mail is never sent twice
for one row state. Accounts that existed before the feature was switched on get
`now + period` at the task's first run.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import secrets
from typing import TYPE_CHECKING

from homeserver.accounts.deactivation import deactivate_account
from homeserver.email.mailer import Mailer, MailError
from storage.account_validity import AccountValidityStore
from storage.accounts import now_ms
from storage.threepids import ThreepidStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

RENEW_PATH = "/_matrix/client/unstable/account_validity/renew"
_BATCH = 200


def _sha256(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class AccountValidity:
    def __init__(
        self, hs: Homeserver, store: AccountValidityStore, threepids: ThreepidStore, mailer: Mailer
    ):
        self.hs = hs
        self.config = hs.config.account_validity
        self.store = store
        self.threepids = threepids
        self.mailer = mailer

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def new_expiry(self, now: int | None = None) -> int:
        return (now_ms() if now is None else now) + self.config.period_s * 1000

    async def on_register(self, conn, user_id: str) -> None:
        if self.enabled:
            await self.store.set(user_id, self.new_expiry(), False, conn)

    async def set_expiry(self, user_id: str, expiration_ts: int, renewal_emails: bool) -> None:
        """The admin API: a renewal mail will (not) be sent before this expiry."""
        await self.store.set(user_id, expiration_ts, not renewal_emails)

    async def renew(self, token: str) -> int | None:
        """Spends a renewal token; the new expiry, or None (unknown or used token)."""
        expiry = self.new_expiry()
        user_id = await self.store.renew(_sha256(token), expiry)
        return expiry if user_id is not None else None

    async def send_renewal_mail(self, user_id: str, now: int) -> int:
        """Mails every address of the account a new renewal link; how many mails went."""
        addresses = [r["address"] for r in await self.threepids.of_user(user_id)]
        token = secrets.token_urlsafe(32)
        await self.store.set_renewal_token(user_id, _sha256(token), now)
        if not addresses:
            return 0  # marked sent all the same: there is no one to mail
        row = await self.store.get(user_id)
        link = self.hs.config.base_url.rstrip("/") + RENEW_PATH + "?token=" + token
        app = self.hs.config.email.app_name
        subject = self.config.renew_email_subject % {"app": app}
        text = (
            f"Your {app} account {user_id} expires on {date_text(row['expiration_ts'])}.\n\n"
            f"To keep it, open this link:\n\n{link}\n\n"
            "The link works once. An expired account can still be renewed with it."
        )
        sent = 0
        for address in addresses:
            try:
                await self.mailer.send(address, subject, text, notice=True)
                sent += 1
            except MailError:
                pass
        if not sent:
            await self.store.mail_failed(user_id)
        return sent

    async def run(self, now: int) -> int:
        """The housekeeping task: expiries for accounts without one, renewal mails due,
        deactivation of accounts expired long enough. How many accounts it touched."""
        if not self.enabled:
            return 0
        done = await self.store.add_missing(self.new_expiry(now))
        for user_id in await self.store.due_for_renewal_mail(
            now + self.config.renew_at_s * 1000, _BATCH
        ):
            await self.send_renewal_mail(user_id, now)
            done += 1
        after = self.config.deactivate_expired_after_s
        if after is not None:
            for user_id in await self.store.expired_before(now - after * 1000, _BATCH):
                logger.info("deactivating %s: account expired", user_id)
                await deactivate_account(self.hs, user_id, erase=False)
                done += 1
        return done


def date_text(ts_ms: int) -> str:
    return datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
