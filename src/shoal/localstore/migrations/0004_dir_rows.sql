-- Directories are index rows of kind 'dir' (synced by existence): the scanner merges them in a
-- pass of their own, which reads them through this index instead of the whole folder.
CREATE INDEX files_dirs ON files(folder_id, path) WHERE kind = 'dir';
