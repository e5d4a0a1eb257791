-- The hub's trust boundary (a device login is a hostile SQL session until proven otherwise):
--  * contents are kept per space, so nobody can spoil what another space declares;
--  * every hash column holds exactly 64 lowercase hex digits, and text a device sends is bounded;
--  * heads are keyed by a hash of the path, so a long path cannot overflow the btree;
--  * pushes of a folder are serialised by a row lock on shoal.folders (the advisory-lock
--    functions are revoked from device logins: their keys are guessable and hub-wide);
--  * every table holding a space's data has the space in its primary key and unique
--    constraints (so the hub can later be distributed by space on Citus);
--  * per-space quotas and usage counters.
-- Constraints are added NOT VALID: an old hub with a bad row still migrates, new rows are checked,
-- and devices validate every value they receive anyway.

-- Contents per space (was: one hub-wide table where the first declaration won).
CREATE TABLE shoal.space_contents (
    space      text NOT NULL,
    sha256     text NOT NULL,
    size       bigint NOT NULL,
    block_size integer NOT NULL,
    blocks     text[] NOT NULL,
    PRIMARY KEY (space, sha256)
);
INSERT INTO shoal.space_contents(space, sha256, size, block_size, blocks)
SELECT cs.space, c.sha256, c.size, c.block_size, c.blocks
  FROM shoal.content_spaces cs JOIN shoal.contents c ON c.sha256 = cs.sha256;
DROP TABLE shoal.content_spaces;
DROP TABLE shoal.contents;
ALTER TABLE shoal.space_contents RENAME TO contents;

-- Hashes: 64 lowercase hex digits, everywhere.
ALTER TABLE shoal.contents ADD CONSTRAINT contents_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$') NOT VALID;
ALTER TABLE shoal.contents ADD CONSTRAINT contents_blocks_hex
    CHECK (array_to_string(blocks, ',') ~ '^([0-9a-f]{64}(,[0-9a-f]{64})*)?$') NOT VALID;
ALTER TABLE shoal.blocks ADD CONSTRAINT blocks_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$') NOT VALID;
ALTER TABLE shoal.blocks ADD CONSTRAINT blocks_max_size CHECK (octet_length(data) <= 16777216) NOT VALID;
ALTER TABLE shoal.block_spaces ADD CONSTRAINT block_spaces_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$') NOT VALID;
ALTER TABLE shoal.changes ADD CONSTRAINT changes_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$') NOT VALID;
ALTER TABLE shoal.heads ADD CONSTRAINT heads_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$') NOT VALID;

-- Bounded text: a path as long as Linux allows (4096 bytes), a device name of 64 printable characters.
ALTER TABLE shoal.changes ADD CONSTRAINT changes_text_bounds CHECK (
    octet_length(path) <= 4096 AND octet_length(coalesce(target, '')) <= 4096
    AND octet_length(coalesce(moved_from, '')) <= 4096 AND octet_length(coalesce(conflict_of, '')) <= 4096
    AND octet_length(folder_id) <= 255) NOT VALID;
ALTER TABLE shoal.devices ADD CONSTRAINT devices_name_bounds
    CHECK (char_length(name) BETWEEN 1 AND 64 AND name !~ '[[:cntrl:]]') NOT VALID;
ALTER TABLE shoal.devices ADD CONSTRAINT devices_error_bounds CHECK (octet_length(coalesce(last_error, '')) <= 2000) NOT VALID;
ALTER TABLE shoal.sync_log ADD CONSTRAINT sync_log_error_bounds CHECK (octet_length(coalesce(error, '')) <= 2000) NOT VALID;

-- Heads keyed by the SHA-256 of the path: any path up to the bound above fits the index.
ALTER TABLE shoal.heads ADD COLUMN path_hash bytea;
UPDATE shoal.heads SET path_hash = sha256(convert_to(path, 'UTF8'));
ALTER TABLE shoal.heads ALTER COLUMN path_hash SET NOT NULL;
ALTER TABLE shoal.heads DROP CONSTRAINT heads_pkey;
ALTER TABLE shoal.heads ADD PRIMARY KEY (space, folder_id, path_hash);

-- The space in every primary key and unique constraint of a space's table.
ALTER TABLE shoal.changes DROP CONSTRAINT changes_pkey;
ALTER TABLE shoal.changes ADD PRIMARY KEY (space, id);
ALTER TABLE shoal.changes DROP CONSTRAINT changes_device_id_incarnation_seq_key;
ALTER TABLE shoal.changes ADD CONSTRAINT changes_device_seq_key UNIQUE (space, device_id, incarnation, seq);
ALTER TABLE shoal.conflicts DROP CONSTRAINT conflicts_pkey;
ALTER TABLE shoal.conflicts ADD PRIMARY KEY (space, id);
ALTER TABLE shoal.sync_log DROP CONSTRAINT sync_log_pkey;
ALTER TABLE shoal.sync_log ADD PRIMARY KEY (space, id);
ALTER TABLE shoal.device_folders DROP CONSTRAINT device_folders_device_id_fkey;
ALTER TABLE shoal.devices DROP CONSTRAINT devices_pkey;
ALTER TABLE shoal.devices ADD PRIMARY KEY (space, device_id);
CREATE INDEX devices_device_id ON shoal.devices (device_id);  -- a device id is unique: the API keeps it so
ALTER TABLE shoal.device_folders ADD CONSTRAINT device_folders_device_fkey
    FOREIGN KEY (space, device_id) REFERENCES shoal.devices (space, device_id);
ALTER TABLE shoal.device_roles DROP CONSTRAINT device_roles_pkey;
ALTER TABLE shoal.device_roles DROP CONSTRAINT device_roles_device_id_key;
ALTER TABLE shoal.device_roles ADD PRIMARY KEY (space, role_name);
ALTER TABLE shoal.device_roles ADD CONSTRAINT device_roles_device_key UNIQUE (space, device_id);
CREATE INDEX device_roles_role_name ON shoal.device_roles (role_name);  -- a role name is unique server-wide
-- The human name of a device login (its role name is opaque); NULL for logins made before.
ALTER TABLE shoal.device_roles ADD COLUMN name text;
CREATE INDEX device_roles_name ON shoal.device_roles (name);

-- One row per (space, folder): a push locks it for the transaction.
CREATE TABLE shoal.folders (
    space     text NOT NULL,
    folder_id text NOT NULL,
    PRIMARY KEY (space, folder_id)
);
INSERT INTO shoal.folders(space, folder_id) SELECT DISTINCT space, folder_id FROM shoal.heads;

-- Quotas (set by the hub owner; NULL: unlimited) and what each space uses.
CREATE TABLE shoal.space_usage (
    space        text PRIMARY KEY,
    changes      bigint NOT NULL DEFAULT 0,
    bytes        bigint NOT NULL DEFAULT 0,
    max_changes  bigint,
    max_bytes    bigint
);
INSERT INTO shoal.space_usage(space, changes)
SELECT space, count(*) FROM shoal.changes GROUP BY space;
INSERT INTO shoal.space_usage(space, bytes)
SELECT bs.space, sum(octet_length(b.data)) FROM shoal.block_spaces bs JOIN shoal.blocks b USING (sha256)
 GROUP BY bs.space
ON CONFLICT (space) DO UPDATE SET bytes = excluded.bytes;

-- A secret that names each space's notification channel: other spaces cannot listen to it or send on it.
INSERT INTO shoal.hub_meta(key, value)
VALUES ('channel_secret', encode(sha256(convert_to(gen_random_uuid()::text || clock_timestamp()::text
                                                   || gen_random_uuid()::text, 'UTF8')), 'hex'));

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['contents', 'folders', 'space_usage'] LOOP
        EXECUTE format('ALTER TABLE shoal.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE shoal.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY same_space ON shoal.%I USING (space = current_setting(''shoal.space'', true))'
                       ' WITH CHECK (space = current_setting(''shoal.space'', true))', t);
    END LOOP;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA shoal FROM PUBLIC;
