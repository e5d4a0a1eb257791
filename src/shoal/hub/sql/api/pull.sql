-- Changes of a folder after a cursor, in id order, with the pushing device's name. With
-- p_stub_own, the calling device's own rows come as stubs (id, device, incarnation, seq, kind,
-- size, mtime, deleted; no path, name, hash, target or sealed payload): a syncing device skips
-- them, and across a slow link its own pushes coming back were most of a first sync's download.
CREATE OR REPLACE FUNCTION shoal.pull(p_device uuid, p_folder text, p_after bigint, p_limit integer,
                                      p_stub_own boolean)
RETURNS TABLE (id bigint, path text, device_id uuid, device_name text, kind text, size bigint,
               mtime_ns bigint, sha256 text, target text, deleted boolean, moved_from text,
               conflict_of text, incarnation uuid, seq bigint, sealed bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY
        SELECT c.id, CASE WHEN s.stub THEN NULL ELSE c.path END, c.device_id,
               CASE WHEN s.stub THEN NULL ELSE d.name END, c.kind, c.size, c.mtime_ns,
               CASE WHEN s.stub THEN NULL ELSE c.sha256 END, CASE WHEN s.stub THEN NULL ELSE c.target END,
               c.deleted, CASE WHEN s.stub THEN NULL ELSE c.moved_from END,
               CASE WHEN s.stub THEN NULL ELSE c.conflict_of END, c.incarnation, c.seq,
               CASE WHEN s.stub THEN NULL ELSE c.sealed END
          FROM shoal.changes c JOIN shoal.devices d ON d.space = c.space AND d.device_id = c.device_id
         CROSS JOIN LATERAL (SELECT coalesce(p_stub_own, false) AND c.device_id = p_device AS stub) s
         WHERE c.space = v_space AND c.folder_id = p_folder AND c.id > p_after
         ORDER BY c.id LIMIT p_limit;
END $$;

-- A device reports how far it has applied a folder (for `shoal devices`: how far behind it is).
CREATE OR REPLACE FUNCTION shoal.ack_pull(p_device uuid, p_folder text, p_cursor bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    INSERT INTO shoal.device_folders(space, folder_id, device_id, cursor, last_pull_at)
    VALUES (v_space, p_folder, p_device, p_cursor, now())
    ON CONFLICT (space, folder_id, device_id) DO UPDATE SET cursor = excluded.cursor, last_pull_at = now();
    UPDATE shoal.devices SET last_pull_at = now() WHERE device_id = p_device;
END $$;

-- Current heads of a folder (convergence checks), with what their rows were pushed as (for
-- encrypted folders: the sealed payload, authenticated with device, incarnation and seq).
CREATE OR REPLACE FUNCTION shoal.heads_of(p_device uuid, p_folder text)
RETURNS TABLE (path text, version bigint, kind text, size bigint, mtime_ns bigint, sha256 text,
               target text, deleted boolean, device_id uuid, incarnation uuid, seq bigint, sealed bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT h.path, h.version, h.kind, h.size, h.mtime_ns, h.sha256, h.target, h.deleted,
                        h.device_id, h.incarnation, c.seq, c.sealed
                   FROM shoal.heads h LEFT JOIN shoal.changes c ON c.space = h.space AND c.id = h.version
                  WHERE h.space = v_space AND h.folder_id = p_folder ORDER BY h.path;
END $$;

-- Heads of given paths (retrying a failed apply without rescanning the whole folder).
CREATE OR REPLACE FUNCTION shoal.heads_at(p_device uuid, p_folder text, p_paths text[])
RETURNS TABLE (path text, version bigint, device_id uuid, device_name text, kind text, size bigint,
               mtime_ns bigint, sha256 text, target text, deleted boolean, incarnation uuid, seq bigint,
               sealed bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT h.path, h.version, h.device_id, d.name, h.kind, h.size, h.mtime_ns, h.sha256,
                        h.target, h.deleted, h.incarnation, c.seq, c.sealed
                   FROM shoal.heads h JOIN shoal.devices d ON d.space = h.space AND d.device_id = h.device_id
                   LEFT JOIN shoal.changes c ON c.space = h.space AND c.id = h.version
                  WHERE h.space = v_space AND h.folder_id = p_folder AND h.path = ANY(p_paths)
                    AND h.path_hash = ANY (SELECT sha256(convert_to(p, 'UTF8')) FROM unnest(p_paths) AS p);
END $$;
