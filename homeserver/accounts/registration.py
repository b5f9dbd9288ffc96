"""Creating an account, shared by POST /register (routes/registration.py) and Synapse's
shared-secret admin registration (homeserver/admin/routes/register.py)."""

from __future__ import annotations

from homeserver.accounts.usernames import localpart_of
from homeserver.http.errors import MatrixError, forbidden


def user_in_use() -> MatrixError:
    return MatrixError(400, "M_USER_IN_USE", "User ID already taken")


async def create_account(
    hs,
    user_id: str,
    password_hash: str | None,
    *,
    is_admin: bool = False,
    displayname: str | None = None,
    login: bool = True,
    device_id: str | None = None,
    device_display_name: str | None = None,
    ip: str | None = None,
    registration_token: str | None = None,
    threepid: dict | None = None,
    is_guest: bool = False,
) -> dict:
    """Creates the user (and a first login session) in one transaction.

    Shared by /register and the shared-secret admin registration. `threepid` is what
    an m.login.email.identity stage established: its session is spent and the address
    bound in the same transaction.
    """
    accounts = hs.accounts
    async with hs.db.acquire() as conn:
        async with conn.transaction():
            if registration_token is not None:
                if not await accounts.registration_tokens.consume(conn, registration_token):
                    raise forbidden("The registration token is no longer valid")
            created = await accounts.users.create_user(
                conn,
                user_id,
                password_hash,
                is_admin,
                displayname or localpart_of(user_id),
                is_guest,
            )
            if not created:
                raise user_in_use()
            if threepid is not None:
                await accounts.threepids.spend(conn, threepid["sid"])
                await accounts.threepids.bind(
                    conn, user_id, threepid["address"], threepid["validated_ts"]
                )
            await accounts.validity.on_register(conn, user_id)
            response = {"user_id": user_id, "home_server": hs.server_name}
            if login:
                token, device_id = await accounts.start_session(
                    conn, user_id, device_id, device_display_name, ip
                )
                response.update(access_token=token, device_id=device_id)
    if login:
        await accounts.device_changed(user_id)
    return response
