"""Two machines, two commands (issue 10): device A runs `shoal run` with an embedded hub served
on 127.0.0.1 (TLS front); device B, with its own HOME, is set up only with
`shoal join <token> --folder docs=PATH` and `shoal run`. Files flow both ways; a spent,
expired or tampered invite is refused and writes nothing; a revoked device is refused and says so.
Real processes throughout."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemons import wait_for
from tests.pgserver import free_port

pytestmark = pytest.mark.slow


class Machine:
    """A HOME of its own: the default config and state dirs (platformdirs) live under it."""

    def __init__(self, base: Path, name: str):
        self.home = base / name
        self.home.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SHOAL_"))}
        self.env["HOME"] = str(self.home)
        self.proc: subprocess.Popen | None = None

    @property
    def config(self) -> Path:
        return self.home / ".config" / "shoal" / "config.yaml"

    def shoal(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, cwd=self.home)

    def start(self) -> None:
        log = open(self.home / "daemon.out", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "shoal", "run"], stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.home)
        wait_for(lambda: self.status().get("daemon", {}).get("running"), timeout=60,
                 what=f"{self.home.name}'s daemon")

    def status(self) -> dict:
        try:
            return json.loads(self.shoal("status", "--json").stdout)
        except ValueError:
            return {}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def _invite(a: Machine, name: str, *extra: str) -> str:
    out = a.shoal("hub", "add-device", name, "--json", *extra)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["invite"] and data["expires"], data
    return data["invite"]


def _retoken(token: str, **change) -> str:
    raw = token[len("shoal1."):]
    body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    body.update(change)
    return "shoal1." + base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.fixture
def served(tmp_path):
    a = Machine(tmp_path, "laptop")
    port = free_port()
    init = a.shoal("init", "--device-name", "laptop", "--serve", f"127.0.0.1:{port}",
                   "--folder", f"docs={a.home / 'docs'}")
    assert init.returncode == 0, init.stderr
    a.start()
    wait_for(lambda: a.status().get("hub", {}).get("serve", {}).get("serving"), timeout=60,
             what="the laptop to serve its hub")
    machines = [a]
    yield a, machines
    for m in machines:
        m.stop()


def test_two_machines_pair_with_one_invite_and_sync_both_ways(tmp_path, served):
    a, machines = served
    token = _invite(a, "phone")
    b = Machine(tmp_path, "phone")
    machines.append(b)
    joined = b.shoal("join", token, "--folder", f"docs={b.home / 'docs'}")
    assert joined.returncode == 0, joined.stderr
    assert "joined hub" in joined.stdout
    cfg = b.config.read_text()
    assert "sslmode=verify-ca" in cfg and "password_file" in cfg
    password_file = b.config.parent / "hub-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(base64.urlsafe_b64decode(token[7:] + "=" * (-len(token[7:]) % 4)))["w"] \
        != password_file.read_text()  # the invite's password was replaced by the device's own
    b.start()

    (a.home / "docs" / "from-laptop.txt").write_text("hello phone")
    wait_for(lambda: (b.home / "docs" / "from-laptop.txt").exists(), timeout=60, what="laptop -> phone")
    (b.home / "docs" / "from-phone.txt").write_text("hello laptop")
    wait_for(lambda: (a.home / "docs" / "from-phone.txt").exists(), timeout=60, what="phone -> laptop")
    assert (b.home / "docs" / "from-laptop.txt").read_text() == "hello phone"

    # The same invite again, on a third machine: refused, nothing written.
    c = Machine(tmp_path, "thief")
    again = c.shoal("join", token, "--folder", f"docs={c.home / 'docs'}")
    assert again.returncode == 1
    assert "already used" in again.stderr
    assert not c.config.exists() and not (c.home / ".local").exists()

    # Revoked: the phone's next sync fails and says why; nothing else changes on it.
    revoked = a.shoal("hub", "revoke-device", "phone")
    assert revoked.returncode == 0, revoked.stderr
    sync = b.shoal("sync", "--now")
    assert sync.returncode == 1
    assert "not permitted to log in" in sync.stderr or "revoked" in sync.stderr
    assert (b.home / "docs" / "from-laptop.txt").read_text() == "hello phone"


def test_expired_and_tampered_invites_are_refused_and_write_nothing(tmp_path, served):
    a, _ = served
    token = _invite(a, "slowpoke", "--expires", "1s")
    time.sleep(1.5)
    c = Machine(tmp_path, "late")
    late = c.shoal("join", token)
    assert late.returncode == 1 and "expired" in late.stderr
    assert not c.config.exists()

    token = _invite(a, "tablet")
    # An invite whose CA fingerprint is not the served hub's (someone in between, or a forged
    # token): refused before any login is tried, nothing written.
    forged = _retoken(token, f="0" * 64)
    d = Machine(tmp_path, "mitm")
    refused = d.shoal("join", forged)
    assert refused.returncode == 1 and "certificate authority" in refused.stderr
    assert not d.config.exists() and not (d.home / ".local").exists()
    # The genuine token still works afterwards (the refusal spent nothing).
    e = Machine(tmp_path, "tablet")
    ok = e.shoal("join", token, "--folder", f"docs={e.home / 'docs'}")
    assert ok.returncode == 0, ok.stderr
    damaged = Machine(tmp_path, "typo").shoal("join", token[:-5])
    assert damaged.returncode == 1 and "invite" in damaged.stderr


def test_a_hub_daemon_killed_mid_transfer_comes_back_and_the_device_finishes(tmp_path, served):
    """kill -9 of the daemon that serves the hub while a device pulls through it: the device
    backs off and finishes after the hub's daemon is started again."""
    import hashlib

    a, machines = served
    big = os.urandom(48 * 1024 * 1024)
    (a.home / "docs" / "big.bin").write_bytes(big)
    sync = a.shoal("sync", "--now")
    assert sync.returncode == 0, sync.stderr
    token = _invite(a, "puller")
    b = Machine(tmp_path, "puller")
    machines.append(b)
    assert b.shoal("join", token, "--folder", f"docs={b.home / 'docs'}").returncode == 0
    b.start()
    part_dir = b.home / "docs" / ".shoal" / "tmp"
    wait_for(lambda: part_dir.exists() and any(part_dir.iterdir()) or (b.home / "docs" / "big.bin").exists(),
             timeout=60, interval=0.01, what="the pull to start")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(30)
    a.proc = None
    time.sleep(2)
    a.start()
    wait_for(lambda: a.status().get("hub", {}).get("serve", {}).get("serving"), timeout=60,
             what="the laptop to serve its hub again")
    target = b.home / "docs" / "big.bin"
    wait_for(lambda: target.exists() and target.stat().st_size == len(big), timeout=120, what="the pull to finish")
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(big).digest()


def test_joining_an_encrypted_folder_takes_its_passphrase(tmp_path, served):
    a, machines = served
    a.stop()
    secret = a.home / "docs.pass"
    secret.write_text("a long passphrase\n")
    secret.chmod(0o600)
    cfg = a.config.read_text().replace('    ignore: []', f'    ignore: []\n    encryption:\n      passphrase_file: {secret}')
    a.config.write_text(cfg)
    (a.home / "docs").mkdir(exist_ok=True)
    (a.home / "docs" / "diary.txt").write_text("dear diary")
    a.start()
    wait_for(lambda: a.status().get("hub", {}).get("serve", {}).get("serving"), timeout=60, what="the hub served")

    def offered() -> str | None:
        token = _invite(a, f"phone{time.monotonic_ns()}")
        body = json.loads(base64.urlsafe_b64decode(token[7:] + "=" * (-len(token[7:]) % 4)))
        return token if body.get("x") == ["docs"] else None

    token = wait_for(offered, timeout=60, interval=1.0, what="the invite to offer docs as encrypted")
    b = Machine(tmp_path, "phone")
    machines.append(b)
    docs = f"docs={b.home / 'docs'}"
    refused = b.shoal("join", token, "--folder", docs)
    assert refused.returncode == 2 and "--passphrase-file" in refused.stderr
    loose = b.home / "loose.pass"
    loose.write_text("a long passphrase\n")
    loose.chmod(0o644)
    refused = b.shoal("join", token, "--folder", docs, "--passphrase-file", str(loose))
    assert refused.returncode == 2 and "chmod 600" in refused.stderr
    assert not b.config.exists()  # nothing written, the invite is still good

    loose.chmod(0o600)
    joined = b.shoal("join", token, "--folder", docs, "--passphrase-file", str(loose))
    assert joined.returncode == 0, joined.stderr
    assert "docs: end-to-end encrypted" in joined.stdout
    b.start()
    wait_for(lambda: (b.home / "docs" / "diary.txt").exists(), timeout=60, what="laptop -> phone")
    assert (b.home / "docs" / "diary.txt").read_text() == "dear diary"
    (b.home / "docs" / "reply.txt").write_text("dear laptop")
    wait_for(lambda: (a.home / "docs" / "reply.txt").exists(), timeout=60, what="phone -> laptop")
