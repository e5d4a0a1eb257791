-- What each folder's filesystem does (scan.fsprobe), probed once per root: when the folder's
-- path changes (or the card is formatted differently), fs_root no longer matches and it is probed again.
ALTER TABLE folders ADD COLUMN fs_root TEXT;
ALTER TABLE folders ADD COLUMN fs_folds_case INTEGER;
ALTER TABLE folders ADD COLUMN fs_modes INTEGER;
