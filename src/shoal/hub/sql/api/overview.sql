CREATE OR REPLACE FUNCTION shoal.log_sync(p_device uuid, p_folder text, p_result text, p_pushed integer,
                               p_pulled integer, p_ms integer, p_error text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    INSERT INTO shoal.sync_log(space, device_id, folder_id, result, pushed, pulled, duration_ms, error)
    VALUES (v_space, p_device, p_folder, p_result, p_pushed, p_pulled, p_ms, p_error);
    UPDATE shoal.devices SET last_error = p_error,
                             last_error_at = CASE WHEN p_error IS NULL THEN last_error_at ELSE now() END
     WHERE device_id = p_device;
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
      FROM shoal.heads h WHERE h.space = v_space AND NOT h.deleted AND h.kind = 'file' AND h.size > 0
     GROUP BY h.sha256 HAVING count(*) > 1 ORDER BY max(h.size) * (count(*) - 1) DESC;
END $$;
