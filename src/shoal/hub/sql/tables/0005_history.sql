-- History (issue 12): the versions of one path are read through an index on the path's hash;
-- retention and garbage collection need to know when contents and blocks arrived (those of a
-- push still in flight are never collected) and how far a folder's changelog was collected
-- (a device whose cursor is before that resyncs from the heads).
ALTER TABLE shoal.changes ADD COLUMN path_hash bytea;
UPDATE shoal.changes SET path_hash = sha256(convert_to(path, 'UTF8'));
ALTER TABLE shoal.changes ALTER COLUMN path_hash SET NOT NULL;
CREATE INDEX changes_path_hash ON shoal.changes (space, folder_id, path_hash, id);
CREATE INDEX changes_sha256 ON shoal.changes (space, sha256);
ALTER TABLE shoal.contents ADD COLUMN added_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE shoal.block_spaces ADD COLUMN added_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE shoal.folders ADD COLUMN gc_horizon bigint NOT NULL DEFAULT 0;
