-- History (SPEC "History and retention"): every version the hub keeps, for `shoal log`,
-- `shoal restore` and `shoal revert`. Rows come as the changelog has them (sealed in an
-- encrypted folder: the device opens and checks them), with the pushing device's name and time.

-- The versions of one path (the hub's path), newest first; or, with p_path NULL, the latest
-- changes of the folder. Only ids below p_before (NULL: no bound); at most 10,000 rows.
CREATE OR REPLACE FUNCTION shoal.history(p_device uuid, p_folder text, p_path text, p_limit integer,
                                         p_before bigint)
RETURNS TABLE (id bigint, path text, device_id uuid, device_name text, created_at timestamptz, kind text,
               size bigint, mtime_ns bigint, sha256 text, target text, deleted boolean, moved_from text,
               conflict_of text, incarnation uuid, seq bigint, sealed bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    v_limit integer := least(greatest(coalesce(p_limit, 100), 1), 10000);
    v_before bigint := coalesce(p_before, 9223372036854775807);
BEGIN
    IF p_path IS NULL THEN
        RETURN QUERY
            SELECT c.id, c.path, c.device_id, d.name, c.created_at, c.kind, c.size, c.mtime_ns, c.sha256, c.target,
                   c.deleted, c.moved_from, c.conflict_of, c.incarnation, c.seq, c.sealed
              FROM shoal.changes c LEFT JOIN shoal.devices d ON d.space = c.space AND d.device_id = c.device_id
             WHERE c.space = v_space AND c.folder_id = p_folder AND c.id < v_before
             ORDER BY c.id DESC LIMIT v_limit;
    ELSE
        RETURN QUERY
            SELECT c.id, c.path, c.device_id, d.name, c.created_at, c.kind, c.size, c.mtime_ns, c.sha256, c.target,
                   c.deleted, c.moved_from, c.conflict_of, c.incarnation, c.seq, c.sealed
              FROM shoal.changes c LEFT JOIN shoal.devices d ON d.space = c.space AND d.device_id = c.device_id
             WHERE c.space = v_space AND c.folder_id = p_folder
               AND c.path_hash = sha256(convert_to(p_path, 'UTF8')) AND c.path = p_path
               AND c.id < v_before
             ORDER BY c.id DESC LIMIT v_limit;
    END IF;
END $$;

-- What brings a folder back: for each path, the current head (version, deleted) and the change
-- to restore it to, where they differ. p_mode 'at': the folder as it was at p_time (the latest
-- change of each path at or before it; none: the path did not exist, so it goes). p_mode
-- 'revert': every path device(s) named p_name changed since p_time, back to its version before
-- the first such change (none: it did not exist), with `later` set when another device changed
-- the path after that device's last change (reported, left alone by the caller).
CREATE OR REPLACE FUNCTION shoal.restore_plan(p_device uuid, p_folder text, p_mode text, p_time timestamptz,
                                              p_name text)
RETURNS TABLE (path text, head_version bigint, head_deleted boolean, later boolean, id bigint, device_id uuid,
               device_name text, created_at timestamptz, kind text, size bigint, mtime_ns bigint, sha256 text,
               target text, deleted boolean, incarnation uuid, seq bigint, sealed bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    IF p_mode = 'at' THEN
        RETURN QUERY
        WITH at AS (
            SELECT DISTINCT ON (c.path_hash) c.*
              FROM shoal.changes c
             WHERE c.space = v_space AND c.folder_id = p_folder AND c.created_at <= p_time
             ORDER BY c.path_hash, c.id DESC
        )
        SELECT h.path, h.version, h.deleted, false, a.id, a.device_id, d.name, a.created_at, a.kind, a.size,
               a.mtime_ns, a.sha256, a.target, a.deleted, a.incarnation, a.seq, a.sealed
          FROM shoal.heads h
          LEFT JOIN at a ON a.path = h.path
          LEFT JOIN shoal.devices d ON d.space = a.space AND d.device_id = a.device_id
         WHERE h.space = v_space AND h.folder_id = p_folder AND a.id IS DISTINCT FROM h.version
           AND NOT (coalesce(a.deleted, true) AND h.deleted)
           AND NOT coalesce(NOT a.deleted AND NOT h.deleted AND a.sha256 = h.sha256 AND a.kind = h.kind, false)
         ORDER BY h.path;
    ELSIF p_mode = 'revert' THEN
        RETURN QUERY
        WITH theirs AS (
            SELECT c.path_hash AS ph, c.path, min(c.id) AS first_id, max(c.id) AS last_id
              FROM shoal.changes c
             WHERE c.space = v_space AND c.folder_id = p_folder AND c.created_at >= p_time
               AND c.device_id IN (SELECT dv.device_id FROM shoal.devices dv WHERE dv.space = v_space AND dv.name = p_name)
             GROUP BY 1, 2
        ), before AS (
            SELECT t.path, t.last_id, b.*
              FROM theirs t LEFT JOIN LATERAL (
                    SELECT c.id, c.device_id, c.created_at, c.kind, c.size, c.mtime_ns, c.sha256, c.target, c.deleted,
                           c.incarnation, c.seq, c.sealed
                      FROM shoal.changes c
                     WHERE c.space = v_space AND c.folder_id = p_folder
                       AND c.path_hash = t.ph AND c.path = t.path AND c.id < t.first_id
                     ORDER BY c.id DESC LIMIT 1) b ON true
        )
        SELECT h.path, h.version, h.deleted,
               EXISTS (SELECT 1 FROM shoal.changes c
                        WHERE c.space = v_space AND c.folder_id = p_folder
                          AND c.path_hash = h.path_hash AND c.path = h.path AND c.id > b.last_id),
               b.id, b.device_id, d.name, b.created_at, b.kind, b.size, b.mtime_ns, b.sha256, b.target, b.deleted,
               b.incarnation, b.seq, b.sealed
          FROM before b
          JOIN shoal.heads h ON h.space = v_space AND h.folder_id = p_folder
                            AND h.path_hash = sha256(convert_to(b.path, 'UTF8')) AND h.path = b.path
          LEFT JOIN shoal.devices d ON d.space = v_space AND d.device_id = b.device_id
         ORDER BY h.path;
    ELSE
        RAISE EXCEPTION 'restore_plan: mode is at or revert' USING ERRCODE = '22023';
    END IF;
END $$;

-- How far the hub's garbage collection has cut the folder's changelog: a device whose cursor is
-- before it may have missed changes (deletions above all) and resyncs from the heads.
CREATE OR REPLACE FUNCTION shoal.folder_horizon(p_device uuid, p_folder text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN coalesce((SELECT f.gc_horizon FROM shoal.folders f WHERE f.space = v_space AND f.folder_id = p_folder), 0);
END $$;
