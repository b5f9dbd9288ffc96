-- Single sign-on (homeserver/accounts/cas.py): which local user an identity of an
-- external authentication server (a CAS user name) signs in as, and the short-lived
-- single-use login tokens (m.login.token) handed to clients after SSO. Only the SHA-256
-- of a login token is stored.
CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_external_ids_user ON user_external_ids (user_id);

CREATE TABLE login_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    auth_provider TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
