"""Deactivating an account: POST /account/deactivate and the admin API's
/_synapse/admin/v1/deactivate (and PUT v2/users/{id} with `deactivated: true`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.accounts.membership import leave_all_rooms

if TYPE_CHECKING:
    from homeserver.app import Homeserver


async def deactivate_account(hs: Homeserver, user_id: str, erase: bool) -> bool:
    """Leaves every room, marks the account deactivated (its password gone; with `erase`,
    its events are rewritten redacted by housekeeping/erasure.py and its profile is
    cleared) and deletes its devices, so every access token stops working; its single
    sign-on identity is unlinked. Addresses
    bound at identity servers through us are unbound there: True if there were some and
    all went (the `id_server_unbind_result`)."""
    accounts = hs.accounts
    # Leave rooms first, while the account may still send events.
    await leave_all_rooms(hs, user_id)
    unbound = await accounts.identity_servers.unbind_all(user_id)
    async with hs.db.acquire() as conn:
        async with conn.transaction():
            await accounts.users.mark_deactivated(conn, user_id, erase=erase)
            # Its addresses are free for another account (and no mail goes to them).
            await accounts.threepids.store.unbind_all(conn, user_id)
            # Its single sign-on identity goes too, with any login token not yet spent: a
            # later CAS sign-in of that identity meets the deactivated account of its name.
            await accounts.sso.forget_user(conn, user_id)
            device_ids = await accounts.devices.device_ids(user_id, conn)
    await accounts.delete_devices(user_id, device_ids)
    # Nothing is pushed to a deactivated account's phones any more.
    await hs.push_store.delete_user_pushers(user_id)
    if erase:
        # Erased users' profiles go too (the events they sent are redacted next, by the
        # erasure task, started now).
        await accounts.profiles.set_field(user_id, "displayname", None)
        await accounts.profiles.set_field(user_id, "avatar_url", None)
        hs.run_in_background(hs.housekeeping.erase_now())
    return unbound
