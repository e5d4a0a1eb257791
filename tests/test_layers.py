"""Imports run one way (DESIGN.md, Layout): core <- localstore, scan, hub <- sync <- app <- daemon,
ops <- cli. Read from the source with `ast`, so every module is checked, including new ones and
imports inside functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_core_purity import imported_modules

SRC = Path(__file__).resolve().parent.parent / "src" / "shoal"

# A module may import modules of its own layer or of a lower one, never of a higher one.
LAYERS = {
    "shoal": 0,  # the package itself: only __version__
    "shoal.errors": 0, "shoal.model": 0, "shoal.sql_files": 0, "shoal.progress": 0, "shoal.platform": 0,
    "shoal.core": 1,
    "shoal.config": 2,
    "shoal.localstore": 3, "shoal.hub": 3,
    "shoal.scan": 4,
    "shoal.sync": 5,
    "shoal.app": 6,
    "shoal.daemon": 7, "shoal.ops": 7,
    "shoal.cli": 8, "shoal.__main__": 9,
}
# Same layer, still one way: the indexer builds on the store.
FORBIDDEN_SIDEWAYS = {("shoal.localstore", "shoal.scan"), ("shoal.hub", "shoal.localstore"),
                      ("shoal.localstore", "shoal.hub"), ("shoal.daemon", "shoal.ops"),
                      ("shoal.ops", "shoal.daemon.loop")}


def layer_of(module: str) -> tuple[str, int] | None:
    """The layer a shoal module belongs to: its longest prefix in LAYERS."""
    if module == "shoal":
        return module, LAYERS[module]
    parts = module.split(".")
    for i in range(len(parts), 1, -1):
        key = ".".join(parts[:i])
        if key in LAYERS:
            return key, LAYERS[key]
    return None


def violations(module: str, imports: set[str]) -> list[str]:
    own = layer_of(module)
    assert own is not None, f"{module} belongs to no layer: add it to LAYERS"
    bad = []
    for name in sorted(imports):
        if not name.startswith("shoal"):
            continue
        other = layer_of(name)
        if other is None:
            bad.append(f"{module} imports {name} (no layer)")
        elif other[1] > own[1]:
            bad.append(f"{module} (layer {own[0]}) imports {name} (layer {other[0]}, higher)")
        elif other[0] != own[0] and any(own[0] == a and name.startswith(b) for a, b in FORBIDDEN_SIDEWAYS):
            bad.append(f"{module} imports {name} (sideways, against the flow)")
    return bad


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


MODULES = list(_modules())


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_no_import_runs_back_up_the_layers(module, path):
    assert violations(module, imported_modules(path.read_text(encoding="utf-8"), module
                                               if path.stem != "__init__" else module + ".__init__")) == []


@pytest.mark.parametrize("module,source", [
    ("shoal.sync.engine", "from shoal.daemon.loop import run_daemon"),
    ("shoal.sync.engine", "def f():\n    from shoal.app import LocalDevice\n"),
    ("shoal.hub.client", "from shoal.sync.engine import SyncEngine"),
    ("shoal.core.paths", "from shoal.config import Config"),
    ("shoal.scan.scanner", "from shoal.sync import apply"),
    ("shoal.localstore.store", "from shoal.scan.scanner import scan_folders"),
    ("shoal.app", "import shoal.cli"),
    ("shoal.hub.admin", "from shoal.localstore import Store"),
])
def test_the_layer_check_catches_an_import_back_up(module, source):
    assert violations(module, imported_modules(source, module))


def test_every_package_has_a_layer():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {f"shoal.{p}" for p in packages} <= set(LAYERS)
