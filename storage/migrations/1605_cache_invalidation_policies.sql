-- The policies' rows are read with the access token too (homeserver/http/auth.py): an
-- external account's mark and expiry (1500) and account validity's expiry (1510). Their
-- changes drop the user's cached sessions on every process, as 1600 does for the rest.
CREATE TRIGGER external_users_invalidate
    AFTER INSERT OR UPDATE OR DELETE ON external_users
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_sessions();

CREATE TRIGGER account_validity_invalidate
    AFTER INSERT OR UPDATE OR DELETE ON account_validity
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_sessions();
