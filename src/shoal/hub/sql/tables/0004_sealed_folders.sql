-- End-to-end encrypted folders (SPEC "Encryption"). The hub holds, for such a folder:
--  * its key, wrapped under the passphrase by a device (JSON text: KDF parameters, salt, sealed key);
--  * changelog rows whose visible columns are opaque (a sealed path, a keyed content id, the
--    sealed size, no mtime, no target) and whose values travel sealed in `sealed`;
--  * sealed blocks, named by their own SHA-256 like any block (so the hub still checks them),
--    which are up to 52 bytes longer than the block they seal.
ALTER TABLE shoal.folders ADD COLUMN sealed_key text;
ALTER TABLE shoal.folders ADD CONSTRAINT folders_sealed_key_bounds
    CHECK (octet_length(coalesce(sealed_key, '')) <= 1000) NOT VALID;
ALTER TABLE shoal.changes ADD COLUMN sealed bytea;
ALTER TABLE shoal.changes ADD CONSTRAINT changes_sealed_bounds
    CHECK (octet_length(coalesce(sealed, ''::bytea)) <= 20000) NOT VALID;
ALTER TABLE shoal.blocks DROP CONSTRAINT blocks_max_size;
ALTER TABLE shoal.blocks ADD CONSTRAINT blocks_max_size CHECK (octet_length(data) <= 16777216 + 64) NOT VALID;
