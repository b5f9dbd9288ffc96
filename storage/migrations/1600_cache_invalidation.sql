-- Cross-process cache invalidation (homeserver/user_cache.py). Every process keeps access
-- tokens' sessions and devices' one-time key counts in memory; these triggers tell every
-- process (LISTEN hs_invalidate) when the rows behind them change, whatever code path
-- wrote them, at commit (NOTIFY is transactional; identical payloads in one transaction
-- are sent once, so a 50-key upload is one notification).
--
-- Payloads are JSON arrays: ["t", user_id] drops the user's cached sessions (tokens
-- deleted, account flags, rate-limit override); ["k", user_id, device_id] drops the
-- device's key counts (one-time or fallback keys uploaded, claimed or deleted).

CREATE FUNCTION hs_invalidate_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('hs_invalidate', json_build_array('t', OLD.user_id)::text);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('hs_invalidate', json_build_array('t', NEW.user_id)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION hs_invalidate_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('hs_invalidate',
            json_build_array('k', OLD.user_id, OLD.device_id)::text);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('hs_invalidate',
            json_build_array('k', NEW.user_id, NEW.device_id)::text);
    END IF;
    RETURN NULL;
END $$;

-- A new token needs no invalidation (unknown tokens are never cached); a deleted or
-- moved one does.
CREATE TRIGGER access_tokens_invalidate AFTER UPDATE OR DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_sessions();

-- Admin flag, deactivation, lock, suspension, shadow ban: all read with the token.
CREATE TRIGGER users_invalidate AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_sessions();

CREATE TRIGGER ratelimit_overrides_invalidate
    AFTER INSERT OR UPDATE OR DELETE ON ratelimit_overrides
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_sessions();

CREATE TRIGGER e2e_one_time_keys_invalidate
    AFTER INSERT OR UPDATE OR DELETE ON e2e_one_time_keys
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_keys();

CREATE TRIGGER e2e_fallback_keys_invalidate
    AFTER INSERT OR UPDATE OR DELETE ON e2e_fallback_keys
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_keys();
