"""Changelog rows as a test pushes them through the hub API (`Hub.push`)."""

from __future__ import annotations

import hashlib


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_row(seq: int, path: str, data: bytes, **extra) -> dict:
    row = {"seq": seq, "path": path, "kind": "file", "size": len(data), "mtime_ns": 1_700_000_000 * 10**9,
           "sha256": sha(data), "target": None, "deleted": False, "base": None, "moved_from": None,
           "conflict_of": None}
    row.update(extra)
    return row


def symlink_row(seq: int, path: str, target: str, **extra) -> dict:
    row = {"seq": seq, "path": path, "kind": "symlink", "size": len(target.encode()),
           "mtime_ns": 1_700_000_000 * 10**9, "sha256": sha(target.encode()), "target": target,
           "deleted": False, "base": None, "moved_from": None, "conflict_of": None}
    row.update(extra)
    return row
