-- Which of these contents / blocks this device's space does not have (must upload).
CREATE OR REPLACE FUNCTION shoal.missing_contents(p_device uuid, p_shas text[]) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    -- Probe the index with this batch's keys (= ANY): bounded by the batch, not by the hub's size.
    RETURN QUERY SELECT s FROM unnest(p_shas) AS s
                  EXCEPT
                  SELECT c.sha256 FROM shoal.content_spaces c WHERE c.space = v_space AND c.sha256 = ANY(p_shas);
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

-- Store blocks; a block whose bytes do not hash to its key is refused. Uploading the bytes is
-- what gives the device's space the block (even when the hub already stored it for another).
CREATE OR REPLACE FUNCTION shoal.put_blocks(p_device uuid, p_shas text[], p_data bytea[]) RETURNS integer
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
CREATE OR REPLACE FUNCTION shoal.put_content(p_device uuid, p_sha text, p_size bigint, p_block_size integer,
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
CREATE OR REPLACE FUNCTION shoal.put_small_contents(p_device uuid, p_shas text[], p_data bytea[], p_block_size integer)
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

CREATE OR REPLACE FUNCTION shoal.get_contents(p_device uuid, p_shas text[])
RETURNS TABLE (sha256 text, size bigint, block_size integer, blocks text[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT c.sha256, c.size, c.block_size, c.blocks
                   FROM shoal.contents c JOIN shoal.content_spaces cs ON cs.space = v_space AND cs.sha256 = c.sha256
                  WHERE c.sha256 = ANY(p_shas) AND cs.sha256 = ANY(p_shas);
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
