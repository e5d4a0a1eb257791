"""What a folder's filesystem does, found by trying it once in the folder's own `.shoal/tmp`:
whether it folds case (exFAT, FAT, Android shared storage, macOS) and whether it keeps the exec
bit. The answer is kept in the store per folder root, so a folder is probed once, not per scan."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from shoal.core.paths import TMP_DIR
from shoal.localstore import Store
from shoal.model import FsTraits


def probe(tmp_dir: Path) -> FsTraits:
    """Try the filesystem of `tmp_dir` (which must exist). Raises OSError if it cannot be written."""
    name = os.path.join(tmp_dir, f"probe-{uuid.uuid4().hex[:8]}-aB")
    fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        folds_case = os.path.exists(name[:-2] + "Ab")
        modes = True
        for mode in (0o700, 0o600):
            try:
                os.chmod(name, mode)
                modes = modes and stat.S_IMODE(os.stat(name).st_mode) == mode
            except OSError:  # a filesystem without modes may refuse chmod outright
                modes = False
        return FsTraits(folds_case=folds_case, modes=modes)
    finally:
        os.unlink(name)


def folder_traits(store: Store, folder_id: str, root: Path) -> FsTraits:
    """The folder's traits: from the store when probed at this root before, else probed now (and
    kept). A folder that cannot be probed is taken as the strictest case: folds case, no modes."""
    key = str(root)
    traits = store.fs_traits(folder_id, key)
    if traits is None:
        try:
            traits = probe(root / TMP_DIR)
        except OSError:
            return FsTraits(folds_case=True, modes=False)
        store.set_fs_traits(folder_id, key, traits)
    return traits
