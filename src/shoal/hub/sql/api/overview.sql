CREATE OR REPLACE FUNCTION shoal.log_sync(p_device uuid, p_folder text, p_result text, p_pushed integer,
                               p_pulled integer, p_ms integer, p_error text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    INSERT INTO shoal.sync_log(space, device_id, folder_id, result, pushed, pulled, duration_ms, error)
    VALUES (v_space, p_device, left(p_folder, 255), left(p_result, 20), p_pushed, p_pulled, p_ms, left(p_error, 500));
    UPDATE shoal.devices SET last_error = left(p_error, 500),
                             last_error_at = CASE WHEN p_error IS NULL THEN last_error_at ELSE now() END
     WHERE space = v_space AND device_id = p_device;
END $$;

-- Views for `shoal devices` and `shoal dupes`, over the calling device's space.
CREATE OR REPLACE FUNCTION shoal.device_overview(p_device uuid)
RETURNS TABLE (device_id uuid, name text, last_push_at timestamptz, last_pull_at timestamptz,
               behind bigint, last_error text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY
    SELECT d.device_id, d.name, d.last_push_at, d.last_pull_at,
           (SELECT count(*) FROM shoal.changes c JOIN shoal.device_folders df
                ON df.space = c.space AND df.folder_id = c.folder_id AND df.device_id = d.device_id
             WHERE c.space = v_space AND c.device_id <> d.device_id AND c.id > df.cursor),
           d.last_error
      FROM shoal.devices d WHERE d.space = v_space ORDER BY d.name, d.device_id;
END $$;

CREATE OR REPLACE FUNCTION shoal.duplicate_contents(p_device uuid)
RETURNS TABLE (sha256 text, size bigint, places text[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY
    SELECT h.sha256, max(h.size), array_agg(h.folder_id || ':' || h.path ORDER BY h.folder_id, h.path)
      FROM shoal.heads h WHERE h.space = v_space AND NOT h.deleted AND h.kind IN ('file', 'exec') AND h.size > 0
     GROUP BY h.sha256 HAVING count(*) > 1 ORDER BY max(h.size) * (count(*) - 1) DESC;
END $$;

-- Role settings (statement_timeout, idle_in_transaction_session_timeout) are only defaults a
-- device may lift with SET: the hub's owner enforces the limits by ending device sessions that
-- hold a transaction open or run one statement longer. Returns how many were ended.
CREATE OR REPLACE FUNCTION shoal.reap_device_sessions(p_idle interval, p_active interval) RETURNS integer
LANGUAGE sql SECURITY INVOKER SET search_path = shoal, pg_temp AS $$
    SELECT (count(*) FILTER (WHERE pg_terminate_backend(a.pid)))::integer
      FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND NOT r.rolsuper
       AND pg_has_role(r.oid, 'shoal_device', 'MEMBER')
       AND ((a.state LIKE 'idle in transaction%' AND a.state_change < now() - p_idle)
            OR (a.state = 'active' AND a.query_start < now() - p_active))
$$;

-- What the calling device's space uses of its quota (NULL bounds: unlimited).
CREATE OR REPLACE FUNCTION shoal.space_usage_of(p_device uuid)
RETURNS TABLE (space text, changes bigint, bytes bigint, max_changes bigint, max_bytes bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT v_space, coalesce(u.changes, 0), coalesce(u.bytes, 0), u.max_changes, u.max_bytes
                   FROM (SELECT 1) AS one LEFT JOIN shoal.space_usage u ON u.space = v_space;
END $$;
