-- Outbound m.device_list_update: a sequence per local user. stream_id is the last
-- update's ID (also the stream_id /user/devices reports); announced_devices holds what
-- the last updates described, per device, so a change is sent as the difference.
CREATE TABLE federation_device_list_streams (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL DEFAULT 0,
    cross_signing_digest TEXT
);
CREATE TABLE federation_device_list_announced (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Remote users' device lists, cached while they share a room with a local user. A row
-- in remote_device_lists means the devices below are a complete snapshot as of
-- stream_id; seen_stream_ids are the update IDs already applied (prev_id checks).
CREATE TABLE federation_remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    seen_stream_ids BIGINT[] NOT NULL,
    master_key TEXT,
    self_signing_key TEXT,
    updated_ts BIGINT NOT NULL
);
CREATE TABLE federation_remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    keys_json TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- OpenID tokens (client POST /user/{userId}/openid/request_token), for
-- /_matrix/federation/v1/openid/userinfo. Only the SHA-256 of a token is stored.
CREATE TABLE openid_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
