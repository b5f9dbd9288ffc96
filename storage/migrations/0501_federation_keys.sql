-- Our own signing keys, past and present: /_matrix/key/v2/server lists the retired
-- ones under old_verify_keys so that events we signed with them stay verifiable.
CREATE TABLE federation_own_keys (
    key_id TEXT PRIMARY KEY,
    verify_key TEXT NOT NULL,          -- unpadded base64 public key
    added_ts BIGINT NOT NULL,
    expired_ts BIGINT                  -- NULL while it is the current key
);

-- Remote servers' verify keys, fetched directly or through a notary. response_json is
-- the signed /_matrix/key/v2/server response, kept verbatim so that we can serve it as
-- a notary with its original signatures.
CREATE TABLE federation_remote_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT,                 -- set for keys listed under old_verify_keys
    fetched_ts BIGINT NOT NULL,
    response_json TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
