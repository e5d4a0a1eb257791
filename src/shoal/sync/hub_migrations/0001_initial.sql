-- The hub: changelog, heads, content blocks, devices. Everything lives in schema "shoal".
-- Devices reach the tables only through the SECURITY DEFINER functions below, as their own
-- device (authority from session_user) and inside their own space: a hub can hold several
-- spaces (e.g. the members of a family), and every table holding a space's data has row level
-- security enabled and forced, so even a function's mistake cannot cross spaces.
-- Paths, metadata and content are compared by equality only (opaque to the hub).
-- Every table is keyed by (space, folder) first, so it can be distributed by that on Citus.

CREATE TABLE shoal.hub_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO shoal.hub_meta(key, value) VALUES ('hub_id', gen_random_uuid()::text);

CREATE TABLE shoal.devices (
    device_id     uuid PRIMARY KEY,
    space         text NOT NULL DEFAULT 'default',
    name          text NOT NULL,
    role_name     text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_push_at  timestamptz,
    last_pull_at  timestamptz,
    last_error    text,
    last_error_at timestamptz
);

-- Logins made by `shoal hub add-device` are bound to exactly one device id, in one space.
CREATE TABLE shoal.device_roles (
    role_name  text PRIMARY KEY,
    space      text NOT NULL DEFAULT 'default',
    device_id  uuid UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE shoal.device_folders (
    space        text NOT NULL,
    folder_id    text NOT NULL,
    device_id    uuid NOT NULL REFERENCES shoal.devices(device_id),
    cursor       bigint NOT NULL DEFAULT 0,
    last_pull_at timestamptz,
    PRIMARY KEY (space, folder_id, device_id)
);

-- Content-addressed storage: a content (whole file) is a list of blocks; each block stored once.
CREATE TABLE shoal.blocks (
    sha256 text PRIMARY KEY,
    data   bytea NOT NULL
);
ALTER TABLE shoal.blocks ALTER COLUMN data SET STORAGE EXTERNAL;  -- media is already compressed

CREATE TABLE shoal.contents (
    sha256     text PRIMARY KEY,
    size       bigint NOT NULL,
    block_size integer NOT NULL,
    blocks     text[] NOT NULL
);

-- Which space may read which block and content. A block is stored once for the whole hub, but
-- a space gets it only by uploading its bytes (proof of possession): knowing a hash is not
-- enough to read another space's file, nor to learn that another space has it.
CREATE TABLE shoal.block_spaces (
    space  text NOT NULL,
    sha256 text NOT NULL,
    PRIMARY KEY (space, sha256)
);
CREATE TABLE shoal.content_spaces (
    space  text NOT NULL,
    sha256 text NOT NULL,
    PRIMARY KEY (space, sha256)
);

-- The changelog. A cursor over id never skips a row: pushes to one folder are serialised by an
-- advisory lock, so ids of a folder become visible in order.
CREATE TABLE shoal.changes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    space        text NOT NULL,
    folder_id    text NOT NULL,
    path         text NOT NULL,
    device_id    uuid NOT NULL,
    incarnation  uuid NOT NULL,
    seq          bigint NOT NULL,
    kind         text NOT NULL,
    size         bigint NOT NULL,
    mtime_ns     bigint NOT NULL,
    sha256       text NOT NULL,
    target       text,
    deleted      boolean NOT NULL,
    base_version bigint,
    moved_from   text,
    conflict_of  text,
    payload_md5  text NOT NULL,  -- of the row as pushed: a replay must match it exactly
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, incarnation, seq)
);
CREATE INDEX changes_folder_id ON shoal.changes (space, folder_id, id);

-- The current version of every path (the compare-and-swap target).
CREATE TABLE shoal.heads (
    space       text NOT NULL,
    folder_id   text NOT NULL,
    path        text NOT NULL,
    version     bigint NOT NULL,
    device_id   uuid NOT NULL,
    incarnation uuid NOT NULL,
    kind        text NOT NULL,
    size        bigint NOT NULL,
    mtime_ns    bigint NOT NULL,
    sha256      text NOT NULL,
    target      text,
    deleted     boolean NOT NULL,
    PRIMARY KEY (space, folder_id, path)
);
CREATE INDEX heads_sha256 ON shoal.heads (space, sha256) WHERE NOT deleted;

CREATE TABLE shoal.conflicts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    space          text NOT NULL,
    folder_id      text NOT NULL,
    path           text NOT NULL,
    head_version   bigint NOT NULL,
    head_device    uuid NOT NULL,
    pushing_device uuid NOT NULL,
    detected_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE shoal.sync_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    space       text NOT NULL,
    device_id   uuid NOT NULL,
    folder_id   text,
    finished_at timestamptz NOT NULL DEFAULT now(),
    result      text NOT NULL,
    pushed      integer NOT NULL DEFAULT 0,
    pulled      integer NOT NULL DEFAULT 0,
    duration_ms integer NOT NULL DEFAULT 0,
    error       text
);

-- Row level security: the rows of a space are visible only while `shoal.space` names it (set
-- for the transaction by shoal.enter). Forced, so the functions (running as the owner) obey it.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['device_folders', 'block_spaces', 'content_spaces', 'changes', 'heads',
                             'conflicts', 'sync_log'] LOOP
        EXECUTE format('ALTER TABLE shoal.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE shoal.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY same_space ON shoal.%I USING (space = current_setting(''shoal.space'', true))'
                       ' WITH CHECK (space = current_setting(''shoal.space'', true))', t);
    END LOOP;
END $$;

-- A login that is a member of the device group but not listed in this hub's device_roles was
-- made for another hub on the same server (roles are server-wide): it is nobody here.
CREATE FUNCTION shoal.is_foreign_device_login() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
    SELECT NOT EXISTS (SELECT 1 FROM shoal.device_roles WHERE role_name = session_user)
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                     JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                     JOIN pg_catalog.pg_roles r ON r.oid = m.member
                    WHERE g.rolname = 'shoal_device' AND r.rolname = session_user)
$$;

-- Who is calling: a bound device login may act only as its own device; other roles (the hub
-- owner's, as in a single-user setup) may act for any registered device. Returns the device's
-- space and makes it the transaction's space (row level security reads it).
CREATE FUNCTION shoal.enter(p_device uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    bound uuid;
    revoked timestamptz;
    v_space text;
BEGIN
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
CREATE FUNCTION shoal.register_device(p_device uuid, p_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    bound uuid;
    v_space text := 'default';
BEGIN
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
    INSERT INTO shoal.devices(device_id, space, name, role_name) VALUES (p_device, v_space, p_name, session_user)
    ON CONFLICT (device_id) DO UPDATE SET name = excluded.name;
    RETURN (SELECT value FROM shoal.hub_meta WHERE key = 'hub_id');
END $$;

CREATE FUNCTION shoal.hub_id() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
    SELECT value FROM shoal.hub_meta WHERE key = 'hub_id'
$$;

-- Push one batch of changelog rows of one folder, atomically and set-based.
-- Each row: {seq, path, kind, size, mtime_ns, sha256, target, deleted, base, moved_from, conflict_of}.
-- Returns per row: status 'accepted' (new head), 'same' (the head already has this content),
-- or 'conflict' (the head is a version the device had not seen: the head is returned).
-- Pushes of one folder are serialised by an advisory lock, which also makes the ids of a
-- folder's changes become visible in order (a pull cursor never skips a row), and makes row
-- locks on heads unnecessary: every writer of a folder's heads holds that lock.
CREATE FUNCTION shoal.push(p_device uuid, p_incarnation uuid, p_folder text, p_rows jsonb)
RETURNS TABLE (seq bigint, status text, version bigint, head jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_space text := shoal.enter(p_device);
    v_min bigint;
    v_max bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('shoal.folder:' || v_space || '/' || p_folder, 0));
    CREATE TEMP TABLE push_in ON COMMIT DROP AS
        SELECT (x->>'seq')::bigint AS seq, x->>'path' AS path, x->>'kind' AS kind,
               (x->>'size')::bigint AS size, (x->>'mtime_ns')::bigint AS mtime_ns,
               x->>'sha256' AS sha256, x->>'target' AS target, (x->>'deleted')::boolean AS deleted,
               (x->>'base')::bigint AS base, x->>'moved_from' AS moved_from,
               x->>'conflict_of' AS conflict_of, md5(x::text) AS payload_md5
          FROM jsonb_array_elements(p_rows) AS x;
    ANALYZE push_in;  -- a temp table has no statistics: without them the joins below go nested-loop
    -- Every lookup below is bounded by this batch (its seq range, its paths), never by the
    -- device's or the folder's history: a hash of all earlier rows per call made pushes O(history).
    SELECT min(i.seq), max(i.seq) INTO v_min, v_max FROM push_in i;
    IF EXISTS (SELECT 1 FROM push_in i
                WHERE i.seq IS NULL OR i.path IS NULL OR i.deleted IS NULL OR i.sha256 IS NULL
                   OR i.kind IS NULL OR i.kind NOT IN ('file', 'symlink') OR i.size IS NULL OR i.size < 0
                   OR i.mtime_ns IS NULL) THEN
        RAISE EXCEPTION 'malformed change row in push' USING ERRCODE = '22023';
    END IF;
    IF (SELECT count(DISTINCT i.seq) <> count(*) OR count(DISTINCT i.path) <> count(*) FROM push_in i) THEN
        RAISE EXCEPTION 'a push batch names a seq or a path twice' USING ERRCODE = '22023';
    END IF;
    -- Idempotency: a replay of the same (device, incarnation, seq) is a no-op; another payload is refused.
    IF EXISTS (SELECT 1 FROM push_in i JOIN shoal.changes c
                 ON c.device_id = p_device AND c.incarnation = p_incarnation AND c.seq = i.seq
                AND c.seq BETWEEN v_min AND v_max
                WHERE c.payload_md5 <> i.payload_md5 OR c.folder_id <> p_folder OR c.space <> v_space) THEN
        RAISE EXCEPTION 'a seq of device % was already pushed with another payload', p_device
            USING ERRCODE = '23505';
    END IF;
    IF EXISTS (SELECT 1 FROM push_in i
                WHERE NOT i.deleted AND i.kind = 'file'
                  AND NOT EXISTS (SELECT 1 FROM shoal.content_spaces ct
                                   WHERE ct.space = v_space AND ct.sha256 = i.sha256)) THEN
        RAISE EXCEPTION 'a pushed content is not on the hub' USING ERRCODE = '23503';
    END IF;
    RETURN QUERY
    WITH replay AS (
        SELECT i.seq, c.id FROM push_in i JOIN shoal.changes c
            ON c.device_id = p_device AND c.incarnation = p_incarnation AND c.seq = i.seq
                AND c.seq BETWEEN v_min AND v_max
    ), fresh AS (
        SELECT i.*, h.version AS h_version, h.device_id AS h_device, h.incarnation AS h_incarnation,
               h.kind AS h_kind, h.size AS h_size, h.mtime_ns AS h_mtime_ns, h.sha256 AS h_sha256,
               h.target AS h_target, h.deleted AS h_deleted
          FROM push_in i LEFT JOIN LATERAL (
                SELECT hh.* FROM shoal.heads hh  -- one index probe per pushed path (OFFSET 0: not flattened)
                 WHERE hh.space = v_space AND hh.folder_id = p_folder AND hh.path = i.path OFFSET 0) h ON true
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
                                  sha256, target, deleted, base_version, moved_from, conflict_of, payload_md5)
        SELECT v_space, p_folder, c.path, p_device, p_incarnation, c.seq, c.kind, c.size, c.mtime_ns, c.sha256,
               c.target, c.deleted, c.base, c.moved_from, c.conflict_of, c.payload_md5
          FROM classified c WHERE c.st = 'accepted' ORDER BY c.seq
        RETURNING shoal.changes.id, shoal.changes.seq, shoal.changes.path, shoal.changes.kind,
                  shoal.changes.size, shoal.changes.mtime_ns, shoal.changes.sha256,
                  shoal.changes.target, shoal.changes.deleted
    ), up AS (
        INSERT INTO shoal.heads(space, folder_id, path, version, device_id, incarnation, kind, size, mtime_ns,
                                sha256, target, deleted)
        SELECT v_space, p_folder, n.path, n.id, p_device, p_incarnation, n.kind, n.size, n.mtime_ns, n.sha256,
               n.target, n.deleted FROM ins n
        ON CONFLICT (space, folder_id, path) DO UPDATE SET
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
               'device_name', (SELECT d.name FROM shoal.devices d WHERE d.device_id = c.h_device),
               'kind', c.h_kind, 'size', c.h_size, 'mtime_ns', c.h_mtime_ns, 'sha256', c.h_sha256,
               'target', c.h_target, 'deleted', c.h_deleted)
      FROM classified c WHERE c.st = 'conflict'
    UNION ALL
    SELECT n.seq, 'accepted'::text, n.id, NULL::jsonb FROM ins n;
    DROP TABLE push_in;
    UPDATE shoal.devices SET last_push_at = now() WHERE device_id = p_device;
    PERFORM pg_notify('shoal_changes', '');
END $$;

-- Changes of a folder after a cursor, in id order, with the pushing device's name.
CREATE FUNCTION shoal.pull(p_device uuid, p_folder text, p_after bigint, p_limit integer)
RETURNS TABLE (id bigint, path text, device_id uuid, device_name text, kind text, size bigint,
               mtime_ns bigint, sha256 text, target text, deleted boolean, moved_from text,
               conflict_of text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY
        SELECT c.id, c.path, c.device_id, d.name, c.kind, c.size, c.mtime_ns, c.sha256, c.target,
               c.deleted, c.moved_from, c.conflict_of
          FROM shoal.changes c JOIN shoal.devices d ON d.device_id = c.device_id
         WHERE c.space = v_space AND c.folder_id = p_folder AND c.id > p_after
         ORDER BY c.id LIMIT p_limit;
END $$;

-- A device reports how far it has applied a folder (for `shoal devices`: how far behind it is).
CREATE FUNCTION shoal.ack_pull(p_device uuid, p_folder text, p_cursor bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    INSERT INTO shoal.device_folders(space, folder_id, device_id, cursor, last_pull_at)
    VALUES (v_space, p_folder, p_device, p_cursor, now())
    ON CONFLICT (space, folder_id, device_id) DO UPDATE SET cursor = excluded.cursor, last_pull_at = now();
    UPDATE shoal.devices SET last_pull_at = now() WHERE device_id = p_device;
END $$;

-- Current heads of a folder (convergence checks).
CREATE FUNCTION shoal.heads_of(p_device uuid, p_folder text)
RETURNS TABLE (path text, version bigint, kind text, size bigint, mtime_ns bigint, sha256 text,
               target text, deleted boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT h.path, h.version, h.kind, h.size, h.mtime_ns, h.sha256, h.target, h.deleted
                   FROM shoal.heads h WHERE h.space = v_space AND h.folder_id = p_folder ORDER BY h.path;
END $$;

-- Heads of given paths (retrying a failed apply without rescanning the whole folder).
CREATE FUNCTION shoal.heads_at(p_device uuid, p_folder text, p_paths text[])
RETURNS TABLE (path text, version bigint, device_id uuid, device_name text, kind text, size bigint,
               mtime_ns bigint, sha256 text, target text, deleted boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT h.path, h.version, h.device_id, d.name, h.kind, h.size, h.mtime_ns, h.sha256,
                        h.target, h.deleted
                   FROM shoal.heads h JOIN shoal.devices d ON d.device_id = h.device_id
                  WHERE h.space = v_space AND h.folder_id = p_folder AND h.path = ANY(p_paths);
END $$;

-- Which of these contents / blocks this device's space does not have (must upload).
CREATE FUNCTION shoal.missing_contents(p_device uuid, p_shas text[]) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    -- Probe the index with this batch's keys (= ANY): bounded by the batch, not by the hub's size.
    RETURN QUERY SELECT s FROM unnest(p_shas) AS s
                  EXCEPT
                  SELECT c.sha256 FROM shoal.content_spaces c WHERE c.space = v_space AND c.sha256 = ANY(p_shas);
END $$;

CREATE FUNCTION shoal.missing_blocks(p_device uuid, p_shas text[]) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT s FROM unnest(p_shas) AS s
                  EXCEPT
                  SELECT b.sha256 FROM shoal.block_spaces b WHERE b.space = v_space AND b.sha256 = ANY(p_shas);
END $$;

-- Store blocks; a block whose bytes do not hash to its key is refused. Uploading the bytes is
-- what gives the device's space the block (even when the hub already stored it for another).
CREATE FUNCTION shoal.put_blocks(p_device uuid, p_shas text[], p_data bytea[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    bad text;
    n integer;
BEGIN
    SELECT s INTO bad FROM unnest(p_shas, p_data) AS t(s, d) WHERE encode(sha256(d), 'hex') <> s LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'block % does not match its SHA-256', bad USING ERRCODE = '22023';
    END IF;
    INSERT INTO shoal.blocks(sha256, data) SELECT s, d FROM unnest(p_shas, p_data) AS t(s, d)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO shoal.block_spaces(space, sha256) SELECT v_space, s FROM unnest(p_shas) AS s
    ON CONFLICT DO NOTHING;
    RETURN n;
END $$;

-- Declare a content as a list of blocks; every block must already be in the device's space.
CREATE FUNCTION shoal.put_content(p_device uuid, p_sha text, p_size bigint, p_block_size integer,
                                  p_blocks text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    total bigint;
    have integer;
BEGIN
    SELECT count(*), coalesce(sum(length(b.data)), 0) INTO have, total
      FROM unnest(p_blocks) AS u(s)
      JOIN shoal.block_spaces bs ON bs.space = v_space AND bs.sha256 = u.s
      JOIN shoal.blocks b ON b.sha256 = u.s;
    IF have <> coalesce(array_length(p_blocks, 1), 0) OR total <> p_size THEN
        RAISE EXCEPTION 'content %: blocks missing or sizes wrong', p_sha USING ERRCODE = '23503';
    END IF;
    INSERT INTO shoal.contents(sha256, size, block_size, blocks) VALUES (p_sha, p_size, p_block_size, p_blocks)
    ON CONFLICT DO NOTHING;
    INSERT INTO shoal.content_spaces(space, sha256) VALUES (v_space, p_sha) ON CONFLICT DO NOTHING;
END $$;

-- Small files (one block, the block is the whole content) in one round trip per batch.
CREATE FUNCTION shoal.put_small_contents(p_device uuid, p_shas text[], p_data bytea[], p_block_size integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    bad text;
    n integer;
BEGIN
    SELECT s INTO bad FROM unnest(p_shas, p_data) AS t(s, d)
     WHERE encode(sha256(d), 'hex') <> s OR length(d) = 0 OR length(d) > p_block_size LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'small content % does not match its SHA-256 or size', bad USING ERRCODE = '22023';
    END IF;
    INSERT INTO shoal.blocks(sha256, data) SELECT s, d FROM unnest(p_shas, p_data) AS t(s, d)
    ON CONFLICT DO NOTHING;
    INSERT INTO shoal.contents(sha256, size, block_size, blocks)
    SELECT s, length(d), p_block_size, ARRAY[s] FROM unnest(p_shas, p_data) AS t(s, d)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO shoal.block_spaces(space, sha256) SELECT v_space, s FROM unnest(p_shas) AS s ON CONFLICT DO NOTHING;
    INSERT INTO shoal.content_spaces(space, sha256) SELECT v_space, s FROM unnest(p_shas) AS s ON CONFLICT DO NOTHING;
    RETURN n;
END $$;

CREATE FUNCTION shoal.get_contents(p_device uuid, p_shas text[])
RETURNS TABLE (sha256 text, size bigint, block_size integer, blocks text[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT c.sha256, c.size, c.block_size, c.blocks
                   FROM shoal.contents c JOIN shoal.content_spaces cs ON cs.space = v_space AND cs.sha256 = c.sha256
                  WHERE c.sha256 = ANY(p_shas) AND cs.sha256 = ANY(p_shas);
END $$;

CREATE FUNCTION shoal.get_blocks(p_device uuid, p_shas text[]) RETURNS TABLE (sha256 text, data bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT b.sha256, b.data
                   FROM shoal.blocks b JOIN shoal.block_spaces bs ON bs.space = v_space AND bs.sha256 = b.sha256
                  WHERE b.sha256 = ANY(p_shas) AND bs.sha256 = ANY(p_shas);
END $$;

CREATE FUNCTION shoal.log_sync(p_device uuid, p_folder text, p_result text, p_pushed integer,
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
CREATE FUNCTION shoal.device_overview(p_device uuid)
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

CREATE FUNCTION shoal.duplicate_contents(p_device uuid)
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

REVOKE ALL ON ALL TABLES IN SCHEMA shoal FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA shoal FROM PUBLIC;
