-- Push one batch of changelog rows of one folder, atomically and set-based.
-- The rows come as one array per column, all of one length (a row is the same index in each):
-- seq, path, kind, size, mtime_ns, sha256, target, deleted, base, moved_from, conflict_of,
-- sealed. Sent as binary parameters they reach the server as COPY's binary format would: no
-- text to parse per row. `sealed` is the sealed payload of a row of an encrypted folder (which
-- every row of such a folder has, and no row of another: SQLSTATE SQ002 otherwise).
-- Returns per row: status 'accepted' (new head), 'same' (the head already has this content),
-- or 'conflict' (the head is a version the device had not seen: the head is returned).
-- Pushes of one folder are serialised by a lock on its row in shoal.folders (only the API can
-- take it: a device login may not lock anything itself), which also makes the ids of a
-- folder's changes become visible in order (a pull cursor never skips a row), and makes row
-- locks on heads unnecessary: every writer of a folder's heads holds that lock.
-- A row is refused (SQLSTATE 22023, nothing stored) unless every hash is 64 lowercase hex
-- digits and its texts are within bounds; a space over its quota is refused as a whole.
CREATE OR REPLACE FUNCTION shoal.push(
    p_device uuid, p_incarnation uuid, p_folder text, p_seq bigint[], p_path text[], p_kind text[],
    p_size bigint[], p_mtime_ns bigint[], p_sha256 text[], p_target text[], p_deleted boolean[], p_base bigint[],
    p_moved_from text[], p_conflict_of text[], p_sealed bytea[])
RETURNS TABLE (seq bigint, status text, version bigint, head jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_space text := shoal.enter(p_device);
    v_min bigint;
    v_max bigint;
    v_bad text;
    v_sealed boolean;
BEGIN
    IF p_folder IS NULL OR octet_length(p_folder) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'a folder id is 1 to 255 bytes' USING ERRCODE = '22023';
    END IF;
    INSERT INTO shoal.folders(space, folder_id) VALUES (v_space, p_folder) ON CONFLICT DO NOTHING;
    SELECT f.sealed_key IS NOT NULL INTO v_sealed FROM shoal.folders f
     WHERE f.space = v_space AND f.folder_id = p_folder FOR UPDATE;
    IF (SELECT count(DISTINCT n) <> 1 OR bool_or(n IS NULL) FROM unnest(ARRAY[
            cardinality(p_seq), cardinality(p_path), cardinality(p_kind), cardinality(p_size),
            cardinality(p_mtime_ns), cardinality(p_sha256), cardinality(p_target), cardinality(p_deleted),
            cardinality(p_base), cardinality(p_moved_from), cardinality(p_conflict_of), cardinality(p_sealed)]) AS n) THEN
        RAISE EXCEPTION 'a push names every column of every row: arrays of one length' USING ERRCODE = '22023';
    END IF;
    -- payload_md5: of the row as pushed (a replay must match it), in a text form no session
    -- setting changes.
    CREATE TEMP TABLE push_in ON COMMIT DROP AS
        SELECT u.*, md5(row(u.seq, u.path, u.kind, u.size, u.mtime_ns, u.sha256, u.target, u.deleted, u.base,
                            u.moved_from, u.conflict_of, encode(u.sealed, 'hex'))::text) AS payload_md5,
               sha256(convert_to(u.path, 'UTF8')) AS path_hash
          FROM unnest(p_seq, p_path, p_kind, p_size, p_mtime_ns, p_sha256, p_target, p_deleted, p_base,
                      p_moved_from, p_conflict_of, p_sealed)
            AS u(seq, path, kind, size, mtime_ns, sha256, target, deleted, base, moved_from, conflict_of, sealed);
    ANALYZE push_in;  -- a temp table has no statistics: without them the joins below go nested-loop
    -- Every lookup below is bounded by this batch (its seq range, its paths), never by the
    -- device's or the folder's history: a hash of all earlier rows per call made pushes O(history).
    SELECT min(i.seq), max(i.seq) INTO v_min, v_max FROM push_in i;
    IF EXISTS (SELECT 1 FROM push_in i
                WHERE i.seq IS NULL OR i.path IS NULL OR i.deleted IS NULL OR i.sha256 IS NULL
                   OR i.kind IS NULL OR i.kind NOT IN ('file', 'exec', 'symlink', 'dir') OR i.size IS NULL OR i.size < 0
                   OR i.mtime_ns IS NULL) THEN
        RAISE EXCEPTION 'malformed change row in push' USING ERRCODE = '22023';
    END IF;
    -- A hash is 64 bytes of [0-9a-f] (the regex '^[0-9a-f]{64}$' says the same, ~20x slower).
    SELECT i.path INTO v_bad FROM push_in i
     WHERE octet_length(i.sha256) <> 64 OR i.sha256 ~ '[^0-9a-f]' OR octet_length(i.path) > 4096
        OR octet_length(coalesce(i.target, '')) > 4096 OR octet_length(coalesce(i.moved_from, '')) > 4096
        OR octet_length(coalesce(i.conflict_of, '')) > 4096 OR octet_length(coalesce(i.sealed, ''::bytea)) > 20000
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'change of % refused: a hash that is not 64 lowercase hex digits, or a text over 4096 bytes',
            left(v_bad, 200) USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM push_in i WHERE (i.sealed IS NOT NULL) <> v_sealed) THEN
        IF v_sealed THEN
            RAISE EXCEPTION 'folder % is encrypted on the hub: its changes must be sealed (set the folder''s '
                            'encryption.passphrase_file)', p_folder USING ERRCODE = 'SQ002';
        END IF;
        RAISE EXCEPTION 'folder % is not encrypted on the hub: sealed changes are refused', p_folder
            USING ERRCODE = 'SQ002';
    END IF;
    IF (SELECT count(DISTINCT i.seq) <> count(*) OR count(DISTINCT i.path) <> count(*) FROM push_in i) THEN
        RAISE EXCEPTION 'a push batch names a seq or a path twice' USING ERRCODE = '22023';
    END IF;
    -- Idempotency: a replay of the same (device, incarnation, seq) is a no-op; another payload is refused.
    IF EXISTS (SELECT 1 FROM push_in i JOIN shoal.changes c
                 ON c.space = v_space AND c.device_id = p_device AND c.incarnation = p_incarnation AND c.seq = i.seq
                AND c.seq BETWEEN v_min AND v_max
                WHERE c.payload_md5 <> i.payload_md5 OR c.folder_id <> p_folder OR c.space <> v_space) THEN
        RAISE EXCEPTION 'a seq of device % was already pushed with another payload', p_device
            USING ERRCODE = '23505';
    END IF;
    IF EXISTS (SELECT 1 FROM push_in i
                WHERE NOT i.deleted AND i.kind IN ('file', 'exec')
                  AND NOT EXISTS (SELECT 1 FROM shoal.contents ct
                                   WHERE ct.space = v_space AND ct.sha256 = i.sha256)) THEN
        RAISE EXCEPTION 'a pushed content is not on the hub' USING ERRCODE = '23503';
    END IF;
    RETURN QUERY
    WITH replay AS (
        SELECT i.seq, c.id FROM push_in i JOIN shoal.changes c
            ON c.space = v_space AND c.device_id = p_device AND c.incarnation = p_incarnation AND c.seq = i.seq
                AND c.seq BETWEEN v_min AND v_max
    ), fresh AS (
        SELECT i.*, h.version AS h_version, h.device_id AS h_device, h.incarnation AS h_incarnation,
               h.kind AS h_kind, h.size AS h_size, h.mtime_ns AS h_mtime_ns, h.sha256 AS h_sha256,
               h.target AS h_target, h.deleted AS h_deleted
          FROM push_in i LEFT JOIN LATERAL (
                SELECT hh.* FROM shoal.heads hh  -- one index probe per pushed path (OFFSET 0: not flattened)
                 WHERE hh.space = v_space AND hh.folder_id = p_folder AND hh.path_hash = i.path_hash
                   AND hh.path = i.path OFFSET 0) h ON true
         WHERE NOT EXISTS (SELECT 1 FROM replay r WHERE r.seq = i.seq)
    ), classified AS (
        SELECT f.*, CASE
            WHEN f.h_version IS NOT NULL AND f.h_deleted = f.deleted
                 AND (f.deleted OR (f.h_sha256 = f.sha256 AND f.h_kind = f.kind)) THEN 'same'
            WHEN f.h_version IS NULL AND f.deleted THEN 'same'  -- deleting what never was
            WHEN f.h_version IS NOT NULL AND f.h_version IS DISTINCT FROM f.base
                 AND NOT (f.h_device = p_device AND f.h_incarnation = p_incarnation)
                 AND NOT (f.h_deleted AND f.base IS NULL) THEN 'conflict'
            ELSE 'accepted' END AS st
          FROM fresh f
    ), ins AS (
        INSERT INTO shoal.changes(space, folder_id, path, device_id, incarnation, seq, kind, size, mtime_ns,
                                  sha256, target, deleted, base_version, moved_from, conflict_of, payload_md5,
                                  sealed, path_hash)
        SELECT v_space, p_folder, c.path, p_device, p_incarnation, c.seq, c.kind, c.size, c.mtime_ns, c.sha256,
               c.target, c.deleted, c.base, c.moved_from, c.conflict_of, c.payload_md5, c.sealed, c.path_hash
          FROM classified c WHERE c.st = 'accepted' ORDER BY c.seq
        RETURNING shoal.changes.id, shoal.changes.seq, shoal.changes.path, shoal.changes.path_hash, shoal.changes.kind,
                  shoal.changes.size, shoal.changes.mtime_ns, shoal.changes.sha256,
                  shoal.changes.target, shoal.changes.deleted
    ), up AS (
        INSERT INTO shoal.heads(space, folder_id, path, path_hash, version, device_id, incarnation, kind, size,
                                mtime_ns, sha256, target, deleted)
        SELECT v_space, p_folder, n.path, n.path_hash, n.id, p_device, p_incarnation, n.kind, n.size, n.mtime_ns, n.sha256,
               n.target, n.deleted FROM ins n
        ON CONFLICT (space, folder_id, path_hash) DO UPDATE SET
            version = excluded.version, device_id = excluded.device_id, incarnation = excluded.incarnation,
            kind = excluded.kind, size = excluded.size, mtime_ns = excluded.mtime_ns,
            sha256 = excluded.sha256, target = excluded.target, deleted = excluded.deleted
        RETURNING 1
    ), conf AS (
        INSERT INTO shoal.conflicts(space, folder_id, path, head_version, head_device, pushing_device)
        SELECT v_space, p_folder, c.path, c.h_version, c.h_device, p_device FROM classified c WHERE c.st = 'conflict'
        RETURNING 1
    )
    SELECT r.seq, 'accepted'::text, r.id, NULL::jsonb FROM replay r
    UNION ALL
    SELECT c.seq, 'same'::text, c.h_version, NULL::jsonb FROM classified c WHERE c.st = 'same'
    UNION ALL
    SELECT c.seq, 'conflict'::text, c.h_version, jsonb_build_object(
               'version', c.h_version, 'device_id', c.h_device,
               'device_name', (SELECT d.name FROM shoal.devices d WHERE d.space = v_space AND d.device_id = c.h_device),
               'kind', c.h_kind, 'size', c.h_size, 'mtime_ns', c.h_mtime_ns, 'sha256', c.h_sha256,
               'target', c.h_target, 'deleted', c.h_deleted, 'incarnation', c.h_incarnation,
               'seq', hc.seq, 'sealed', encode(hc.sealed, 'base64'))
      FROM classified c
      LEFT JOIN shoal.changes hc ON hc.space = v_space AND hc.id = c.h_version
     WHERE c.st = 'conflict'
    UNION ALL
    SELECT n.seq, 'accepted'::text, n.id, NULL::jsonb FROM ins n;
    DROP TABLE push_in;
    -- Quota: the rows this transaction added (xmin), counted against the space's bound.
    PERFORM shoal.add_usage(v_space, (SELECT count(*) FROM shoal.changes c
     WHERE c.space = v_space AND c.device_id = p_device AND c.incarnation = p_incarnation
       AND c.seq BETWEEN v_min AND v_max AND c.xmin = pg_current_xact_id()::xid), 0);
    UPDATE shoal.devices SET last_push_at = now() WHERE space = v_space AND device_id = p_device;
    PERFORM pg_notify(shoal.channel_of(v_space), '');
END $$;
