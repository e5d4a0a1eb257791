-- A login that is a member of the device group but not listed in this hub's device_roles was
-- made for another hub on the same server (roles are server-wide): it is nobody here.
CREATE OR REPLACE FUNCTION shoal.is_foreign_device_login() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
    SELECT NOT EXISTS (SELECT 1 FROM shoal.device_roles WHERE role_name = session_user)
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                     JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                     JOIN pg_catalog.pg_roles r ON r.oid = m.member
                    WHERE g.rolname = 'shoal_device' AND r.rolname = session_user)
$$;

-- A device login that calls the API inside a transaction block it holds open could pile up
-- the locks of thousands of calls until the server's lock table is full, for every space and
-- every database: a call is refused once its session holds more locks than any single call
-- needs. (Counted, not guessed from timestamps: the extended protocol moves those.)
CREATE OR REPLACE FUNCTION shoal.refuse_open_transaction() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
BEGIN
    IF (SELECT count(*) FROM pg_catalog.pg_locks WHERE pid = pg_backend_pid()) > 200
       AND EXISTS (SELECT 1 FROM shoal.device_roles WHERE role_name = session_user) THEN
        RAISE EXCEPTION 'this session holds too many locks: call the hub API outside of a long transaction block'
            USING ERRCODE = '53200';
    END IF;
END $$;

-- Who is calling: a bound device login may act only as its own device; other roles (the hub
-- owner's, as in a single-user setup) may act for any registered device. Returns the device's
-- space and makes it the transaction's space (row level security reads it).
CREATE OR REPLACE FUNCTION shoal.enter(p_device uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    bound uuid;
    revoked timestamptz;
    v_space text;
BEGIN
    PERFORM shoal.refuse_open_transaction();
    SELECT device_id, revoked_at INTO bound, revoked FROM shoal.device_roles WHERE role_name = session_user;
    IF FOUND AND (revoked IS NOT NULL OR bound IS DISTINCT FROM p_device) THEN
        RAISE EXCEPTION 'role % may not act as device %', session_user, p_device USING ERRCODE = '42501';
    END IF;
    IF NOT FOUND AND shoal.is_foreign_device_login() THEN
        RAISE EXCEPTION 'role % is not a device login of this hub', session_user USING ERRCODE = '42501';
    END IF;
    SELECT space INTO v_space FROM shoal.devices WHERE device_id = p_device;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'device % is not registered', p_device USING ERRCODE = '42501';
    END IF;
    PERFORM set_config('shoal.space', v_space, true);
    RETURN v_space;
END $$;

-- Register (or rename) a device. An unbound device login is bound to the first device id it
-- registers, unless another role registered that id (no taking over someone else's device);
-- the device joins the login's space (the owner's devices: the default space).
CREATE OR REPLACE FUNCTION shoal.register_device(p_device uuid, p_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    bound uuid;
    v_space text := 'default';
BEGIN
    PERFORM shoal.refuse_open_transaction();
    IF p_name IS NULL OR char_length(p_name) NOT BETWEEN 1 AND 64 OR p_name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'a device name is 1 to 64 characters without control characters' USING ERRCODE = '22023';
    END IF;
    SELECT device_id, space INTO bound, v_space FROM shoal.device_roles
     WHERE role_name = session_user AND revoked_at IS NULL FOR UPDATE;
    IF FOUND THEN
        IF bound IS NULL THEN
            IF EXISTS (SELECT 1 FROM shoal.devices WHERE device_id = p_device AND role_name <> session_user) THEN
                RAISE EXCEPTION 'device % is registered by another role', p_device USING ERRCODE = '42501';
            END IF;
            UPDATE shoal.device_roles SET device_id = p_device WHERE role_name = session_user;
        ELSIF bound <> p_device THEN
            RAISE EXCEPTION 'role % is bound to another device', session_user USING ERRCODE = '42501';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM shoal.device_roles WHERE role_name = session_user) THEN
        RAISE EXCEPTION 'role % was revoked', session_user USING ERRCODE = '42501';
    ELSIF shoal.is_foreign_device_login() THEN
        RAISE EXCEPTION 'role % is not a device login of this hub', session_user USING ERRCODE = '42501';
    ELSE
        v_space := 'default';
    END IF;
    -- A device id is unique on the hub (the primary key is per space, for Citus): it may not
    -- be registered again in another space.
    IF EXISTS (SELECT 1 FROM shoal.devices WHERE device_id = p_device AND space <> v_space) THEN
        RAISE EXCEPTION 'device % is registered in another space', p_device USING ERRCODE = '42501';
    END IF;
    INSERT INTO shoal.devices(device_id, space, name, role_name) VALUES (p_device, v_space, p_name, session_user)
    ON CONFLICT (space, device_id) DO UPDATE SET name = excluded.name;
    RETURN (SELECT value FROM shoal.hub_meta WHERE key = 'hub_id');
END $$;

CREATE OR REPLACE FUNCTION shoal.hub_id() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
    SELECT value FROM shoal.hub_meta WHERE key = 'hub_id'
$$;

-- The schema's versions, for any role that may use the hub (a device login cannot read the tables).
CREATE OR REPLACE FUNCTION shoal.hub_version() RETURNS TABLE (tables integer, api text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
    SELECT (SELECT max(version) FROM shoal.schema_migrations),
           (SELECT value FROM shoal.hub_meta WHERE key = 'api_version')
$$;

-- The notification channel of a space: named by a secret of the hub, so a device of another
-- space can neither listen to it nor send on it.
CREATE OR REPLACE FUNCTION shoal.channel_of(p_space text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
    SELECT 'shoal_' || left(encode(sha256(convert_to(
        (SELECT value FROM shoal.hub_meta WHERE key = 'channel_secret') || '/' || p_space, 'UTF8')), 'hex'), 40)
$$;

CREATE OR REPLACE FUNCTION shoal.listen_channel(p_device uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
BEGIN
    RETURN shoal.channel_of(shoal.enter(p_device));
END $$;

-- A device joining with an invite swaps the invite's one-time password for its own: it sends
-- only the SCRAM verifier (the password never travels), and the login stops expiring. Once.
CREATE OR REPLACE FUNCTION shoal.claim_invite(p_verifier text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_claimed timestamptz;
    v_revoked timestamptz;
BEGIN
    SELECT claimed_at, revoked_at INTO v_claimed, v_revoked FROM shoal.device_roles
     WHERE role_name = session_user FOR UPDATE;
    IF NOT FOUND OR v_revoked IS NOT NULL THEN
        RAISE EXCEPTION 'role % has no invite on this hub', session_user USING ERRCODE = '42501';
    END IF;
    IF v_claimed IS NOT NULL THEN
        RAISE EXCEPTION 'this invite was already used' USING ERRCODE = '42501';
    END IF;
    IF p_verifier IS NULL OR p_verifier !~ '^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$' THEN
        RAISE EXCEPTION 'a SCRAM-SHA-256 verifier, please (never a password)' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('ALTER ROLE %I PASSWORD %L VALID UNTIL %L', session_user, p_verifier, 'infinity');
    UPDATE shoal.device_roles SET claimed_at = now() WHERE role_name = session_user;
END $$;
