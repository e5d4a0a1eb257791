"""Numbered SQL migration files shipped inside the package (`NNNN_name.sql`), and which of them
a database still needs: for the local store and the hub alike."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def numbered_sql_files(package: str, folder: str) -> list[tuple[int, str, str]]:
    """(number, file name, SQL text) of every `NNNN_name.sql` in `package/folder`, in order."""
    found = []
    for entry in resources.files(package).joinpath(folder).iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def pending_migrations(files: list[tuple[int, str, str]], have: int,
                       upto: int | None = None) -> list[tuple[int, str, str]]:
    """The migrations above version `have` (and not above `upto`), in order: what a runner applies,
    each in one transaction with its bookkeeping row (the local store and the hub alike)."""
    return [m for m in files if m[0] > have and (upto is None or m[0] <= upto)]
