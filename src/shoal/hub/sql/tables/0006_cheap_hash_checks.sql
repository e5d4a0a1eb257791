-- Performance (issue 14): a hash column's check says "64 bytes of [0-9a-f]" in a form PostgreSQL
-- evaluates ~20x faster than the regex '^[0-9a-f]{64}$' (its bounded repetition cost ~6 us a row,
-- paid again by every table a push writes). Same rule; NOT VALID as before (no table scan).
ALTER TABLE shoal.changes DROP CONSTRAINT changes_sha256_hex;
ALTER TABLE shoal.changes ADD CONSTRAINT changes_sha256_hex
    CHECK (octet_length(sha256) = 64 AND sha256 !~ '[^0-9a-f]') NOT VALID;
ALTER TABLE shoal.heads DROP CONSTRAINT heads_sha256_hex;
ALTER TABLE shoal.heads ADD CONSTRAINT heads_sha256_hex
    CHECK (octet_length(sha256) = 64 AND sha256 !~ '[^0-9a-f]') NOT VALID;
ALTER TABLE shoal.contents DROP CONSTRAINT contents_sha256_hex;
ALTER TABLE shoal.contents ADD CONSTRAINT contents_sha256_hex
    CHECK (octet_length(sha256) = 64 AND sha256 !~ '[^0-9a-f]') NOT VALID;
ALTER TABLE shoal.blocks DROP CONSTRAINT blocks_sha256_hex;
ALTER TABLE shoal.blocks ADD CONSTRAINT blocks_sha256_hex
    CHECK (octet_length(sha256) = 64 AND sha256 !~ '[^0-9a-f]') NOT VALID;
ALTER TABLE shoal.block_spaces DROP CONSTRAINT block_spaces_sha256_hex;
ALTER TABLE shoal.block_spaces ADD CONSTRAINT block_spaces_sha256_hex
    CHECK (octet_length(sha256) = 64 AND sha256 !~ '[^0-9a-f]') NOT VALID;
-- A content's block list: every element 64 bytes of [0-9a-f] (the same rule as before: its
-- joined text has nothing but hex digits and commas, and with every digit turned into 'x' it is
-- exactly "x{64},x{64},..."; the regex took ~20 us a content, this ~10 us).
ALTER TABLE shoal.contents DROP CONSTRAINT contents_blocks_hex;
ALTER TABLE shoal.contents ADD CONSTRAINT contents_blocks_hex
    CHECK (array_to_string(blocks, ',') !~ '[^0-9a-f,]'
           AND translate(array_to_string(blocks, ','), '0123456789abcdef', 'xxxxxxxxxxxxxxxx')
               = rtrim(repeat(repeat('x', 64) || ',', cardinality(blocks)), ',')) NOT VALID;
