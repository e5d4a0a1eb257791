-- The device's own index, outbox and bookkeeping.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE folders (
    id            TEXT PRIMARY KEY,
    path          TEXT NOT NULL,
    marker_seen   INTEGER NOT NULL DEFAULT 0,   -- the marker was created/seen once: its absence now means "missing"
    first_scan_at INTEGER,                      -- epoch s of the first completed scan (NULL: never scanned)
    paused        TEXT,                         -- reason, NULL when syncing
    pull_cursor   INTEGER NOT NULL DEFAULT 0,   -- last hub change id seen for this folder
    last_sync_at  INTEGER                       -- epoch s of the last successful sync cycle
);

-- The index: one row per path ever seen; deleted=1 rows are tombstones that remember the base version.
CREATE TABLE files (
    folder_id TEXT NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    path      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    inode     INTEGER NOT NULL,
    sha256    TEXT NOT NULL,
    target    TEXT,
    deleted   INTEGER NOT NULL DEFAULT 0,
    version   INTEGER,                          -- hub version this state is synced from / based on
    PRIMARY KEY (folder_id, path)
) WITHOUT ROWID;
CREATE INDEX files_sha256 ON files(sha256) WHERE deleted = 0;

-- Changelog rows waiting to be pushed (per-device seq; the hub keys them by device, incarnation, seq).
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    folder_id   TEXT NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    target      TEXT,
    deleted     INTEGER NOT NULL DEFAULT 0,
    moved_from  TEXT,
    conflict_of TEXT,
    created_at  INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',  -- pending | pushed | superseded | conflict | local
    version     INTEGER                            -- hub version once pushed
);
CREATE INDEX outbox_pending ON outbox(folder_id, seq) WHERE state = 'pending';

CREATE TABLE sync_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    folder_id   TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    status      TEXT NOT NULL DEFAULT 'running',   -- running | ok | failed | interrupted
    phase       TEXT,
    files_done  INTEGER NOT NULL DEFAULT 0,
    bytes_done  INTEGER NOT NULL DEFAULT 0,
    pushed      INTEGER NOT NULL DEFAULT 0,
    pulled      INTEGER NOT NULL DEFAULT 0,
    last_path   TEXT,
    error       TEXT
);

-- Per-path problems: unreadable files, refused remote paths, failed writes. Retried on their own schedule.
CREATE TABLE errors (
    folder_id  TEXT NOT NULL,
    path       TEXT NOT NULL,
    kind       TEXT NOT NULL,          -- read | refused | write | block
    message    TEXT NOT NULL,
    retries    INTEGER NOT NULL DEFAULT 0,
    first_at   INTEGER NOT NULL,
    next_retry INTEGER NOT NULL,
    PRIMARY KEY (folder_id, path, kind)
) WITHOUT ROWID;

CREATE TABLE conflicts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    folder_id     TEXT NOT NULL,
    path          TEXT NOT NULL,
    conflict_path TEXT,               -- NULL under newest-wins (the loser went to a trash)
    winner_device TEXT,
    loser_device  TEXT,
    detected_at   INTEGER NOT NULL,
    hub_version   INTEGER,
    UNIQUE (folder_id, path, conflict_path, hub_version)
);
