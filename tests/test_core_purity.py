"""shoal.core is pure: its modules import only a whitelist (no os, time, sockets, databases).

Checked on the source with `ast`, so it is exact and covers every module of the package,
including ones added later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "src" / "shoal" / "core"

ALLOWED = {
    "__future__",
    "base64",
    "binascii",
    "cryptography",  # pure computation (keys, ciphers); no I/O
    "bisect",
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "hashlib",
    "hmac",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "pathspec",
    "posixpath",
    "re",
    "string",
    "typing",
    "unicodedata",
    "shoal.errors",
    "shoal.model",
}


def imported_modules(source: str, module: str) -> set[str]:
    """Every module an import statement in `source` names (relative ones resolved)."""
    package = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            found.add("<dynamic __import__>")
    return found


def allowed(name: str) -> bool:
    if name == "shoal.core" or name.startswith("shoal.core."):
        return True
    # A submodule of an allowed stdlib module is fine (collections.abc); of shoal, only the two.
    return name in ALLOWED or (not name.startswith("shoal") and name.split(".")[0] in ALLOWED)


MODULES = sorted(CORE.glob("*.py"))


def test_core_has_the_expected_modules():
    names = {p.stem for p in MODULES}
    assert {"__init__", "paths", "ignore", "conflicts", "reconcile", "blocks", "backoff", "debounce"} <= names


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_core_module_imports_only_the_whitelist(path):
    module = "shoal.core." + path.stem if path.stem != "__init__" else "shoal.core"
    refused = sorted(n for n in imported_modules(path.read_text(encoding="utf-8"), module) if not allowed(n))
    assert refused == [], f"{path.name} imports {refused}"


@pytest.mark.parametrize(
    "source,bad",
    [
        ("import os", "os"),
        ("import time", "time"),
        ("from os import path", "os"),
        ("import os.path", "os.path"),
        ("import socket, re", "socket"),
        ("from subprocess import run", "subprocess"),
        ("import sqlite3", "sqlite3"),
        ("import apsw", "apsw"),
        ("from psycopg import sql", "psycopg"),
        ("import watchdog.observers", "watchdog.observers"),
        ("from shoal import config", "shoal"),
        ("from shoal.localstore import store", "shoal.localstore"),
        ("from .. import config", "shoal"),
        ("def f():\n    import time\n", "time"),
        ("__import__('os')", "<dynamic __import__>"),
    ],
)
def test_the_checker_catches_forbidden_imports(source, bad):
    names = imported_modules(source, "shoal.core.example")
    assert bad in names
    assert not allowed(bad)


def test_the_checker_accepts_core_siblings():
    names = imported_modules("from .paths import x\nfrom shoal.core.paths import y", "shoal.core.example")
    assert names == {"shoal.core.paths"}
    assert all(allowed(n) for n in names)
