"""`shoal join TOKEN`: set a new device up from an invite.

Nothing is written until the hub has proved itself: the hub CA it presents must have the
fingerprint the invite names, the connection is then verified against that CA (verify-ca),
the invite's one-time login must work and the hub id must be the invite's. Then the device
replaces the invite's password with its own (only a SCRAM verifier travels), and the config,
the password file (0600), the hub CA and the store are written and the device registers.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from shoal.config import (default_config_text, default_state_dir, parse_config_text, read_secret_file,
                          write_new_config)
from shoal.core.invite import Invite, decode_invite
from shoal.errors import HubUnreachable, InviteError, UsageError
from shoal.hub.pgerrors import describe_error
from shoal.ops.setup import InitResult, init_device

CA_FILE = "hub-ca.pem"
PASSWORD_FILE = "hub-password"


@dataclass(frozen=True)
class Joined:
    config_path: Path
    hub_id: str
    setup: InitResult  # the device, its folders and their problems, registration
    not_offered: tuple[str, ...]  # folder ids given that the hub does not know yet
    offered_unmapped: tuple[str, ...]  # folder ids the hub offered that were not mapped
    encrypted: tuple[str, ...] = ()  # the folders joined end-to-end encrypted (their keys opened)


def _hub_url(inv: Invite, ca_path: Path | None) -> str:
    hosts = ",".join(f"[{h}]:{inv.port}" if ":" in h else f"{h}:{inv.port}" for h in inv.hosts)
    # Pinned to the hub's own CA, or (a hub with a public certificate) the system's trust store.
    query = f"sslmode={inv.sslmode}&sslrootcert={ca_path or 'system'}"
    return f"postgresql://{inv.role}@{hosts}/{inv.dbname}?{query}"


def _fetch_trusted_ca(inv: Invite) -> str:
    """The hub CA's PEM, from the first host that answers, if its fingerprint is the invite's.
    Raises HubUnreachable, InviteError."""
    from shoal.hub.front import fetch_ca_pem
    from shoal.hub.tls import ca_fingerprint

    problems = []
    for host in inv.hosts:
        try:
            pem = fetch_ca_pem(host, inv.port, timeout=10)
        except Exception as e:  # OSError, the front's protocol error: try the next address
            problems.append(f"{host}: {e}")
            continue
        if ca_fingerprint(pem) != inv.ca_fingerprint:
            raise InviteError(f"the hub at {host}:{inv.port} presents another certificate authority than the "
                              "invite names: not joining (someone may be in between); nothing was written")
        return pem
    raise HubUnreachable(f"cannot reach the hub at {', '.join(inv.hosts)} port {inv.port}: "
                         + "; ".join(problems))


def _claim(inv: Invite, ca_path: Path | None) -> str:
    """Log in with the invite, check the hub id, and replace the one-time password with a new
    one; returns the new password. Raises InviteError, HubUnreachable."""
    conninfo = make_conninfo(host=",".join(inv.hosts), port=",".join([str(inv.port)] * len(inv.hosts)),
                             dbname=inv.dbname, user=inv.role, password=inv.password, sslmode=inv.sslmode,
                             sslrootcert=str(ca_path) if ca_path else "system", connect_timeout=10,
                             application_name="shoal join")
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as e:
        text = describe_error(e)
        if "password authentication failed" in text or "not permitted to log in" in text:
            raise InviteError("the hub refused the invite's login: it was already used, has expired or was "
                              "revoked; ask for a new one (`shoal hub add-device`)") from None
        if "certificate" in text or "SSL" in text:
            raise InviteError(f"the hub's TLS certificate does not check out against the invite: {text}") from None
        raise HubUnreachable(f"hub unreachable: {text}") from e
    try:
        if conn.execute("SELECT shoal.hub_id()").fetchone()[0] != inv.hub_id:
            raise InviteError("the hub is not the one the invite names (another hub id): not joining")
        password = secrets.token_urlsafe(32)
        verifier = conn.pgconn.encrypt_password(password.encode(), inv.role.encode(), b"scram-sha-256").decode()
        conn.execute("SELECT shoal.claim_invite(%s)", (verifier,))
        return password
    except psycopg.Error as e:
        raise InviteError(f"the hub refused the invite: {describe_error(e)}") from None
    finally:
        conn.close()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _passphrase_files(inv: Invite, given: list[str], passphrase_file: Path | None) -> dict[str, str]:
    """Which joined folders get the passphrase file: those the hub has encrypted, and with a
    passphrase file also those the hub does not know yet (they start encrypted with this device).
    Raises UsageError (an encrypted folder without a passphrase, or a passphrase for none) and
    ConfigError (a passphrase file that is not private), before anything is written."""
    encrypted = [f for f in given if f in inv.encrypted]
    if passphrase_file is None:
        if encrypted:
            raise UsageError(f"folder {encrypted[0]} is encrypted on the hub: give its passphrase with "
                             "--passphrase-file FILE (mode 0600)")
        return {}
    read_secret_file(passphrase_file, "--passphrase-file", "passphrase file")
    chosen = encrypted + [f for f in given if f not in inv.folders]
    if not chosen:
        raise UsageError("--passphrase-file: none of the folders joined is encrypted on the hub, and encryption "
                         "cannot be turned on for a folder that already has history")
    return {f: str(passphrase_file) for f in chosen}


def join(token: str, config_path: Path, *, folders: list[tuple[str, str]], device_name: str | None,
         now: float, passphrase_file: Path | None = None) -> Joined:
    """Set this device up from invite `token`. Raises InviteError (damaged, expired, used, a hub
    that is not the invite's: nothing written), UsageError (a config exists, bad --folder, an
    encrypted folder without --passphrase-file), ConfigError (a passphrase file others may read),
    HubUnreachable; FolderKeyProblem after joining if the passphrase does not open a key."""
    inv = decode_invite(token)
    if inv.expired(now):
        when = dt.datetime.fromtimestamp(inv.expires, dt.timezone.utc).isoformat(timespec="seconds")
        raise InviteError(f"this invite expired at {when}: ask for a new one (`shoal hub add-device`)")
    if config_path.exists():
        raise UsageError(f"{config_path} exists already: `shoal join` sets up a new device "
                         "(use --config for another file, or move that one away)")
    name = device_name or socket.gethostname() or "device"
    state_dir = default_state_dir()
    password_path = config_path.parent / PASSWORD_FILE
    ca_path = state_dir / CA_FILE if inv.ca_fingerprint else None
    # Refuse bad input (names, paths) before talking to the hub, so a refusal writes nothing.
    folders = folders or [("default", "~/Shoal")]
    given = [fid for fid, _ in folders]
    if passphrase_file is not None:
        passphrase_file = passphrase_file.expanduser().resolve()
    passphrases = _passphrase_files(inv, given, passphrase_file)
    text = default_config_text(name, _hub_url(inv, ca_path), folders, password_file=str(password_path),
                               passphrase_files=passphrases)
    parse_config_text(text, config_path.name, config_path.parent)
    with tempfile.TemporaryDirectory(prefix="shoal-join-") as tmp:
        check_ca = None
        if inv.ca_fingerprint:
            pem = _fetch_trusted_ca(inv)
            check_ca = Path(tmp) / CA_FILE
            check_ca.write_text(pem)
        password = _claim(inv, check_ca)
        # The invite is spent: from here on, write everything.
        if ca_path is not None:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_private(ca_path, pem)
    _write_private(password_path, password)
    write_new_config(config_path, text)
    setup = init_device(config_path)
    if passphrases:
        from shoal.app import LocalDevice
        from shoal.config import load_config
        from shoal.ops.folder_keys import check_folder_keys

        device = LocalDevice(load_config(config_path))
        try:
            check_folder_keys(device, tuple(passphrases))
        finally:
            device.close()
    return Joined(config_path, inv.hub_id, setup, tuple(f for f in given if f not in inv.folders),
                  tuple(f for f in inv.folders if f not in given), tuple(passphrases))
