-- E-mail identity (3PIDs) and account validity.

-- Addresses bound to local accounts. One account per address: the address is how a
-- person is found and how a password is reset, so it cannot be shared.
CREATE TABLE user_threepids (
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    user_id TEXT NOT NULL,
    validated_ts BIGINT NOT NULL,
    added_ts BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- Validation sessions of /requestToken. The client secret and the token are stored as
-- SHA-256 only; the token is cleared once used (single use). `purpose` is what the
-- session may be spent on: 'register', 'add' or 'password'.
CREATE TABLE threepid_sessions (
    session_id TEXT PRIMARY KEY,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    client_secret_hash BYTEA NOT NULL,
    purpose TEXT NOT NULL,
    send_attempt BIGINT NOT NULL,
    token_hash BYTEA,
    token_expires_ts BIGINT NOT NULL,
    validated_ts BIGINT,
    created_ts BIGINT NOT NULL,
    -- Where the browser goes once the link validated the session (the client's next_link).
    next_link TEXT,
    UNIQUE (client_secret_hash, medium, address, purpose)
);
CREATE UNIQUE INDEX threepid_sessions_token ON threepid_sessions (token_hash)
    WHERE token_hash IS NOT NULL;
CREATE INDEX threepid_sessions_created ON threepid_sessions (created_ts);

-- Account validity: when each account expires, whether its renewal mail went out, and
-- the (hashed, single-use) renewal token that mail carries.
CREATE TABLE account_validity (
    user_id TEXT PRIMARY KEY,
    expiration_ts BIGINT NOT NULL,
    email_sent BOOLEAN NOT NULL DEFAULT FALSE,
    renewal_token_hash BYTEA UNIQUE,
    renewal_token_ts BIGINT
);
CREATE INDEX account_validity_expiration ON account_validity (expiration_ts);
