-- Content-addressed storage. A block is stored once for the whole hub (its bytes are checked
-- against its SHA-256, so nobody can spoil it), but a space gets it only by uploading its bytes
-- (proof of possession). A content (a file as a list of blocks) is declared per space: a
-- declaration of one space never affects another. Every hash is 64 lowercase hex digits.

-- Which of these contents / blocks this device's space does not have (must upload).
CREATE OR REPLACE FUNCTION shoal.missing_contents(p_device uuid, p_shas text[]) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    -- Probe the index with this batch's keys (= ANY): bounded by the batch, not by the hub's size.
    RETURN QUERY SELECT s FROM unnest(p_shas) AS s
                  EXCEPT
                  SELECT c.sha256 FROM shoal.contents c WHERE c.space = v_space AND c.sha256 = ANY(p_shas);
END $$;

CREATE OR REPLACE FUNCTION shoal.missing_blocks(p_device uuid, p_shas text[]) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT s FROM unnest(p_shas) AS s
                  EXCEPT
                  SELECT b.sha256 FROM shoal.block_spaces b WHERE b.space = v_space AND b.sha256 = ANY(p_shas);
END $$;

-- Refuses (22023) a hash list with an entry that is not 64 lowercase hex digits.
CREATE OR REPLACE FUNCTION shoal.check_hashes(p_shas text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = shoal, pg_temp AS $$
DECLARE
    bad text;
BEGIN
    -- 64 bytes of [0-9a-f]: the regex '^[0-9a-f]{64}$' says the same, ~20x slower.
    SELECT s INTO bad FROM unnest(p_shas) AS s WHERE s IS NULL OR octet_length(s) <> 64 OR s ~ '[^0-9a-f]' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'not a SHA-256 (64 lowercase hex digits): %', left(coalesce(bad, 'NULL'), 80)
            USING ERRCODE = '22023';
    END IF;
END $$;

-- Count what a space gained (changes, bytes of blocks) against its quota; a space over either
-- bound is refused as a whole (SQLSTATE SQ001: not a row's fault, not an outage).
CREATE OR REPLACE FUNCTION shoal.add_usage(p_space text, p_changes bigint, p_bytes bigint) RETURNS void
LANGUAGE plpgsql SET search_path = shoal, pg_temp AS $$
DECLARE
    u shoal.space_usage;
BEGIN
    INSERT INTO shoal.space_usage AS s (space, changes, bytes) VALUES (p_space, p_changes, p_bytes)
    ON CONFLICT (space) DO UPDATE SET changes = s.changes + excluded.changes, bytes = s.bytes + excluded.bytes
    RETURNING s.* INTO u;
    IF u.max_changes IS NOT NULL AND u.changes > u.max_changes THEN
        RAISE EXCEPTION 'space % is over its quota of % changes: ask the hub owner', p_space, u.max_changes
            USING ERRCODE = 'SQ001';
    END IF;
    IF u.max_bytes IS NOT NULL AND u.bytes > u.max_bytes THEN
        RAISE EXCEPTION 'space % is over its quota of % bytes: ask the hub owner', p_space, u.max_bytes
            USING ERRCODE = 'SQ001';
    END IF;
END $$;

-- Blocks enter the space (and the hub, if new) after their bytes are checked; the space's byte
-- usage grows by what it gained, and its quota is checked. Returns how many blocks the
-- calling space gained: never whether another space already had them.
CREATE OR REPLACE FUNCTION shoal.store_blocks(p_space text, p_shas text[], p_data bytea[]) RETURNS integer
LANGUAGE plpgsql SET search_path = shoal, pg_temp AS $$
DECLARE
    bad text;
    n integer;
    gained bigint;
BEGIN
    PERFORM shoal.check_hashes(p_shas);
    IF coalesce(array_length(p_shas, 1), 0) <> coalesce(array_length(p_data, 1), 0) THEN
        RAISE EXCEPTION 'as many blocks as hashes, please' USING ERRCODE = '22023';
    END IF;
    SELECT s INTO bad FROM unnest(p_shas, p_data) AS t(s, d)
     WHERE d IS NULL OR octet_length(d) > 16777216 + 64 OR encode(sha256(d), 'hex') <> s LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'block % does not match its SHA-256 or is over 16 MiB (+ 64 bytes sealed)', bad
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO shoal.blocks(sha256, data) SELECT DISTINCT ON (s) s, d FROM unnest(p_shas, p_data) AS t(s, d)
    ON CONFLICT DO NOTHING;
    -- What the space gained: its new blocks' sizes, joined by hash (a lookup into the arrays per
    -- block made a batch of n blocks cost n^2).
    WITH ins AS (
        INSERT INTO shoal.block_spaces(space, sha256) SELECT DISTINCT p_space, s FROM unnest(p_shas) AS s
        ON CONFLICT DO NOTHING RETURNING sha256
    ), sizes AS (
        SELECT DISTINCT ON (u.s) u.s, octet_length(u.d) AS len FROM unnest(p_shas, p_data) AS u(s, d)
    )
    SELECT count(*), coalesce(sum(z.len), 0) INTO n, gained FROM ins JOIN sizes z ON z.s = ins.sha256;
    PERFORM shoal.add_usage(p_space, 0, gained);
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION shoal.put_blocks(p_device uuid, p_shas text[], p_data bytea[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
BEGIN
    RETURN shoal.store_blocks(shoal.enter(p_device), p_shas, p_data);
END $$;

-- Declare a content of the caller's space as a list of blocks; every block must already be in
-- that space, and the sizes must add up. One-block and empty contents are checked against their
-- hash (cheap); a longer one can only spoil its own space, and every device checks the whole
-- file's SHA-256 after downloading it.
CREATE OR REPLACE FUNCTION shoal.put_content(p_device uuid, p_sha text, p_size bigint, p_block_size integer,
                                             p_blocks text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    n integer := coalesce(array_length(p_blocks, 1), 0);
    total bigint;
    have integer;
BEGIN
    PERFORM shoal.check_hashes(ARRAY[p_sha] || p_blocks);
    IF p_size IS NULL OR p_size < 0 OR p_block_size IS NULL OR p_block_size NOT BETWEEN 0 AND 16777216
       OR n > 1000000 THEN
        RAISE EXCEPTION 'content %: size or block size out of bounds', p_sha USING ERRCODE = '22023';
    END IF;
    SELECT count(*), coalesce(sum(octet_length(b.data)), 0) INTO have, total
      FROM unnest(p_blocks) AS u(s)
      JOIN shoal.block_spaces bs ON bs.space = v_space AND bs.sha256 = u.s
      JOIN shoal.blocks b ON b.sha256 = u.s;
    IF have <> n OR total <> p_size THEN
        RAISE EXCEPTION 'content %: blocks missing or sizes wrong', p_sha USING ERRCODE = '23503';
    END IF;
    IF (n = 0 AND p_sha <> encode(sha256(''::bytea), 'hex')) OR (n = 1 AND p_sha <> p_blocks[1]) THEN
        RAISE EXCEPTION 'content %: its blocks do not hash to it', p_sha USING ERRCODE = '22023';
    END IF;
    INSERT INTO shoal.contents(space, sha256, size, block_size, blocks)
    VALUES (v_space, p_sha, p_size, p_block_size, p_blocks)
    ON CONFLICT DO NOTHING;
END $$;

-- Small files (one block, the block is the whole content) in one round trip per batch.
-- Returns how many contents the calling space gained.
CREATE OR REPLACE FUNCTION shoal.put_small_contents(p_device uuid, p_shas text[], p_data bytea[], p_block_size integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    bad text;
    n integer;
BEGIN
    SELECT s INTO bad FROM unnest(p_shas, p_data) AS t(s, d)
     WHERE d IS NULL OR length(d) = 0 OR length(d) > p_block_size LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'small content % is empty or over its block size', bad USING ERRCODE = '22023';
    END IF;
    PERFORM shoal.store_blocks(v_space, p_shas, p_data);  -- checks every hash against its bytes
    INSERT INTO shoal.contents(space, sha256, size, block_size, blocks)
    SELECT DISTINCT ON (s) v_space, s, length(d), p_block_size, ARRAY[s] FROM unnest(p_shas, p_data) AS t(s, d)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION shoal.get_contents(p_device uuid, p_shas text[])
RETURNS TABLE (sha256 text, size bigint, block_size integer, blocks text[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT c.sha256, c.size, c.block_size, c.blocks
                   FROM shoal.contents c WHERE c.space = v_space AND c.sha256 = ANY(p_shas);
END $$;

CREATE OR REPLACE FUNCTION shoal.get_blocks(p_device uuid, p_shas text[]) RETURNS TABLE (sha256 text, data bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT b.sha256, b.data
                   FROM shoal.blocks b JOIN shoal.block_spaces bs ON bs.space = v_space AND bs.sha256 = b.sha256
                  WHERE b.sha256 = ANY(p_shas) AND bs.sha256 = ANY(p_shas);
END $$;

-- Contents of an encrypted folder. The id is a keyed hash (HMAC of the file's SHA-256) the hub
-- cannot check, so a declaration can only spoil its own space (every device checks the
-- plaintext's SHA-256 after downloading); its size is what its sealed blocks take.
CREATE OR REPLACE FUNCTION shoal.put_sealed_content(p_device uuid, p_id text, p_block_size integer, p_blocks text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    n integer := coalesce(array_length(p_blocks, 1), 0);
    total bigint;
    have integer;
BEGIN
    PERFORM shoal.check_hashes(ARRAY[p_id] || p_blocks);
    IF p_block_size IS NULL OR p_block_size NOT BETWEEN 0 AND 16777216 OR n > 1000000 THEN
        RAISE EXCEPTION 'content %: block size or block count out of bounds', p_id USING ERRCODE = '22023';
    END IF;
    SELECT count(*), coalesce(sum(octet_length(b.data)), 0) INTO have, total
      FROM unnest(p_blocks) AS u(s)
      JOIN shoal.block_spaces bs ON bs.space = v_space AND bs.sha256 = u.s
      JOIN shoal.blocks b ON b.sha256 = u.s;
    IF have <> n THEN
        RAISE EXCEPTION 'content %: blocks missing', p_id USING ERRCODE = '23503';
    END IF;
    INSERT INTO shoal.contents(space, sha256, size, block_size, blocks)
    VALUES (v_space, p_id, total, p_block_size, p_blocks)
    ON CONFLICT DO NOTHING;
END $$;

-- Small files of an encrypted folder (one sealed block each) in one round trip per batch.
-- Returns how many contents the calling space gained.
CREATE OR REPLACE FUNCTION shoal.put_sealed_small(p_device uuid, p_ids text[], p_names text[], p_data bytea[],
                                                  p_block_size integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    bad text;
    n integer;
BEGIN
    PERFORM shoal.check_hashes(p_ids);
    IF coalesce(array_length(p_ids, 1), 0) <> coalesce(array_length(p_names, 1), 0) THEN
        RAISE EXCEPTION 'as many content ids as blocks, please' USING ERRCODE = '22023';
    END IF;
    SELECT s INTO bad FROM unnest(p_names, p_data) AS t(s, d)
     WHERE d IS NULL OR length(d) = 0 OR length(d) > p_block_size + 64 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'small sealed content % is empty or over its block size', bad USING ERRCODE = '22023';
    END IF;
    PERFORM shoal.store_blocks(v_space, p_names, p_data);  -- checks every name against its bytes
    INSERT INTO shoal.contents(space, sha256, size, block_size, blocks)
    SELECT DISTINCT ON (i) v_space, i, length(d), p_block_size, ARRAY[s]
      FROM unnest(p_ids, p_names, p_data) AS t(i, s, d)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
