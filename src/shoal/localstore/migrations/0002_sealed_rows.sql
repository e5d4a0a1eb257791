-- The changelog rows of encrypted folders this device has read, by their authenticated key:
-- the hub serving one of them again under another id is a replay (an old version brought back).
CREATE TABLE sealed_rows (
    folder_id   TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (folder_id, device_id, incarnation, seq)
) WITHOUT ROWID;

-- The newest version of each path of an encrypted folder this device has read from the changelog:
-- a head older than it (on a retry, or answering a push) is the hub rolling the path back.
CREATE TABLE sealed_paths (
    folder_id TEXT NOT NULL,
    path      TEXT NOT NULL,
    version   INTEGER NOT NULL,
    PRIMARY KEY (folder_id, path)
) WITHOUT ROWID;
