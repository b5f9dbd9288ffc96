"""Media and server names as they appear in mxc:// URIs, validated before they touch storage.

The spec (content_repo.md, "Security considerations") requires sanitising both parts of
an mxc:// URI: media IDs are [A-Za-z0-9_-]+ and server names are valid server names, so a
storage key built from them can never contain '..' or '/'.
"""

from __future__ import annotations

import re
import secrets

from homeserver.http.errors import MatrixError

_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # whole string: fullmatch
_SERVER_NAME = re.compile(r"(\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?")
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def new_media_id() -> str:
    # 24 letters: ~137 bits of randomness, unguessable because unauthenticated legacy
    # downloads (when enabled) treat knowing the ID as permission.
    return "".join(secrets.choice(_ALPHABET) for _ in range(24))


def check_media_id(media_id: str) -> str:
    if not _MEDIA_ID.fullmatch(media_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid media ID")
    return media_id


def check_server_name(server_name: str) -> str:
    if not _SERVER_NAME.fullmatch(server_name) or ".." in server_name:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid server name")
    return server_name


def local_key(media_id: str) -> str:
    # Fan-out by prefix keeps directories small on local disks.
    return f"local_content/{media_id[:2]}/{media_id}"


def remote_key(origin: str, media_id: str) -> str:
    return f"remote_content/{origin}/{media_id[:2]}/{media_id}"


def thumbnail_key(
    origin: str, media_id: str, width: int, height: int, method: str, animated: bool, ext: str
) -> str:
    suffix = "-animated" if animated else ""
    return f"thumbnails/{origin}/{media_id}/{width}-{height}-{method}{suffix}.{ext}"


def parse_mxc(uri: object) -> tuple[str, str] | None:
    """(server name, media ID) of a well-formed mxc:// URI, else None (never raises: used
    on event content written by anyone)."""
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        return None
    server_name, _, media_id = uri[len("mxc://") :].partition("/")
    if not _MEDIA_ID.fullmatch(media_id) or not _SERVER_NAME.fullmatch(server_name):
        return None
    if ".." in server_name:
        return None
    return server_name, media_id
