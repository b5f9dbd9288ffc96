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
            response["device_one_time_keys_count"] = await e2ee.keys.one_time_key_counts(
                ctx.user_id, ctx.device_id
            )
            response[
                "device_unused_fallback_key_types"
            ] = await e2ee.key_store.unused_fallback_key_types(ctx.user_id, ctx.device_id)
        response["device_lists"] = await e2ee.device_lists.sync_section(ctx)
