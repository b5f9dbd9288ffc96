"""User IDs: validating requested localparts and resolving login identifiers."""

from __future__ import annotations

import re
import secrets

from homeserver.http.errors import MatrixError, bad_json, missing_param

# The historical user ID grammar Synapse enforces for new local users.
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")  # whole string (fullmatch: `$` admits a final \n)
MAX_USER_ID_LENGTH = 255


def invalid_username(reason: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_USERNAME", reason)


def validate_localpart(localpart: str, server_name: str, *, reserved_ok: bool = False) -> str:
    """Returns the full user ID for a requested localpart, or raises M_INVALID_USERNAME.
    `reserved_ok`: an application service registers a user of its namespace, whose
    localparts start with '_' by convention."""
    if not localpart:
        raise invalid_username("Username must not be empty")
    if not _LOCALPART.fullmatch(localpart):
        raise invalid_username("Username may only contain a-z, 0-9 and . _ = - / +")
    if localpart.startswith("_") and not reserved_ok:
        raise invalid_username("Usernames starting with '_' are reserved")
    user_id = f"@{localpart}:{server_name}"
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise invalid_username(f"User ID may not be longer than {MAX_USER_ID_LENGTH} characters")
    return user_id


def generate_localpart() -> str:
    return "u" + secrets.token_hex(6)


def localpart_of(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def user_id_from_login(body: dict, server_name: str) -> str:
    """The user an m.login.password body (login or UIA stage) names.

    Accepts `identifier: {type: m.id.user, user}` and the legacy top-level `user`, each as
    a localpart or a full user ID.
    """
    identifier = body.get("identifier")
    if identifier is not None:
        if not isinstance(identifier, dict):
            raise bad_json("'identifier' must be an object")
        id_type = identifier.get("type")
        if id_type != "m.id.user":
            raise MatrixError(400, "M_UNKNOWN", f"Unsupported identifier type {id_type!r}")
        user = identifier.get("user")
    else:
        user = body.get("user")
    if user is None:
        raise missing_param("Missing 'identifier'")
    if not isinstance(user, str) or not user:
        raise bad_json("'user' must be a non-empty string")
    if user.startswith("@"):
        localpart, _, server = user[1:].partition(":")
        return f"@{localpart.lower()}:{server or server_name}"
    return f"@{user.lower()}:{server_name}"
