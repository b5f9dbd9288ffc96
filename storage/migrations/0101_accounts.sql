-- Accounts additions to the core schema.

-- One-time nonces for shared-secret registration (register_new_matrix_user). Kept in the
-- database, not in memory, so that the GET and the POST may reach different workers.
CREATE TABLE registration_nonces (
    nonce TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL
);

CREATE INDEX filters_user ON filters (user_id, filter_id);
CREATE INDEX uia_sessions_created ON uia_sessions (created_ts);
