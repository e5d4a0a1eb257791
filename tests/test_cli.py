"""The command line as a user meets it: exit codes, one-line errors, JSON output, global
options before or after the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from shoal.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cfg(tmp_path, hub):
    """A device whose hub is its own device login (from `shoal hub add-device`)."""
    login = hub.add_device("laptop")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "device": {"name": "laptop"}, "state_dir": str(tmp_path / "state"),
        "hub": {"url": hub.device_url(login), "password_file": str(login.password_file)},
        "folders": [{"id": "docs", "path": str(tmp_path / "docs")}]}))
    return path


def test_usage_errors_exit_2_with_one_line(capsys):
    code, out, err = run(capsys, "frobnicate")
    assert code == 2 and err.count("\n") == 1 and "invalid choice" in err
    code, out, err = run(capsys, "sync")  # --now is required
    assert code == 2 and "--now" in err


def test_missing_config_is_one_line_exit_2(capsys, tmp_path):
    code, out, err = run(capsys, "--config", str(tmp_path / "nope.yaml"), "scan")
    assert code == 2
    assert err.strip() == f"config file not found: {tmp_path / 'nope.yaml'} (run `shoal init`)"


def test_config_check_names_file_line_key(capsys, tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("device:\n  name: x\nfolders:\n  - id: a\n    path: /tmp/a\n    mode: both\n")
    code, out, err = run(capsys, "config", "check", "--config", str(bad))  # global option after the command
    assert code == 2
    assert "config.yaml:6: folders[0].mode: must be one of send-only, receive-only, send-receive" in err
    assert "Traceback" not in err


def test_init_scan_status_json_and_refuses_to_overwrite(capsys, tmp_path, hub_url, monkeypatch):
    # The owner's URL on purpose: `init --hub URL` takes no password, so only a login without
    # one registers at init (device logins: tests/test_device_login_e2e.py).
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the default state dir, kept in the test
    path = tmp_path / "c" / "config.yaml"
    notes = tmp_path / "Notes"
    code, out, err = run(capsys, "--config", str(path), "init", "--device-name", "pixel",
                         "--hub", str(hub_url), "--folder", f"notes={notes}")
    assert code == 0, err
    assert "registered at the hub" in out
    assert (notes / ".shoal" / "folder-id").read_text().strip() == "notes"
    (notes / "a.md").write_text("hello")
    code, out, err = run(capsys, "--config", str(path), "scan")
    assert code == 0 and "1 added" in out
    code, out, err = run(capsys, "status", "--json", "--config", str(path))
    status = json.loads(out)
    assert status["device"]["name"] == "pixel"
    assert status["hub"]["reachable"] is True
    assert status["daemon"]["running"] is False
    [folder] = status["folders"]
    assert (folder["id"], folder["files"], folder["bytes"], folder["waiting"]) == ("notes", 1, 5, 1)
    assert (tmp_path / "data" / "shoal" / "shoal.db").exists()
    code, out, err = run(capsys, "--config", str(path), "init")
    assert code == 2 and "already exists" in err


def test_status_with_unreachable_hub_still_reports(capsys, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"device": {"name": "d"}, "state_dir": str(tmp_path / "s"),
                                    "hub": {"url": "postgresql://nobody@127.0.0.1:1/x"},
                                    "folders": [{"id": "f", "path": str(tmp_path / "f")}]}))
    code, out, err = run(capsys, "--config", str(path), "status", "--json")
    assert code == 0
    status = json.loads(out)
    assert status["hub"]["reachable"] is False and "unreachable" in status["hub"]["error"]
    code, out, err = run(capsys, "--config", str(path), "sync", "--now")
    assert code == 1 and err.startswith("shoal: hub unreachable") and err.count("\n") == 1
    code, out, err = run(capsys, "--config", str(path), "status", "--json")
    assert json.loads(out)["folders"][0]["paused"] is None


def test_sync_conflicts_devices_dupes(capsys, cfg, tmp_path, hub_url):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("same bytes")
    (docs / "b.txt").write_text("same bytes")
    code, out, err = run(capsys, "--config", str(cfg), "sync", "--now")
    assert code == 0, err
    assert "docs: 2 pushed, 0 pulled" in out
    code, out, err = run(capsys, "--config", str(cfg), "conflicts", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, err = run(capsys, "--config", str(cfg), "devices", "--json")
    [dev] = json.loads(out)
    assert dev["name"] == "laptop" and dev["behind"] == 0 and dev["silent"] is False
    code, out, err = run(capsys, "--config", str(cfg), "dupes", "--json")
    [dupe] = json.loads(out)
    assert sorted(dupe["places"]) == ["docs:a.txt", "docs:b.txt"]


def test_mass_delete_pauses_until_confirmed(capsys, cfg, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(20):
        (docs / f"f{i}.txt").write_text(str(i))
    assert run(capsys, "--config", str(cfg), "sync", "--now")[0] == 0
    for i in range(15):
        (docs / f"f{i}.txt").unlink()
    code, out, err = run(capsys, "--config", str(cfg), "sync", "--now")
    assert code == 1 and "mass-delete" in err and "--allow-mass-delete" in err
    code, out, err = run(capsys, "--config", str(cfg), "sync", "--now", "--allow-mass-delete")
    assert code == 0, err
    status = json.loads(run(capsys, "--config", str(cfg), "status", "--json")[1])
    assert status["folders"][0]["files"] == 5 and status["folders"][0]["paused"] is None


def test_python_dash_m_and_debug_traceback(tmp_path):
    env = {**os.environ, "SHOAL_CONFIG": str(tmp_path / "none.yaml")}
    proc = subprocess.run([sys.executable, "-m", "shoal", "scan"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "shoal", "--debug", "scan"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


# -- config check on configs that strip TLS or leak a password (issue 9, item 15) ------------

def _cli(config, *args):
    return subprocess.run([sys.executable, "-m", "shoal", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def test_config_check_refuses_password_in_a_world_readable_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("device:\n  name: x\nhub:\n  url: postgresql://u:s3cret-pw@127.0.0.1/shoal\n")
    path.chmod(0o644)
    proc = _cli(path, "config", "check")
    assert proc.returncode == 2, proc
    assert "config.yaml:4: hub.url:" in proc.stderr and "chmod 600" in proc.stderr
    assert "password_file" in proc.stderr and "s3cret-pw" not in proc.stderr + proc.stdout


def test_config_check_warns_on_remote_hub_without_verify_full(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("device:\n  name: x\nhub:\n  url: postgresql://u@hub.example.org/shoal\n")
    path.chmod(0o600)
    proc = _cli(path, "config", "check")
    assert proc.returncode == 0, proc
    assert "warning: config.yaml:4: hub.url:" in proc.stderr and "sslmode=verify-full" in proc.stderr
    path.write_text("device:\n  name: x\nhub:\n  url: postgresql://u@hub.example.org/shoal?sslmode=verify-full\n")
    proc = _cli(path, "config", "check")
    assert proc.returncode == 0 and proc.stderr == "", proc


@pytest.mark.parametrize("module, termux, expected", [
    ("apsw", True, "pkg install python-apsw"),
    ("apsw", False, "pip install apsw"),
    ("cryptography.hazmat.primitives", True, "pkg install python-cryptography"),
    ("yaml", False, "pip install pyyaml"),
    ("watchdog.observers", True, "pip install watchdog"),
    ("numpy", False, None),
    (None, True, None),
])
def test_a_missing_dependency_is_named(module, termux, expected):
    from shoal.__main__ import missing_dependency_hint

    hint = missing_dependency_hint(module, termux)
    assert (hint is None) if expected is None else (expected in hint)


def test_a_missing_dependency_is_one_line_not_a_traceback(tmp_path):
    import subprocess
    import sys

    (tmp_path / "apsw.py").write_text("raise ImportError('no apsw here', name='apsw')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "shoal", "status"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["shoal: shoal needs the Python package apsw: install it with "
                                                "`pip install apsw` (or reinstall shoal)"]
