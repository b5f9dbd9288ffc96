"""Cross-signing keys (master, self-signing, user-signing) and uploaded signatures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from e2ee.signatures import (
    check_public_key,
    require_dict,
    require_signature,
    split_key_id,
    verify_signature,
)
from homeserver.http.errors import invalid_param
from storage.e2ee_keys import E2EKeyStore

if TYPE_CHECKING:
    from e2ee.devices.device_lists import DeviceLists
    from homeserver.app import Homeserver

KEY_TYPES = ("master", "self_signing", "user_signing")
MAX_SIGNATURE_TARGETS = 500


def public_key_of(key: dict) -> str:
    return next(iter(key["keys"].values()))


def _unsigned_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


class CrossSigning:
    def __init__(self, hs: Homeserver, store: E2EKeyStore, device_lists: DeviceLists):
        self.hs = hs
        self.store = store
        self.device_lists = device_lists

    # --- /keys/device_signing/upload ---------------------------------------------

    def parse_upload(self, user_id: str, body: dict) -> dict[str, dict]:
        """{key_type: key} for the keys in the body, each checked; raises on bad input."""
        found = {}
        for key_type in KEY_TYPES:
            key = body.get(f"{key_type}_key")
            if key is None:
                continue
            key = require_dict(key, f"{key_type}_key")
            if key.get("user_id") != user_id:
                raise invalid_param(f"{key_type}_key must be for the requesting user")
            usage = key.get("usage")
            if not isinstance(usage, list) or key_type not in usage:
                raise invalid_param(f"{key_type}_key must have usage {key_type!r}")
            if not all(u in KEY_TYPES for u in usage):
                raise invalid_param(f"{key_type}_key usage can only name {', '.join(KEY_TYPES)}")
            keys = require_dict(key.get("keys"), f"{key_type}_key.keys")
            if len(keys) != 1:
                raise invalid_param(f"{key_type}_key must hold exactly one key")
            ((key_id, public),) = keys.items()
            algorithm, ident = split_key_id(key_id, f"{key_type}_key")
            if algorithm != "ed25519":
                raise invalid_param(f"Unknown key algorithm {algorithm!r} in {key_type}_key")
            check_public_key(public, f"{key_type}_key")
            if ident != public:
                raise invalid_param(f"{key_type}_key's key ID must be its public key")
            found[key_type] = key
        return found

    async def requires_auth(self, user_id: str, keys: dict[str, dict]) -> bool:
        """UIA may be skipped for the first upload, and for re-uploading the same keys."""
        stored = await self.store.cross_signing_keys([user_id])
        if not keys:
            return True
        if (user_id, "master") not in stored:
            return False
        return any(stored.get((user_id, t)) != k for t, k in keys.items())

    async def upload_keys(self, user_id: str, keys: dict[str, dict]) -> None:
        stored = await self.store.cross_signing_keys([user_id])
        master = keys.get("master") or stored.get((user_id, "master"))
        for key_type in ("self_signing", "user_signing"):
            if key_type in keys:
                if master is None:
                    raise invalid_param("Upload a master key first")
                master_public = public_key_of(master)
                require_signature(
                    keys[key_type],
                    user_id,
                    f"ed25519:{master_public}",
                    master_public,
                    f"{key_type}_key",
                )
        changed = {t: k for t, k in keys.items() if stored.get((user_id, t)) != k}
        if not changed:
            return

        async def write(conn) -> None:
            for key_type, key in changed.items():
                await self.store.set_cross_signing_key(conn, user_id, key_type, key)

        # A user-signing key alone is news only to its owner (no one else sees it).
        only_own = set(changed) == {"user_signing"}
        await self.device_lists.mark_changed(
            [user_id], work=write, viewer=user_id if only_own else None
        )

    # --- /keys/signatures/upload -------------------------------------------------

    async def upload_signatures(self, signer: str, body: dict) -> dict:
        """Checks every signature by `signer`; stores the valid ones, reports the rest."""
        if sum(len(v) if isinstance(v, dict) else 1 for v in body.values()) > (
            MAX_SIGNATURE_TARGETS
        ):
            raise invalid_param(f"At most {MAX_SIGNATURE_TARGETS} signed objects per request")
        for targets in body.values():
            require_dict(targets, "signed objects")
        users = set(body) | {signer}
        cross = await self.store.cross_signing_keys(users)
        own_devices = {
            d: k for u, d, k, _ in await self.store.devices_with_keys([signer]) if u == signer
        }
        failures: dict[str, dict] = {}
        rows: list[tuple[str, str, str, str, str]] = []
        # Signatures of the signer's own keys are everyone's news; of other users' keys,
        # only the signer's (only they see them in /keys/query).
        own_signed = False
        others_signed: set[str] = set()
        for target_user, targets in body.items():
            for target_id, obj in targets.items():
                try:
                    rows.extend(
                        self._check_signed_object(
                            signer, target_user, target_id, obj, cross, own_devices
                        )
                    )
                    if target_user == signer:
                        own_signed = True
                    else:
                        others_signed.add(target_user)
                except _SignatureFailure as failure:
                    failures.setdefault(target_user, {})[target_id] = {
                        "errcode": failure.errcode,
                        "error": failure.error,
                    }
        if rows:

            async def write(conn) -> None:
                await self.store.add_signatures(conn, rows)

            if own_signed:
                await self.device_lists.mark_changed([signer], work=write)
            if others_signed:
                await self.device_lists.mark_changed(
                    others_signed, work=None if own_signed else write, viewer=signer
                )
        return {"failures": failures}

    def _check_signed_object(self, signer, target_user, target_id, obj, cross, own_devices):
        if not isinstance(obj, dict):
            raise _SignatureFailure("M_BAD_JSON", "Signed object must be a JSON object")
        sigs = (
            obj.get("signatures", {}).get(signer)
            if isinstance(obj.get("signatures"), dict)
            else None
        )
        if not isinstance(sigs, dict) or not sigs:
            raise _SignatureFailure("M_INVALID_SIGNATURE", "No signature by the requester")

        if target_user == signer and target_id in own_devices:
            stored = own_devices[target_id]
            signing_key = cross.get((signer, "self_signing"))
        else:
            master = cross.get((target_user, "master"))
            if master is None or public_key_of(master) != target_id:
                raise _SignatureFailure("M_NOT_FOUND", "Unknown key")
            stored = master
            if target_user == signer:
                signing_key = None  # a device signs its own user's master key
            else:
                signing_key = cross.get((signer, "user_signing"))
        if _unsigned_part(obj) != _unsigned_part(stored):
            raise _SignatureFailure("M_INVALID_PARAM", "Signed object does not match the key")

        if signing_key is not None:
            allowed = {f"ed25519:{public_key_of(signing_key)}": public_key_of(signing_key)}
        elif target_user == signer and stored is cross.get((signer, "master")):
            allowed = {
                f"ed25519:{d}": k["keys"].get(f"ed25519:{d}") for d, k in own_devices.items()
            }
        else:
            raise _SignatureFailure("M_MISSING_PARAM", "No key to check the signature with")
        rows = []
        for key_id, signature in sigs.items():
            public = allowed.get(key_id)
            if public is None or not isinstance(signature, str):
                continue
            if not verify_signature(obj, signer, key_id, public):
                raise _SignatureFailure("M_INVALID_SIGNATURE", "Invalid signature")
            rows.append((target_user, target_id, signer, key_id, signature))
        if not rows:
            raise _SignatureFailure("M_INVALID_SIGNATURE", "No signature by a usable key")
        return rows


class _SignatureFailure(Exception):
    def __init__(self, errcode: str, error: str):
        super().__init__(error)
        self.errcode = errcode
        self.error = error
