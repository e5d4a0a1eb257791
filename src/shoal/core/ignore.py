"""Which folder-relative paths are not synced: a folder's gitignore patterns plus shoal's own.

Owns SPEC "Sync semantics" / Ignored: the folder's `ignore` patterns (gitignore syntax, matched
with pathspec's gitignore-compatible spec) and the folder's own `.shoal/` directory, which also
holds the partial downloads (`.shoal/tmp/`). Files still being written are the debouncer's job
(`core.debounce`), not this module's.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoal.core.paths import SHOAL_DIR

_DIR_CACHE_LIMIT = 10_000


class IgnoreRules:
    """Compiled ignore patterns of one folder.

    Paths are folder-relative, `/`-separated (as `paths.normalize_relpath` returns them).
    As in git, a path under an ignored directory is ignored even if a later `!pattern`
    matches the path itself: git never looks inside an excluded directory.
    """

    def __init__(self, patterns: Sequence[str]):
        """Compile `patterns` (gitignore lines; blank lines and `#` comments are skipped).

        Raises TypeError if `patterns` is a single string rather than a sequence of lines,
        and whatever pathspec raises for a pattern it cannot compile (ValueError subclasses).
        """
        if isinstance(patterns, (str, bytes)):
            raise TypeError("IgnoreRules takes a sequence of patterns, not one string")
        self.patterns = tuple(patterns)
        self._spec = None
        if self.patterns:  # without patterns it is never asked, and pathspec is not imported
            import pathspec

            self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)
        # A rescan asks about every file; the directory verdicts repeat, so remember them.
        self._dir_cache: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"IgnoreRules({list(self.patterns)!r})"

    def is_ignored(self, relpath: str, is_dir: bool = False) -> bool:
        """True if `relpath` (a directory if `is_dir`) must not be synced. Raises nothing."""
        relpath = relpath.strip("/")
        if relpath == "":
            return False  # the folder root itself
        parts = relpath.split("/")
        # `.shoal` in any case: on a case-insensitive disk `.SHOAL` is the same directory, and
        # a nested one would be refused by every receiving device anyway (validate_remote_path).
        if any(part.casefold() == SHOAL_DIR for part in parts):
            return True
        if not self.patterns:
            return False
        for depth in range(1, len(parts)):
            if self._dir_ignored("/".join(parts[:depth])):
                return True
        if is_dir:
            return self._dir_ignored(relpath)
        return self._spec.match_file(relpath)

    def is_ignored_entry(self, relpath: str, name: str, is_dir: bool) -> bool:
        """`is_ignored` for a walk that never descends into an ignored directory: the parents of
        `relpath` are known not to be ignored, so only the entry itself (last component `name`)
        is checked. The same verdicts, without re-checking every parent of every file.
        Raises nothing."""
        if name.casefold() == SHOAL_DIR:
            return True
        if not self.patterns:
            return False
        if is_dir:
            return self._dir_ignored(relpath)
        return self._spec.match_file(relpath)

    def _dir_ignored(self, dirpath: str) -> bool:
        verdict = self._dir_cache.get(dirpath)
        if verdict is None:
            if len(self._dir_cache) >= _DIR_CACHE_LIMIT:
                self._dir_cache.clear()
            verdict = self._dir_cache[dirpath] = self._spec.match_file(dirpath + "/")
        return verdict
