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

REVOKE ALL ON ALL TABLES IN SCHEMA shoal FROM PUBLIC;
