"""The e2ee sections of every /sync response: to-device events, one-time key counts,
unused fallback key types and device-list changes."""

from __future__ import annotations


class E2EESync:
    def __init__(self, e2ee):
        self.e2ee = e2ee

    async def extend(self, ctx, response: dict) -> None:
        e2ee = self.e2ee
        response["to_device"] = {"events": await e2ee.to_device.sync_events(ctx)}
        if ctx.device_id is not None:
            counts, fallback = await e2ee.key_store.key_status(ctx.user_id, ctx.device_id)
            # Clients read a missing count as "unknown"; Synapse always reports this one.
            counts.setdefault("signed_curve25519", 0)
            response["device_one_time_keys_count"] = counts
            response["device_unused_fallback_key_types"] = fallback
        response["device_lists"] = await e2ee.device_lists.sync_section(ctx)
