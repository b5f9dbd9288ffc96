-- Accounts marked external (issue 15): hidden from the user directory, unable to create
-- rooms or invite, refused from restricted rooms; past expires_at_ms every request of
-- theirs answers 403.
CREATE TABLE external_users (
    user_id TEXT PRIMARY KEY,
    expires_at_ms BIGINT,
    marked_at_ms BIGINT NOT NULL
);
