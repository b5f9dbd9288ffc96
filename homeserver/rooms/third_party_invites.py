"""Third-party (e-mail) invites: client-server "Third-party invites", server-server
"Third-party invites", identity-service "Invitation storage".

Inviting an address (POST /rooms/{roomId}/invite with id_server, createRoom's
invite_3pid): the address is looked up at the identity server (which the operator must
list in identity.id_servers); bound, it is an ordinary invite of that user; unbound, the
identity server stores the invite and the room gets an m.room.third_party_invite state
event whose state_key is the identity server's token.

When the address is bound later, the identity server calls the invitee's server
(/3pid/onbind) with a block signed by one of the event's keys for each pending invite.
The m.room.member invite is then made by the inviter's server, locally or, for a remote
inviter, through PUT /exchange_third_party_invite at the inviter's server. Whoever makes
it checks the signature against the m.room.third_party_invite event (the auth rules check
it again) and asks the identity server whether the key is still valid: a revoked key, or
an identity server we cannot reach, refuses the invite. A client may also join with the
signed block itself (/join's third_party_signed).

Nothing here logs an address or a token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from federation.client import FederationError
from homeserver.accounts.identity_servers import IdentityServerError
from homeserver.events.auth import third_party_signing_key
from homeserver.http.errors import MatrixError, bad_json, forbidden, missing_param, not_found
from homeserver.policy.rules import ACCESS_RULES, RESTRICTED, rule_of_content
from homeserver.rooms.membership import member_content, set_membership, valid_user_id

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

THIRD_PARTY_INVITE = "m.room.third_party_invite"
MAX_ADDRESS = 512


@dataclass(frozen=True)
class ThreepidInvite:
    id_server: str
    id_access_token: str
    medium: str
    address: str


def _text(body: dict[str, Any], name: str, where: str) -> str:
    if name not in body or body[name] is None:
        raise missing_param(f"{where}: missing '{name}'")
    value = body[name]
    if not isinstance(value, str) or not value or len(value) > MAX_ADDRESS:
        raise MatrixError(400, "M_INVALID_PARAM", f"{where}: '{name}' must be a non-empty string")
    return value


def parse_threepid_invite(hs: Homeserver, body: Any, where: str = "invite") -> ThreepidInvite:
    """The 3pid fields of an /invite body or of one createRoom invite_3pid entry, checked;
    an identity server the operator does not list is refused (M_FORBIDDEN) here, before
    anything is written or contacted."""
    if not isinstance(body, dict):
        raise bad_json(f"{where}: must be an object")
    invite = ThreepidInvite(
        id_server=_text(body, "id_server", where),
        id_access_token=_text(body, "id_access_token", where),
        medium=_text(body, "medium", where),
        address=_text(body, "address", where),
    )
    hs.accounts.identity_servers.check_allowed(invite.id_server)
    return invite


def is_threepid_invite(body: dict[str, Any]) -> bool:
    return "user_id" not in body and any(
        k in body for k in ("id_server", "medium", "address", "id_access_token")
    )


async def _store_invite_body(
    hs: Homeserver, sender: str, room_id: str, invite: ThreepidInvite
) -> dict[str, Any]:
    """What store-invite is told about the room and the inviter (for the mail it sends)."""
    body: dict[str, Any] = {
        "medium": invite.medium,
        "address": invite.address,
        "room_id": room_id,
        "sender": sender,
    }
    state = await hs.events.current_state(
        room_id,
        [
            ("m.room.name", ""),
            ("m.room.avatar", ""),
            ("m.room.join_rules", ""),
            ("m.room.canonical_alias", ""),
            ("m.room.create", ""),
        ],
    )
    for (etype, _), key, field in (
        (("m.room.name", ""), "room_name", "name"),
        (("m.room.avatar", ""), "room_avatar_url", "url"),
        (("m.room.join_rules", ""), "room_join_rules", "join_rule"),
        (("m.room.canonical_alias", ""), "room_alias", "alias"),
        (("m.room.create", ""), "room_type", "type"),
    ):
        event = state.get((etype, ""))
        value = event.content.get(field) if event is not None else None
        if isinstance(value, str):
            body[key] = value
    profile = await hs.accounts.profiles.get(sender)
    if profile is not None:
        if profile["displayname"] is not None:
            body["sender_display_name"] = profile["displayname"]
        if profile["avatar_url"] is not None:
            body["sender_avatar_url"] = profile["avatar_url"]
    return body


def _invite_content(answer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(token, m.room.third_party_invite content) from a store-invite answer."""
    token = answer.get("token")
    display_name = answer.get("display_name")
    public_keys = answer.get("public_keys")
    if not isinstance(token, str) or not token or not isinstance(display_name, str):
        raise IdentityServerError("store-invite answer without token or display_name")
    keys: list[dict[str, str]] = []
    for entry in public_keys if isinstance(public_keys, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
            kept = {"public_key": entry["public_key"]}
            if isinstance(entry.get("key_validity_url"), str):
                kept["key_validity_url"] = entry["key_validity_url"]
            keys.append(kept)
    if not keys and isinstance(answer.get("public_key"), str):
        keys = [{"public_key": answer["public_key"]}]
    if not keys:
        raise IdentityServerError("store-invite answer without public keys")
    first = keys[0]
    content: dict[str, Any] = {
        "display_name": display_name,
        "public_keys": keys,
        # The deprecated single key (and URL) that older servers read.
        "public_key": answer["public_key"]
        if isinstance(answer.get("public_key"), str)
        else first["public_key"],
        "key_validity_url": first.get("key_validity_url", ""),
    }
    return token, content


def _unavailable(what: str) -> MatrixError:
    return MatrixError(502, "M_UNKNOWN", f"The identity server could not {what}")


async def invite(hs: Homeserver, sender: str, room_id: str, invite: ThreepidInvite) -> None:
    """POST /rooms/{roomId}/invite with a third-party identifier (already parsed)."""
    if not await hs.event_store.room_exists(room_id):
        raise forbidden("You are not in this room")
    if await hs.events.membership(room_id, sender) != "join":
        raise forbidden("You are not joined to this room")
    await _check_restricted(hs, room_id, invite)
    identity = hs.accounts.identity_servers
    try:
        mxid = await identity.lookup(
            invite.id_server, invite.id_access_token, invite.medium, invite.address
        )
    except IdentityServerError:
        raise _unavailable("look the address up") from None
    if mxid is not None and valid_user_id(mxid):
        await set_membership(hs, sender, room_id, mxid, "invite")
        return
    # Whether the inviter may make the invite at all, before the identity server stores it
    # (and mails the address): a dry run of the event's authorisation.
    await hs.events.prepare_event(
        sender,
        room_id,
        THIRD_PARTY_INVITE,
        {"display_name": "", "public_keys": [], "public_key": "", "key_validity_url": ""},
        "probe",
    )
    body = await _store_invite_body(hs, sender, room_id, invite)
    try:
        answer = await identity.store_invite(invite.id_server, invite.id_access_token, body)
        token, content = _invite_content(answer)
    except IdentityServerError:
        raise _unavailable("store the invite") from None
    await hs.events.create_and_send(sender, room_id, THIRD_PARTY_INVITE, content, token)


async def _check_restricted(hs: Homeserver, room_id: str, invite: ThreepidInvite) -> None:
    """A restricted room (homeserver/policy) takes no one from an external server: an
    address whose domain the e-mail map (identity.domain_map, default_server) places on
    one is refused before any identity server hears of it, as Tchap does."""
    if not hs.policy.access_rules or not belongs_on_external_server(hs, invite):
        return
    contents = await hs.event_store.state_contents([room_id], ACCESS_RULES)
    if rule_of_content(contents.get(room_id)) == RESTRICTED:
        raise external_address_refused()


def external_address_refused() -> MatrixError:
    return forbidden("This address belongs on an external server and this room is restricted")


def belongs_on_external_server(hs: Homeserver, invite: ThreepidInvite) -> bool:
    if invite.medium != "email":
        return False
    domain = invite.address.rpartition("@")[2].strip().lower()
    server = hs.config.identity.server_for_domain(domain)
    return server is not None and hs.policy.server_is_external(server)


def _validity_url(invite_content: dict[str, Any], public_key: str) -> str | None:
    for entry in invite_content.get("public_keys") or []:
        if isinstance(entry, dict) and entry.get("public_key") == public_key:
            url = entry.get("key_validity_url")
            if isinstance(url, str):
                return url
    if invite_content.get("public_key") == public_key:
        url = invite_content.get("key_validity_url")
        if isinstance(url, str) and url:
            return url
    return None


def check_signed(signed: Any, where: str = "signed") -> dict[str, Any]:
    """A signed block's shape: mxid, token and signatures (M_BAD_JSON otherwise)."""
    if not isinstance(signed, dict):
        raise bad_json(f"'{where}' must be an object")
    for key in ("mxid", "token"):
        if not isinstance(signed.get(key), str):
            raise bad_json(f"'{where}' needs a string '{key}'")
    if not isinstance(signed.get("signatures"), dict):
        raise bad_json(f"'{where}' needs 'signatures'")
    if not valid_user_id(signed["mxid"]):
        raise MatrixError(400, "M_INVALID_PARAM", f"'{where}.mxid' is not a user ID")
    return signed


async def invite_from_signed(
    hs: Homeserver, room_id: str, sender: str, signed: dict[str, Any]
) -> None:
    """Makes the m.room.member invite of signed["mxid"] by our user `sender`, who made the
    m.room.third_party_invite whose token is signed["token"]: the signature must be by one
    of that event's keys, and the identity server must still hold the key valid."""
    if not await hs.event_store.room_exists(room_id):
        raise not_found("Unknown room")
    mxid, token = signed["mxid"], signed["token"]
    invite_event = await hs.events.current_state_event(room_id, THIRD_PARTY_INVITE, token)
    if invite_event is None:
        raise forbidden("No third-party invite with that token in the room")
    if invite_event.sender != sender:
        raise forbidden("The third-party invite was made by another user")
    if await hs.events.membership(room_id, mxid) in ("invite", "join"):
        return  # already done (the identity server may call twice)
    public_key = third_party_signing_key(signed, invite_event.content)
    if public_key is None:
        raise forbidden("The signature does not match the third-party invite's keys")
    url = _validity_url(invite_event.content, public_key)
    # Without a URL the spec says the key is valid indefinitely.
    if url is not None and not await hs.accounts.identity_servers.key_is_valid(url, public_key):
        raise forbidden("The identity server does not confirm the invite's key")
    content = await member_content(hs, mxid, "invite")
    display_name = invite_event.content.get("display_name")
    content["third_party_invite"] = {
        **({"display_name": display_name} if isinstance(display_name, str) else {}),
        "signed": signed,
    }
    if mxid.split(":", 1)[1] == hs.server_name:
        await hs.events.create_and_send(sender, room_id, "m.room.member", content, mxid)
    else:
        await hs.federation.membership.invites.send(sender, room_id, mxid, content)


async def complete(hs: Homeserver, room_id: str, sender: str, signed: dict[str, Any]) -> None:
    """Has the inviter's server make the invite: ours, or through exchange_third_party_invite
    at theirs."""
    server = sender.split(":", 1)[1]
    if server == hs.server_name:
        await invite_from_signed(hs, room_id, sender, signed)
        return
    target_is_ours = signed["mxid"].split(":", 1)[1] == hs.server_name
    if (
        target_is_ours
        and await hs.event_store.room_exists(room_id)
        and hs.server_name in await hs.events.servers_in_room(room_id)
    ):
        # We are in the room: the invite of our user is made here, in the inviter's
        # name, as the spec allows for a third-party invite (its sender's server need not
        # sign it; federation/events/validation.py) and as Synapse does.
        await invite_from_signed(hs, room_id, sender, signed)
        return
    if not hs.federation.policy.federates:
        raise forbidden("This server does not federate")
    event = {
        "type": "m.room.member",
        "room_id": room_id,
        "sender": sender,
        "state_key": signed["mxid"],
        "content": {"membership": "invite", "third_party_invite": {"signed": signed}},
    }
    path = f"/_matrix/federation/v1/exchange_third_party_invite/{quote(room_id, safe='')}"
    try:
        await hs.federation.client.put_json(server, path, event)
    except FederationError as e:
        logger.info("exchange_third_party_invite at %s failed: %s", server, e)
        raise forbidden("The inviter's server did not make the invite") from None


async def on_bind(hs: Homeserver, body: Any) -> None:
    """/3pid/onbind: the identity server says an address is now bound to one of our users,
    with a signed block for each pending invite. Each is tried on its own; when one fails
    (bad signature, revoked key) the others are still made, and the answer is the last
    failure's error (as Synapse answers)."""
    if not isinstance(body, dict):
        raise bad_json("The body must be an object")
    invites = body.get("invites", [])
    if not isinstance(invites, list):
        raise bad_json("'invites' must be a list")
    mxid = body.get("mxid")
    if not isinstance(mxid, str) or not valid_user_id(mxid):
        raise missing_param("'mxid' must be a user ID")
    if mxid.split(":", 1)[1] != hs.server_name:
        raise forbidden("The user is not on this server")
    failure: MatrixError | None = None
    for entry in invites:
        try:
            if not isinstance(entry, dict):
                raise bad_json("invite must be an object")
            room_id, sender = entry.get("room_id"), entry.get("sender")
            if not isinstance(room_id, str) or not room_id.startswith("!"):
                raise bad_json("invite without room_id")
            if not isinstance(sender, str) or not valid_user_id(sender):
                raise bad_json("invite without sender")
            signed = check_signed(entry.get("signed"))
            if signed["mxid"] != mxid:
                raise forbidden("The signed block names another user")
            await complete(hs, room_id, sender, signed)
        except MatrixError as e:
            logger.info("third-party invite on bind not made: %s %s", e.errcode, e.error)
            failure = e
    if failure is not None:
        raise failure


async def on_exchange(hs: Homeserver, origin: str, room_id: str, event: Any) -> None:
    """PUT /exchange_third_party_invite/{roomId}: another server (the invitee's) asks us,
    the inviter's server, to make the invite."""
    if not isinstance(event, dict):
        raise bad_json("The body must be an event")
    if event.get("type") != "m.room.member" or event.get("room_id") != room_id:
        raise bad_json("The event must be an m.room.member of this room")
    sender, state_key = event.get("sender"), event.get("state_key")
    content = event.get("content")
    if not isinstance(sender, str) or not valid_user_id(sender):
        raise bad_json("The event needs a sender")
    if sender.split(":", 1)[1] != hs.server_name:
        raise forbidden("The sender is not on this server")
    if not isinstance(content, dict) or content.get("membership") != "invite":
        raise bad_json("The event must be an invite with third_party_invite")
    third_party_invite = content.get("third_party_invite")
    if not isinstance(third_party_invite, dict):
        raise bad_json("The event must be an invite with third_party_invite")
    signed = check_signed(third_party_invite.get("signed"), "third_party_invite.signed")
    if state_key != signed["mxid"]:
        raise bad_json("state_key must be the signed mxid")
    if signed["mxid"].split(":", 1)[1] != origin:
        raise forbidden("Only the invitee's server may ask for the invite")
    await invite_from_signed(hs, room_id, sender, signed)


async def join_signed(hs: Homeserver, user_id: str, room_id: str, third_party_signed: Any) -> None:
    """/join with third_party_signed: the invite the signed block stands for is made first
    (unless the user is already invited or in the room)."""
    signed = check_signed(third_party_signed, "third_party_signed")
    sender = signed.get("sender")
    if not isinstance(sender, str) or not valid_user_id(sender):
        raise bad_json("'third_party_signed' needs a 'sender'")
    if signed["mxid"] != user_id:
        raise forbidden("The signed block is for another user")
    if await hs.event_store.room_exists(room_id) and await hs.events.membership(
        room_id, user_id
    ) in ("invite", "join"):
        return
    await complete(hs, room_id, sender, signed)
