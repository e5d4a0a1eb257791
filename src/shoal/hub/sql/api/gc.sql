-- Retention and garbage collection (`shoal hub gc`) and the hub's statistics (`shoal hub stats`):
-- SPEC "History and retention", DESIGN "History, retention, garbage collection".
--
-- Only the hub's owner runs these. They are SECURITY INVOKER (they act with the caller's own
-- rights on the tables, which a device login does not have), and schema.INTERNAL_FUNCTIONS takes
-- EXECUTE on them from device logins as well.
--
-- shoal.hub.gc drives them; every call is one transaction over a bounded batch, so locks are
-- short and a kill -9 at any point leaves a consistent hub (garbage at worst, collected by the
-- next run). The order: the changes of each folder (under the folder's lock, as a push takes
-- it), then per space the contents no change references, then the space's blocks no content of
-- the space references, then the blocks no space has any more.
--
-- Row level security is forced on the space tables, for the owner too: every function sets
-- shoal.space for its transaction before it reads a space's rows (a superuser bypasses it).
-- The state of a run lives in temporary tables of the session (gc_begin): gone with the session.

-- The spaces of the hub: those of its devices and logins (every space's rows are made through
-- a device of that space), and for a role that bypasses row level security those that hold
-- rows (a skip scan over the primary keys: one probe per space).
CREATE OR REPLACE FUNCTION shoal.gc_spaces() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = shoal, pg_temp AS $$
    WITH RECURSIVE bs(space) AS (
        SELECT min(b.space) FROM shoal.block_spaces b
        UNION ALL
        SELECT (SELECT min(b.space) FROM shoal.block_spaces b WHERE b.space > bs.space) FROM bs WHERE bs.space IS NOT NULL
    ), ch(space) AS (
        SELECT min(c.space) FROM shoal.changes c
        UNION ALL
        SELECT (SELECT min(c.space) FROM shoal.changes c WHERE c.space > ch.space) FROM ch WHERE ch.space IS NOT NULL
    )
    SELECT d.space FROM shoal.devices d
    UNION SELECT r.space FROM shoal.device_roles r
    UNION SELECT bs.space FROM bs WHERE bs.space IS NOT NULL
    UNION SELECT ch.space FROM ch WHERE ch.space IS NOT NULL
    ORDER BY 1
$$;

CREATE OR REPLACE FUNCTION shoal.gc_folders(p_space text) RETURNS SETOF text
LANGUAGE plpgsql SET search_path = shoal, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    RETURN QUERY SELECT f.folder_id FROM shoal.folders f WHERE f.space = p_space ORDER BY f.folder_id;
END $$;

-- A run's state: empty temporary tables of this session. A plan (gc_plan_*) fills one with what
-- a step is to delete: each row's key, its place in the table (ctid: a batch goes straight to
-- its rows, in the table's order, and deletes a row only if its key still matches) and a
-- number n in that order, so that batches go by ranges of n. With p_dry a plan also records
-- its rows in a gc_dry_* table, which the later plans count as gone: a dry run is its plans.
CREATE OR REPLACE FUNCTION shoal.gc_begin() RETURNS void
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET client_min_messages = warning AS $$
#variable_conflict use_column
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS gc_changes (id bigint PRIMARY KEY, tid tid NOT NULL, tomb boolean NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS gc_folder_max (folder_id text PRIMARY KEY, max_id bigint NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS gc_since (sha256 text PRIMARY KEY);
    CREATE TEMP TABLE IF NOT EXISTS gc_contents (n bigint PRIMARY KEY, tid tid NOT NULL, sha256 text NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS gc_block_spaces (n bigint PRIMARY KEY, tid tid NOT NULL, sha256 text NOT NULL,
                                                     size bigint NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS gc_orphans (n bigint PRIMARY KEY, tid tid NOT NULL, sha256 text NOT NULL,
                                                size bigint NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS gc_dry_changes (id bigint PRIMARY KEY);
    CREATE TEMP TABLE IF NOT EXISTS gc_dry_contents (space text NOT NULL, sha256 text NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS gc_dry_block_spaces (space text NOT NULL, sha256 text NOT NULL);
    TRUNCATE pg_temp.gc_changes, pg_temp.gc_folder_max, pg_temp.gc_since, pg_temp.gc_contents, pg_temp.gc_block_spaces,
             pg_temp.gc_orphans, pg_temp.gc_dry_changes, pg_temp.gc_dry_contents, pg_temp.gc_dry_block_spaces;
END $$;

-- Plans read a whole folder or space in one statement: hash joins and sorts (nested loops
-- off: with stale statistics the planner may otherwise probe an index a million times), in
-- work_mem (a sort or hash spills to disk rather than grow). Batches touch only their own rows
-- (nested loops forced: the planner may otherwise hash a whole table for every batch).

-- Which changes of a folder go (into gc_changes): every version superseded before p_cutoff (the
-- next change of its path was made before it), and every deleted head whose deletion was made
-- before it (`tomb`: the head goes with it). Never the current head of a path, and never a
-- change an active device has not pulled yet: one after the lowest cursor of the devices that
-- pulled the folder since p_cutoff (a device silent for longer resyncs from the heads).
CREATE OR REPLACE FUNCTION shoal.gc_plan_folder(p_space text, p_folder text, p_cutoff timestamptz, p_dry boolean)
RETURNS TABLE (superseded bigint, tombstones bigint, held_after bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp
SET enable_nestloop = off SET enable_indexscan = off SET work_mem = '16MB' AS $$
#variable_conflict use_column
DECLARE
    v_held bigint;
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    SELECT min(df.cursor) INTO v_held FROM shoal.device_folders df
     WHERE df.space = p_space AND df.folder_id = p_folder AND df.last_pull_at >= p_cutoff;
    TRUNCATE pg_temp.gc_changes;
    INSERT INTO pg_temp.gc_changes (id, tid, tomb)
    SELECT w.id, w.ctid, w.next_at IS NULL
      FROM (SELECT c.id, c.ctid, c.deleted, c.created_at,
                   lead(c.created_at) OVER (PARTITION BY c.path_hash ORDER BY c.id) AS next_at
              FROM shoal.changes c WHERE c.space = p_space AND c.folder_id = p_folder) w
     WHERE w.id <= coalesce(v_held, 9223372036854775807)
       AND (w.next_at < p_cutoff OR (w.next_at IS NULL AND w.deleted AND w.created_at < p_cutoff))
       AND NOT EXISTS (SELECT 1 FROM shoal.heads h  -- a superseded version is never a head: checked anyway
                        WHERE h.space = p_space AND h.folder_id = p_folder AND h.version = w.id AND NOT h.deleted);
    IF p_dry THEN
        INSERT INTO pg_temp.gc_dry_changes SELECT g.id FROM pg_temp.gc_changes g;
    END IF;
    RETURN QUERY SELECT count(*) FILTER (WHERE NOT g.tomb), count(*) FILTER (WHERE g.tomb), v_held
                   FROM pg_temp.gc_changes g;
END $$;

-- Delete the next p_limit planned changes of the folder after id p_after, holding the folder's
-- row lock (as shoal.push does: a push and this never interleave). A planned deletion that is no
-- longer the head of its path (the path came back since) stays. The folder's gc_horizon becomes
-- the highest id collected, and the space's change count drops. Returns the changes and heads
-- deleted and the last planned id looked at (NULL: the plan is done).
CREATE OR REPLACE FUNCTION shoal.gc_collect_changes(p_space text, p_folder text, p_after bigint, p_limit integer)
RETURNS TABLE (changes bigint, heads bigint, last_id bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET lock_timeout = '5s'
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_tids tid[];
    v_tombs bigint[];
    v_last bigint;
    v_changes bigint;
    v_max bigint;
    v_tomb_changes bigint;
    v_tomb_max bigint;
    v_heads bigint;
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    PERFORM 1 FROM shoal.folders f WHERE f.space = p_space AND f.folder_id = p_folder FOR UPDATE;
    SELECT coalesce(array_agg(g.id) FILTER (WHERE NOT g.tomb), '{}'),
           coalesce(array_agg(g.tid) FILTER (WHERE NOT g.tomb), '{}'),
           coalesce(array_agg(g.id) FILTER (WHERE g.tomb), '{}'), max(g.id)
      INTO v_ids, v_tids, v_tombs, v_last
      FROM (SELECT * FROM pg_temp.gc_changes g WHERE g.id > p_after ORDER BY g.id LIMIT p_limit) g;
    WITH gone AS (
        DELETE FROM shoal.changes c USING unnest(v_tids, v_ids) AS u(tid, id)
         WHERE c.ctid = u.tid AND c.id = u.id AND c.space = p_space
        RETURNING c.id
    )
    SELECT count(*), max(gone.id) INTO v_changes, v_max FROM gone;
    WITH heads_gone AS (
        DELETE FROM shoal.heads h USING shoal.changes c
         WHERE c.space = p_space AND c.id = ANY (v_tombs)
           AND h.space = p_space AND h.folder_id = p_folder AND h.path_hash = c.path_hash AND h.path = c.path
           AND h.version = c.id AND h.deleted
        RETURNING h.path_hash, h.path, h.version
    ), changes_gone AS (
        DELETE FROM shoal.changes c USING heads_gone t
         WHERE c.space = p_space AND c.folder_id = p_folder AND c.path_hash = t.path_hash AND c.path = t.path
           AND c.id <= t.version
        RETURNING c.id
    )
    SELECT (SELECT count(*) FROM heads_gone), count(*), max(changes_gone.id)
      INTO v_heads, v_tomb_changes, v_tomb_max FROM changes_gone;
    v_max := greatest(v_max, v_tomb_max);
    IF v_max IS NOT NULL THEN
        UPDATE shoal.folders SET gc_horizon = greatest(gc_horizon, v_max)
         WHERE space = p_space AND folder_id = p_folder;
        UPDATE shoal.space_usage SET changes = greatest(changes - v_changes - v_tomb_changes, 0)
         WHERE space = p_space;
    END IF;
    RETURN QUERY SELECT v_changes + v_tomb_changes, v_heads, v_last;
END $$;

-- Which contents of the space go (into gc_contents): those no change of the space references
-- that arrived before p_before (younger ones may belong to a push in flight). First, the last
-- change of each folder (into gc_folder_max): a push commits the changes of a folder in id
-- order (it holds the folder's lock), so every change the plan cannot see comes after it.
CREATE OR REPLACE FUNCTION shoal.gc_plan_contents(p_space text, p_before timestamptz, p_dry boolean) RETURNS bigint
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET enable_nestloop = off SET work_mem = '16MB' AS $$
#variable_conflict use_column
DECLARE
    v_n bigint;
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    TRUNCATE pg_temp.gc_folder_max, pg_temp.gc_contents;
    INSERT INTO pg_temp.gc_folder_max (folder_id, max_id)
    SELECT f.folder_id, coalesce((SELECT max(c.id) FROM shoal.changes c
                                   WHERE c.space = p_space AND c.folder_id = f.folder_id), 0)
      FROM shoal.folders f WHERE f.space = p_space;
    INSERT INTO pg_temp.gc_contents (n, tid, sha256)
    SELECT row_number() OVER (ORDER BY c.ctid), c.ctid, c.sha256 FROM shoal.contents c
     WHERE c.space = p_space AND c.added_at < p_before
       AND NOT EXISTS (SELECT 1 FROM shoal.changes ch
                        WHERE ch.space = p_space AND ch.sha256 = c.sha256
                          AND NOT EXISTS (SELECT 1 FROM pg_temp.gc_dry_changes d WHERE d.id = ch.id));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF p_dry THEN
        INSERT INTO pg_temp.gc_dry_contents SELECT p_space, g.sha256 FROM pg_temp.gc_contents g;
    END IF;
    RETURN v_n;
END $$;

-- Delete the planned contents numbered p_after + 1 to p_after + p_limit, but those a change
-- made since the plan references. Every push holds a lock on shoal.folders from its first
-- statement to its commit and checks its contents in between: this batch waits those pushes
-- out and holds new ones back until it commits, so no push commits a change whose content it
-- deletes (a restore of an old version, say). Returns how many it deleted.
CREATE OR REPLACE FUNCTION shoal.gc_contents(p_space text, p_after bigint, p_limit integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET lock_timeout = '5s'
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
#variable_conflict use_column
DECLARE
    v_n bigint;
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    LOCK TABLE shoal.folders IN SHARE MODE;
    DELETE FROM pg_temp.gc_since;
    INSERT INTO pg_temp.gc_since
    SELECT DISTINCT ch.sha256 FROM shoal.folders f
      LEFT JOIN pg_temp.gc_folder_max m ON m.folder_id = f.folder_id
      JOIN shoal.changes ch ON ch.space = p_space AND ch.folder_id = f.folder_id AND ch.id > coalesce(m.max_id, 0)
     WHERE f.space = p_space;
    DELETE FROM shoal.contents c
     USING (SELECT g.tid, g.sha256 FROM pg_temp.gc_contents g
             WHERE g.n > p_after AND g.n <= p_after + p_limit
               AND NOT EXISTS (SELECT 1 FROM pg_temp.gc_since r WHERE r.sha256 = g.sha256)) g
     WHERE c.ctid = g.tid AND c.space = p_space AND c.sha256 = g.sha256;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

-- Which blocks of the space go (into gc_block_spaces): those that arrived before p_before and
-- that no content of the space lists. Returns how many, and their bytes.
CREATE OR REPLACE FUNCTION shoal.gc_plan_block_spaces(p_space text, p_before timestamptz, p_dry boolean)
RETURNS TABLE (planned bigint, bytes bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET enable_nestloop = off SET work_mem = '16MB' AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    TRUNCATE pg_temp.gc_block_spaces;
    INSERT INTO pg_temp.gc_block_spaces (n, tid, sha256, size)
    SELECT row_number() OVER (ORDER BY y.ctid), y.ctid, y.sha256, y.size
      FROM (SELECT x.ctid, x.sha256, coalesce(octet_length(b.data), 0) AS size
              FROM (SELECT bs.ctid, bs.sha256 FROM shoal.block_spaces bs
                     WHERE bs.space = p_space AND bs.added_at < p_before
                       AND NOT EXISTS (SELECT 1 FROM (SELECT unnest(c.blocks) AS sha FROM shoal.contents c
                                                       WHERE c.space = p_space
                                                         AND NOT EXISTS (SELECT 1 FROM pg_temp.gc_dry_contents d
                                                                          WHERE d.space = p_space
                                                                            AND d.sha256 = c.sha256)) r
                                        WHERE r.sha = bs.sha256)) x
              LEFT JOIN shoal.blocks b ON b.sha256 = x.sha256) y;
    IF p_dry THEN
        INSERT INTO pg_temp.gc_dry_block_spaces SELECT p_space, g.sha256 FROM pg_temp.gc_block_spaces g;
    END IF;
    RETURN QUERY SELECT count(*), coalesce(sum(g.size), 0)::bigint FROM pg_temp.gc_block_spaces g;
END $$;

-- The planned blocks numbered p_after + 1 to p_after + p_limit leave the space; its byte count
-- drops by their size. A content declared meanwhile with one of them (its device found the
-- block on the hub) is mended by gc_repair_block_spaces, which the caller runs once every
-- transaction that was open when the last batch committed has ended, and before any block
-- itself is deleted. Returns how many left, and their bytes.
CREATE OR REPLACE FUNCTION shoal.gc_block_spaces(p_space text, p_after bigint, p_limit integer)
RETURNS TABLE (deleted bigint, bytes bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET enable_hashjoin = off SET enable_mergejoin = off AS $$
#variable_conflict use_column
DECLARE
    v_n bigint;
    v_bytes bigint;
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    WITH gone AS (
        DELETE FROM shoal.block_spaces bs
         USING (SELECT g.tid, g.sha256, g.size FROM pg_temp.gc_block_spaces g
                 WHERE g.n > p_after AND g.n <= p_after + p_limit) g
         WHERE bs.ctid = g.tid AND bs.space = p_space AND bs.sha256 = g.sha256
        RETURNING g.size
    )
    SELECT count(*), coalesce(sum(gone.size), 0) INTO v_n, v_bytes FROM gone;
    UPDATE shoal.space_usage SET bytes = greatest(bytes - v_bytes, 0) WHERE space = p_space;
    RETURN QUERY SELECT v_n, v_bytes;
END $$;

-- Every block a content of the space lists is the space's again (if the hub still has it): a
-- content declared while its block was leaving the space (see gc_block_spaces), or left so by
-- a run killed before it got here. Returns the blocks and bytes given back.
CREATE OR REPLACE FUNCTION shoal.gc_repair_block_spaces(p_space text) RETURNS TABLE (added bigint, bytes bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET enable_nestloop = off SET work_mem = '16MB' AS $$
#variable_conflict use_column
DECLARE
    v_n bigint;
    v_bytes bigint;
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    WITH lost AS (
        SELECT DISTINCT l.sha FROM (SELECT unnest(c.blocks) AS sha FROM shoal.contents c WHERE c.space = p_space) l
         WHERE NOT EXISTS (SELECT 1 FROM shoal.block_spaces bs WHERE bs.space = p_space AND bs.sha256 = l.sha)
    ), ins AS (
        INSERT INTO shoal.block_spaces (space, sha256)
        SELECT p_space, l.sha FROM lost l WHERE EXISTS (SELECT 1 FROM shoal.blocks b WHERE b.sha256 = l.sha)
        ON CONFLICT DO NOTHING
        RETURNING sha256
    )
    SELECT count(*), coalesce(sum(octet_length(b.data)), 0) INTO v_n, v_bytes
      FROM ins JOIN shoal.blocks b ON b.sha256 = ins.sha256;
    IF v_n > 0 THEN
        UPDATE shoal.space_usage SET bytes = bytes + v_bytes WHERE space = p_space;
    END IF;
    RETURN QUERY SELECT v_n, v_bytes;
END $$;

-- Transactions of the hub's clients open now (their virtual ids; not autovacuum's), and how
-- many of those are still open: the caller waits until none is, as CREATE INDEX CONCURRENTLY
-- waits for older snapshots (pg_locks and a session's database and type are visible to every
-- role).
CREATE OR REPLACE FUNCTION shoal.gc_open_transactions() RETURNS text[]
LANGUAGE sql STABLE SET search_path = shoal, pg_temp AS $$
    SELECT coalesce(array_agg(l.virtualxid), '{}') FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'virtualxid' AND l.granted AND l.pid <> pg_backend_pid()
       AND l.pid IN (SELECT a.pid FROM pg_catalog.pg_stat_activity a
                      WHERE a.datname = current_database() AND a.backend_type = 'client backend')
$$;

CREATE OR REPLACE FUNCTION shoal.gc_still_open(p_vxids text[]) RETURNS integer
LANGUAGE sql STABLE SET search_path = shoal, pg_temp AS $$
    SELECT count(*)::integer FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'virtualxid' AND l.granted AND l.virtualxid = ANY (p_vxids)
$$;

-- Which blocks no space has any more (into gc_orphans). Under row level security a role sees
-- one space's rows at a time: the first statement keeps the blocks the first space lacks (all
-- spaces', for a role that bypasses it), each further space takes its own back out. Returns
-- how many, their bytes, and the highest number given (numbers taken back leave gaps).
CREATE OR REPLACE FUNCTION shoal.gc_plan_orphans() RETURNS TABLE (planned bigint, bytes bigint, last_n bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET enable_nestloop = off SET work_mem = '16MB' AS $$
#variable_conflict use_column
DECLARE
    v_spaces text[] := ARRAY(SELECT shoal.gc_spaces());
    s text;
BEGIN
    TRUNCATE pg_temp.gc_orphans;
    IF cardinality(v_spaces) = 0 THEN
        RETURN QUERY SELECT 0::bigint, 0::bigint, 0::bigint;  -- nobody stored anything (or this role cannot tell)
        RETURN;
    END IF;
    PERFORM set_config('shoal.space', v_spaces[1], true);
    -- numbered in the order of the scan of shoal.blocks (its physical order, mostly)
    INSERT INTO pg_temp.gc_orphans (n, tid, sha256, size)
    SELECT row_number() OVER (), b.ctid, b.sha256, octet_length(b.data) FROM shoal.blocks b
     WHERE NOT EXISTS (SELECT 1 FROM shoal.block_spaces bs
                        WHERE bs.sha256 = b.sha256
                          AND NOT EXISTS (SELECT 1 FROM pg_temp.gc_dry_block_spaces d
                                           WHERE d.space = bs.space AND d.sha256 = bs.sha256));
    FOREACH s IN ARRAY v_spaces[2:] LOOP
        PERFORM set_config('shoal.space', s, true);
        DELETE FROM pg_temp.gc_orphans o
         WHERE EXISTS (SELECT 1 FROM shoal.block_spaces bs
                        WHERE bs.space = s AND bs.sha256 = o.sha256
                          AND NOT EXISTS (SELECT 1 FROM pg_temp.gc_dry_block_spaces d
                                           WHERE d.space = s AND d.sha256 = bs.sha256));
    END LOOP;
    RETURN QUERY SELECT count(*), coalesce(sum(o.size), 0)::bigint, coalesce(max(o.n), 0) FROM pg_temp.gc_orphans o;
END $$;

-- Delete the planned orphan blocks numbered from p_after + 1: up to p_limit of them and about
-- p_max_bytes. shoal.store_blocks holds shoal.blocks from its insert (which finds a block
-- already there and leaves it) to its commit (which gives its space that block): this batch
-- waits those out and holds new ones back, then checks every space again (spaces read after
-- the lock, so a space made meanwhile is among them). Returns the blocks and bytes deleted and
-- the number of the last planned block looked at.
CREATE OR REPLACE FUNCTION shoal.gc_orphan_blocks(p_after bigint, p_limit integer, p_max_bytes bigint)
RETURNS TABLE (deleted bigint, bytes bigint, last_n bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp SET lock_timeout = '5s'
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
#variable_conflict use_column
DECLARE
    v_tids tid[];
    v_shas text[];
    v_last bigint;
    s text;
    v_n bigint;
    v_bytes bigint;
BEGIN
    LOCK TABLE shoal.blocks IN SHARE MODE;
    SELECT coalesce(array_agg(o.tid), '{}'), coalesce(array_agg(o.sha256), '{}'), coalesce(max(o.n), p_after + p_limit)
      INTO v_tids, v_shas, v_last
      FROM (SELECT o.n, o.tid, o.sha256, o.size, sum(o.size) OVER (ORDER BY o.n) AS running
              FROM pg_temp.gc_orphans o WHERE o.n > p_after AND o.n <= p_after + p_limit) o
     WHERE o.running - o.size < p_max_bytes;
    FOREACH s IN ARRAY ARRAY(SELECT shoal.gc_spaces()) LOOP
        PERFORM set_config('shoal.space', s, true);
        SELECT coalesce(array_agg(u.tid), '{}'), coalesce(array_agg(u.sha), '{}') INTO v_tids, v_shas
          FROM unnest(v_tids, v_shas) AS u(tid, sha)
         WHERE NOT EXISTS (SELECT 1 FROM shoal.block_spaces bs WHERE bs.space = s AND bs.sha256 = u.sha);
    END LOOP;
    WITH gone AS (
        DELETE FROM shoal.blocks b USING unnest(v_tids, v_shas) AS u(tid, sha)
         WHERE b.ctid = u.tid AND b.sha256 = u.sha
        RETURNING octet_length(b.data) AS size
    )
    SELECT count(*), coalesce(sum(gone.size), 0) INTO v_n, v_bytes FROM gone;
    RETURN QUERY SELECT v_n, v_bytes, v_last;
END $$;

-- `shoal hub stats`: per folder of a space, its live files, versions (changes), deleted heads,
-- the bytes its live files list (each block once), the oldest change kept and the GC horizon.
CREATE OR REPLACE FUNCTION shoal.stats_folders(p_space text)
RETURNS TABLE (folder_id text, files bigint, versions bigint, tombstones bigint, bytes_referenced bigint,
               oldest_change timestamptz, gc_horizon bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    RETURN QUERY
    SELECT f.folder_id,
           (SELECT count(*) FROM shoal.heads h WHERE h.space = p_space AND h.folder_id = f.folder_id AND NOT h.deleted
               AND h.kind <> 'dir'),
           (SELECT count(*) FROM shoal.changes c WHERE c.space = p_space AND c.folder_id = f.folder_id),
           (SELECT count(*) FROM shoal.heads h WHERE h.space = p_space AND h.folder_id = f.folder_id AND h.deleted),
           (SELECT coalesce(sum(octet_length(b.data)), 0)::bigint FROM (
                SELECT DISTINCT u.sha FROM shoal.heads h
                  JOIN shoal.contents ct ON ct.space = p_space AND ct.sha256 = h.sha256
                 CROSS JOIN LATERAL unnest(ct.blocks) AS u(sha)
                 WHERE h.space = p_space AND h.folder_id = f.folder_id AND NOT h.deleted AND h.kind IN ('file', 'exec')) r
              JOIN shoal.blocks b ON b.sha256 = r.sha),
           (SELECT c.created_at FROM shoal.changes c WHERE c.space = p_space AND c.folder_id = f.folder_id
             ORDER BY c.id LIMIT 1),
           f.gc_horizon
      FROM shoal.folders f WHERE f.space = p_space ORDER BY f.folder_id;
END $$;

-- `shoal hub stats`, per space: contents, blocks and their bytes (stored), the bytes the live
-- files of all its folders list (each block once), and the space's usage counters (quotas).
CREATE OR REPLACE FUNCTION shoal.stats_space(p_space text)
RETURNS TABLE (contents bigint, blocks bigint, bytes_stored bigint, bytes_referenced bigint,
               usage_changes bigint, usage_bytes bigint)
LANGUAGE plpgsql SET search_path = shoal, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('shoal.space', p_space, true);
    RETURN QUERY
    SELECT (SELECT count(*) FROM shoal.contents c WHERE c.space = p_space),
           s.n, s.bytes,
           (SELECT coalesce(sum(octet_length(b.data)), 0)::bigint FROM (
                SELECT DISTINCT u.sha FROM shoal.heads h
                  JOIN shoal.contents ct ON ct.space = p_space AND ct.sha256 = h.sha256
                 CROSS JOIN LATERAL unnest(ct.blocks) AS u(sha)
                 WHERE h.space = p_space AND NOT h.deleted AND h.kind IN ('file', 'exec')) r
              JOIN shoal.blocks b ON b.sha256 = r.sha),
           coalesce(u.changes, 0), coalesce(u.bytes, 0)
      FROM (SELECT count(*) AS n, coalesce(sum(octet_length(b.data)), 0)::bigint AS bytes
              FROM shoal.block_spaces bs JOIN shoal.blocks b ON b.sha256 = bs.sha256
             WHERE bs.space = p_space) s
      LEFT JOIN shoal.space_usage u ON u.space = p_space;
END $$;

-- `shoal hub stats`, the whole hub: blocks stored once for all spaces, and their bytes.
CREATE OR REPLACE FUNCTION shoal.stats_hub() RETURNS TABLE (blocks bigint, bytes bigint)
LANGUAGE sql STABLE SET search_path = shoal, pg_temp AS $$
    SELECT count(*), coalesce(sum(octet_length(b.data)), 0)::bigint FROM shoal.blocks b
$$;
