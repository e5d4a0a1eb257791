"""`python -m shoal` is the same as `shoal` (the console script runs `run` here too): a
dependency that cannot be imported is named in one line, with how to install it, instead of a
traceback (on Termux, some come from `pkg`: pip would have to compile them)."""

import sys

from shoal.platform import is_termux

#: module -> (Termux package, pip package) for what shoal imports at start.
DEPENDENCIES = {
    "apsw": ("python-apsw", "apsw"),
    "cryptography": ("python-cryptography", "cryptography"),
    "yaml": ("python-yaml", "pyyaml"),
    "psycopg": (None, "psycopg"),
    "watchdog": (None, "watchdog"),
    "platformdirs": (None, "platformdirs"),
    "pathspec": (None, "pathspec"),
    "rich": (None, "rich"),
    "segno": (None, "segno"),
}


def missing_dependency_hint(module: str | None, termux: bool) -> str | None:
    """How to install the package of `module` (None: not one of shoal's dependencies)."""
    top = (module or "").split(".")[0]
    if top not in DEPENDENCIES:
        return None
    pkg, pip = DEPENDENCIES[top]
    if termux and pkg:
        return f"shoal needs the Python package {pip}: install it with `pkg install {pkg}`"
    return f"shoal needs the Python package {pip}: install it with `pip install {pip}` (or reinstall shoal)"


def run() -> int:
    try:
        from shoal.cli import main
    except ImportError as e:
        hint = missing_dependency_hint(e.name, is_termux())
        if hint is None or "--debug" in sys.argv:
            raise
        print(f"shoal: {hint}", file=sys.stderr)
        return 1
    return main()


if __name__ == "__main__":
    sys.exit(run())
