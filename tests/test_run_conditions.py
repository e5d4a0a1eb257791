"""Run conditions (`sync.when`, issue 13 item 3): the config section, the probes that read the
machine's state (fake `termux-battery-status` / `termux-wifi-connectioninfo` / `nmcli` on PATH
printing the real JSON and text shapes, a fake /sys/class/power_supply), `shoal doctor`, and
end to end: a daemon waiting for Wi-Fi keeps indexing, `shoal sync --now` overrides it, and
Wi-Fi coming back lets it sync on its own."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from shoal.config import ConfigError, parse_config_text
from shoal.core.conditions import BATTERY, CHARGING, WIFI, Reading, RunConditions
from shoal.daemon.conditions import ConditionProbe
from tests.daemons import shoal, wait_for

# --- the real shapes termux-api prints --------------------------------------------------------

BATTERY_DISCHARGING = {"health": "GOOD", "percentage": 23, "plugged": "UNPLUGGED", "status": "DISCHARGING",
                       "temperature": 29.1, "current": -412000}
BATTERY_CHARGING = {"health": "GOOD", "percentage": 87, "plugged": "PLUGGED_AC", "status": "CHARGING",
                    "temperature": 31.0, "current": 1200000}
WIFI_ON = {"bssid": "02:00:00:00:00:00", "frequency_mhz": 5180, "ip": "192.168.1.23", "link_speed_mbps": 433,
           "mac_address": "02:00:00:00:00:00", "network_id": 1, "rssi": -55, "ssid": "home",
           "ssid_hidden": False, "supplicant_state": "COMPLETED"}
WIFI_OFF = {"bssid": None, "frequency_mhz": -1, "ip": "0.0.0.0", "link_speed_mbps": -1,
            "mac_address": "02:00:00:00:00:00", "network_id": -1, "rssi": -127, "ssid": "<unknown ssid>",
            "ssid_hidden": True, "supplicant_state": "DISCONNECTED"}


def fake_termux(bin_dir: Path, *, wifi: dict | None = None, battery: dict | None = None) -> Path:
    """termux-wifi-connectioninfo / termux-battery-status in `bin_dir`, printing the JSON files
    beside them (rewrite them to change what the phone reports)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, state_file, data in (("termux-wifi-connectioninfo", "wifi.json", wifi),
                                   ("termux-battery-status", "battery.json", battery)):
        if data is None:
            continue
        (bin_dir / state_file).write_text(json.dumps(data, indent=2))
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\ncat "{bin_dir / state_file}"\n')
        script.chmod(0o755)
    return bin_dir


def set_wifi(bin_dir: Path, data: dict) -> None:
    tmp = bin_dir / "wifi.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, bin_dir / "wifi.json")


def _env(bin_dir: Path) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


# --- config -----------------------------------------------------------------------------------


def _parse(text: str):
    return parse_config_text(text, "config.yaml", Path("/base"))


def test_config_sync_when_is_read():
    config = _parse('sync:\n  when:\n    wifi_only: true\n    charging_only: false\n    min_battery: 30\n'
                    '    hours: "22:00-07:00"\n')
    assert config.sync.when == RunConditions(True, False, 30, (22 * 60, 7 * 60))
    assert _parse("sync:\n  interval: 5m\n").sync.when == RunConditions()
    assert _parse("sync:\n  when:\n    min_battery: 15%\n").sync.when.min_battery == 15
    assert _parse('sync:\n  when:\n    hours: "00:00-24:00"\n').sync.when.any is False


@pytest.mark.parametrize("body,line,message", [
    ("    wifi_only: yes please\n", 3, "config.yaml:3: sync.when.wifi_only: must be true or false"),
    ("    min_battery: 101\n", 3, "config.yaml:3: sync.when.min_battery: must be a percentage from 0 to 100"),
    ("    min_battery: -5\n", 3, "config.yaml:3: sync.when.min_battery: must be a percentage from 0 to 100"),
    ('    hours: "22-07"\n', 3, "config.yaml:3: sync.when.hours: must be a local time window HH:MM-HH:MM"),
    ("    metered: false\n", 3, "config.yaml:3: sync.when.metered: unknown key (allowed: wifi_only, "
                               "charging_only, min_battery, hours)"),
])
def test_config_sync_when_problems_name_file_line_and_key(body, line, message):
    with pytest.raises(ConfigError) as e:
        _parse("sync:\n  when:\n" + body)
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith(message), e.value.problems


def test_config_sync_when_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"config.yaml:2: sync.when: must be a mapping"):
        _parse("sync:\n  when: wifi\n")


# --- probes -----------------------------------------------------------------------------------


def test_termux_probes_read_the_real_json_shapes(tmp_path):
    bin_dir = fake_termux(tmp_path / "bin", wifi=WIFI_OFF, battery=BATTERY_DISCHARGING)
    probe = ConditionProbe(env=_env(bin_dir), power_supply=tmp_path / "none")
    assert probe.read({WIFI, CHARGING, BATTERY}, now=0.0) == Reading(wifi=False, charging=False, battery=23)
    set_wifi(bin_dir, WIFI_ON)
    (bin_dir / "battery.json").write_text(json.dumps(BATTERY_CHARGING))
    assert probe.read({WIFI, CHARGING, BATTERY}, now=1.0) == Reading(False, False, 23)  # cached for a while
    assert probe.read({WIFI, CHARGING, BATTERY}, now=60.0) == Reading(wifi=True, charging=True, battery=87)
    # held at a charge limit: not charging, but on the charger
    (bin_dir / "battery.json").write_text(json.dumps({**BATTERY_CHARGING, "status": "NOT_CHARGING"}))
    assert probe.read({CHARGING}, now=120.0).charging is True
    assert probe.sources()[WIFI] == "termux-wifi-connectioninfo"


def test_a_probe_that_fails_or_hangs_is_unreadable_and_quick(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "termux-battery-status").write_text("#!/bin/sh\nsleep 30\n")
    (bin_dir / "termux-wifi-connectioninfo").write_text("#!/bin/sh\necho 'not json'\n")
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    probe = ConditionProbe(env=_env(bin_dir), power_supply=tmp_path / "none", timeout=0.5)
    started = time.monotonic()
    assert probe.read({WIFI, CHARGING, BATTERY}, now=0.0) == Reading(None, None, None)
    assert time.monotonic() - started < 5
    started = time.monotonic()
    probe.read({CHARGING}, now=30.0)  # a source that timed out is left alone for a while
    assert time.monotonic() - started < 0.4


def test_nothing_to_read_is_unreadable(tmp_path):
    probe = ConditionProbe(env={"PATH": str(tmp_path)}, power_supply=tmp_path / "none")
    assert probe.read({WIFI, CHARGING, BATTERY}, now=0.0) == Reading(None, None, None)
    assert probe.sources() == {WIFI: None, CHARGING: None, BATTERY: None}


def _supply(root: Path, name: str, **files: str) -> None:
    (root / name).mkdir(parents=True)
    for key, value in files.items():
        (root / name / key).write_text(value + "\n")


@pytest.mark.parametrize("supplies,expect", [
    ({"AC": {"type": "Mains", "online": "1"}, "BAT0": {"type": "Battery", "capacity": "64", "status": "Charging"}},
     (True, 64)),
    ({"AC": {"type": "Mains", "online": "0"}, "BAT0": {"type": "Battery", "capacity": "12", "status": "Discharging"}},
     (False, 12)),
    ({"BAT1": {"type": "Battery", "capacity": "100", "status": "Full"}}, (True, 100)),
    ({"BAT1": {"type": "Battery", "capacity": "50", "status": "Discharging"}}, (False, 50)),
    ({"ucsi-source-psy-USBC000:001": {"type": "USB", "online": "1"}}, (True, None)),  # a desktop on mains
    ({}, (None, None)),
])
def test_linux_power_supply(tmp_path, supplies, expect):
    root = tmp_path / "power_supply"
    root.mkdir()
    for name, files in supplies.items():
        _supply(root, name, **files)
    probe = ConditionProbe(env={"PATH": str(tmp_path / "nobin")}, power_supply=root)
    reading = probe.read({CHARGING, BATTERY}, now=0.0)
    assert (reading.charging, reading.battery) == expect


@pytest.mark.parametrize("output,wifi", [
    ("wifi:connected\nloopback:connected (externally)\n", True),
    ("ethernet:connected\nwifi:disconnected\n", True),  # a wired network is not mobile data
    ("wifi:disconnected\ngsm:connected\nloopback:connected (externally)\n", False),
    ("wifi:unavailable\n", False),
])
def test_networkmanager_wifi(tmp_path, output, wifi):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nmcli").write_text(f"#!/bin/sh\nprintf '{output}'\n")
    (bin_dir / "nmcli").chmod(0o755)
    probe = ConditionProbe(env=_env(bin_dir), power_supply=tmp_path / "none")
    assert probe.read({WIFI}, now=0.0).wifi is wifi
    assert probe.sources()[WIFI] == "nmcli"


# --- doctor -----------------------------------------------------------------------------------


def _with_when(config_path: Path, body: str) -> Path:
    text = config_path.read_text()
    assert text.count("\nsync:\n") == 1
    config_path.write_text(text.replace("\nsync:\n", "\nsync:\n  when:\n" + body))
    return config_path


def test_doctor_names_a_condition_it_cannot_read_and_does_not_fail(tmp_path, hub_url, monkeypatch):
    from tests.test_doctor import _line, _run, _setup

    from shoal.daemon import conditions as probes

    monkeypatch.setenv("PATH", f"{tmp_path / 'nobin'}:{os.environ['PATH']}")
    monkeypatch.setattr(probes, "POWER_SUPPLY", tmp_path / "no-power-supply")
    monkeypatch.setattr(probes, "TERMUX_COMMANDS", {WIFI: "termux-wifi-connectioninfo-absent",
                                                    CHARGING: "termux-battery-status-absent",
                                                    BATTERY: "termux-battery-status-absent"})
    monkeypatch.setattr(probes, "NMCLI", "nmcli-absent")
    config_path = _with_when(_setup(tmp_path, hub_url), "    wifi_only: true\n    min_battery: 20\n")
    code, lines = _run(config_path)
    line, fix = _line(lines, "run conditions")
    assert line.startswith("WARN") and "Wi-Fi" in line and "battery level" in line and "cannot be read" in line
    assert "does not hold" in line and fix and "termux-api" in fix
    assert code == 0, lines


def test_doctor_says_what_it_reads(tmp_path, hub_url, monkeypatch):
    from tests.test_doctor import _line, _run, _setup

    bin_dir = fake_termux(tmp_path / "bin", wifi=WIFI_ON, battery=BATTERY_DISCHARGING)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config_path = _with_when(_setup(tmp_path, hub_url), "    wifi_only: true\n    charging_only: true\n")
    code, lines = _run(config_path)
    line, _ = _line(lines, "run conditions")
    assert line.startswith("ok") and "Wi-Fi: connected" in line and "not charging" in line, line


# --- end to end -------------------------------------------------------------------------------


def _content(path):
    try:
        return path.read_bytes()
    except OSError:
        return None


def _docs(status: dict) -> dict:
    return next(f for f in status["folders"] if f["id"] == "docs")


@pytest.mark.slow
def test_wifi_only_holds_pushes_back_while_indexing_goes_on(make_daemon, tmp_path, monkeypatch):
    bin_dir = fake_termux(tmp_path / "fakebin", wifi=WIFI_OFF, battery=BATTERY_CHARGING)
    a, b = make_daemon("alpha"), make_daemon("beta")
    cfg = a.config_dict()
    cfg["sync"]["when"] = {"wifi_only": True}
    a.write_config(yaml.safe_dump(cfg))
    b.start()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")  # the daemon's (and the CLI's) PATH
    a.start()
    a.root.mkdir(parents=True, exist_ok=True)
    (a.root / "on-mobile-data.txt").write_text("wait for wifi")
    wait_for(lambda: _docs(a.status())["waiting"] == 1, what="the edit indexed on alpha")
    status = a.status()
    assert status["run_conditions"]["waiting_for"] == ["Wi-Fi"]
    assert "waiting for Wi-Fi" in _docs(status)["held"]
    text = shoal(a.config, "status").stdout
    assert "waiting for Wi-Fi" in text and "sync --now" in text
    time.sleep(1.0)
    assert not (b.root / "on-mobile-data.txt").exists()
    # the user asks for now: the run condition is overridden
    proc = shoal(a.config, "sync", "--now")
    assert proc.returncode == 0, proc.stderr
    assert _docs(a.status())["waiting"] == 0
    wait_for(lambda: _content(b.root / "on-mobile-data.txt") == b"wait for wifi", what="the file on beta")
    # still no Wi-Fi: the next edit waits again; Wi-Fi back: the daemon syncs on its own
    (a.root / "second.txt").write_text("second")
    wait_for(lambda: _docs(a.status())["waiting"] == 1, what="second.txt indexed on alpha")
    assert not (b.root / "second.txt").exists()
    set_wifi(bin_dir, WIFI_ON)
    wait_for(lambda: _content(b.root / "second.txt") == b"second", timeout=30, what="second.txt on beta on Wi-Fi")
    wait_for(lambda: a.status()["run_conditions"]["waiting_for"] == [], what="status: nothing waited for")
