-- The key of an encrypted folder, wrapped under its passphrase by a device (the hub cannot open
-- it), and whether the folder has any history on the hub (a folder with plaintext history can
-- never be encrypted: its rows would stay readable).
CREATE OR REPLACE FUNCTION shoal.folder_key(p_device uuid, p_folder text)
RETURNS TABLE (sealed_key text, has_history boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
BEGIN
    RETURN QUERY SELECT (SELECT f.sealed_key FROM shoal.folders f WHERE f.space = v_space AND f.folder_id = p_folder),
                        EXISTS (SELECT 1 FROM shoal.changes c WHERE c.space = v_space AND c.folder_id = p_folder);
END $$;

-- Set a folder's wrapped key (p_old NULL: the first key, only for a folder without history) or
-- re-wrap it (a passphrase change: p_old must be the current one). Returns false when another
-- device set or changed it first (read it again); refuses (SQ002) a folder with plaintext history.
CREATE OR REPLACE FUNCTION shoal.set_folder_key(p_device uuid, p_folder text, p_key text, p_old text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$
DECLARE
    v_space text := shoal.enter(p_device);
    v_current text;
BEGIN
    IF p_folder IS NULL OR octet_length(p_folder) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'a folder id is 1 to 255 bytes' USING ERRCODE = '22023';
    END IF;
    IF p_key IS NULL OR octet_length(p_key) NOT BETWEEN 2 AND 1000 OR left(p_key, 1) <> '{' THEN
        RAISE EXCEPTION 'a wrapped folder key is a JSON text of at most 1000 bytes' USING ERRCODE = '22023';
    END IF;
    INSERT INTO shoal.folders(space, folder_id) VALUES (v_space, p_folder) ON CONFLICT DO NOTHING;
    SELECT f.sealed_key INTO v_current FROM shoal.folders f
     WHERE f.space = v_space AND f.folder_id = p_folder FOR UPDATE;
    IF v_current IS DISTINCT FROM p_old THEN
        RETURN false;
    END IF;
    IF p_old IS NULL AND EXISTS (SELECT 1 FROM shoal.changes c WHERE c.space = v_space AND c.folder_id = p_folder) THEN
        RAISE EXCEPTION 'folder % already has unencrypted history on the hub: encryption cannot be turned on for it '
                        '(sync the files into a folder with a new id and encryption set)', p_folder
            USING ERRCODE = 'SQ002';
    END IF;
    UPDATE shoal.folders f SET sealed_key = p_key WHERE f.space = v_space AND f.folder_id = p_folder;
    RETURN true;
END $$;
