"""Server-side room key backup (spec: "Server-side key backups").

Versions hold the client's opaque `auth_data`; sessions hold opaque `session_data`. Only
the current (newest) version accepts uploads; an upload for another version gets
M_WRONG_ROOM_KEYS_VERSION naming the current one.
"""

from __future__ import annotations

from e2ee.signatures import require_dict
from homeserver.http.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.http.request import parse_int64
from storage.e2ee_backup import BackupStore

MAX_SESSIONS_PER_UPLOAD = 10_000


def parse_version(value: str | None) -> int:
    if value is None or value == "":
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'version'")
    version = parse_int64(value)
    if version is None or version < 0:
        # No such version can exist: versions are the numbers this server hands out.
        raise not_found("Unknown backup version")
    return version


BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"  # the spec's one algorithm


def check_version_body(body: dict) -> tuple[str, object]:
    """(algorithm, auth_data) of a version body.

    Both are the client's: the algorithm names how it encrypted its keys and `auth_data`
    is opaque to the server (the spec's algorithm puts an object there; SyTest and older
    clients use other algorithms and strings), so any algorithm string and any JSON value
    are stored and echoed back, as Synapse does.
    """
    algorithm = body.get("algorithm")
    if not isinstance(algorithm, str) or not algorithm or len(algorithm) > 255:
        raise bad_json("'algorithm' must be a non-empty string")
    if body.get("auth_data") is None:
        raise bad_json("'auth_data' is required")
    return algorithm, body["auth_data"]


def check_key_data(data: object) -> dict:
    data = require_dict(data, "key data")
    for name in ("first_message_index", "forwarded_count"):
        value = data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad_json(f"'{name}' must be a non-negative integer")
    if not isinstance(data.get("is_verified"), bool):
        raise bad_json("'is_verified' must be a boolean")
    if data.get("session_data") is None:  # opaque to the server: any JSON value
        raise bad_json("'session_data' is required")
    return data


def parse_rooms(body: dict) -> list[tuple[str, str, dict]]:
    """The (room_id, session_id, key_data) of a {rooms: {r: {sessions: {s: data}}}} body."""
    sessions = []
    for room_id, room in require_dict(body.get("rooms"), "rooms").items():
        sessions.extend(parse_sessions(room_id, room))
    return sessions


def parse_sessions(room_id: str, room: object) -> list[tuple[str, str, dict]]:
    room = require_dict(room, "room")
    return [
        (room_id, session_id, check_key_data(data))
        for session_id, data in require_dict(room.get("sessions"), "sessions").items()
    ]


class KeyBackup:
    def __init__(self, store: BackupStore):
        self.store = store

    async def create_version(self, user_id: str, body: dict) -> dict:
        algorithm, auth_data = check_version_body(body)
        return {"version": str(await self.store.create_version(user_id, algorithm, auth_data))}

    async def get_version(self, user_id: str, version: str | None) -> dict:
        number = None if version is None else parse_version(version)
        info = await self.store.get_version(user_id, number)
        if info is None:
            raise not_found(
                "No current backup version" if version is None else "Unknown backup version"
            )
        return info

    async def update_version(self, user_id: str, version: str, body: dict) -> dict:
        number = parse_version(version)
        algorithm, auth_data = check_version_body(body)
        if "version" in body and body["version"] != version:
            raise invalid_param("'version' in the body does not match the path")
        current = await self.store.get_version(user_id, number)
        if current is None:
            raise not_found("Unknown backup version")
        if current["algorithm"] != algorithm:
            raise invalid_param("The algorithm of a backup version cannot change")
        await self.store.update_version(user_id, number, auth_data)
        return {}

    async def delete_version(self, user_id: str, version: str) -> dict:
        if not await self.store.delete_version(user_id, parse_version(version)):
            raise not_found("Unknown backup version")
        return {}

    async def put_keys(self, user_id: str, version: str | None, sessions: list) -> dict:
        number = parse_version(version)
        if len(sessions) > MAX_SESSIONS_PER_UPLOAD:
            raise MatrixError(413, "M_TOO_LARGE", "Too many sessions in one upload")
        result = await self.store.put_keys(user_id, number, sessions)
        if result is None:
            current = await self.store.get_version(user_id)
            if current is None:
                raise not_found("Unknown backup version")
            raise MatrixError(
                403,
                "M_WRONG_ROOM_KEYS_VERSION",
                "Wrong backup version",
                current_version=current["version"],
            )
        etag, count = result
        return {"etag": etag, "count": count}

    async def get_keys(
        self, user_id: str, version: str | None, room_id=None, session_id=None
    ) -> dict:
        number = parse_version(version)
        if await self.store.get_version(user_id, number) is None:
            raise not_found("Unknown backup version")
        rooms = await self.store.get_keys(user_id, number, room_id, session_id)
        if session_id is not None:
            data = rooms.get(room_id, {}).get(session_id)
            if data is None:
                raise not_found("No backed-up key for this session")
            return data
        if room_id is not None:
            return {"sessions": rooms.get(room_id, {})}
        return {"rooms": {r: {"sessions": s} for r, s in rooms.items()}}

    async def delete_keys(
        self, user_id: str, version: str | None, room_id=None, session_id=None
    ) -> dict:
        result = await self.store.delete_keys(user_id, parse_version(version), room_id, session_id)
        if result is None:
            raise not_found("Unknown backup version")
        etag, count = result
        return {"etag": etag, "count": count}
