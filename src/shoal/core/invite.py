"""Invite tokens: what `shoal hub add-device` prints and `shoal join` reads.

A token is `shoal1.` + base64url (no padding) of a compact JSON object. Everything in it is
checked on decoding, because a token is pasted from a chat or scanned from a screen: hosts,
port, login, password, database, hub id, CA fingerprint, folder ids and the expiry must each
be of the right type and shape, else InviteError. Pure: no I/O, the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from shoal.errors import InviteError

PREFIX = "shoal1."
MAX_TOKEN = 4096
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
                   r"|\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f:]{2,39})$")
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DB = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_FOLDER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


@dataclass(frozen=True)
class Invite:
    hosts: tuple[str, ...]   # where the hub is reached, tried in order
    port: int
    dbname: str
    role: str                # the new device's login
    password: str            # one-time: replaced by the device's own on joining
    hub_id: str
    ca_fingerprint: str | None  # SHA-256 of the hub CA's DER; None: a hub with a public certificate
    folders: tuple[str, ...]
    expires: int             # epoch seconds
    sslmode: str = "verify-ca"
    encrypted: tuple[str, ...] = ()  # the offered folders that are end-to-end encrypted

    def expired(self, now: float) -> bool:
        return now >= self.expires


def encode_invite(inv: Invite) -> str:
    """The token of an invite. Raises InviteError if a field is out of shape (never encodes
    what decode_invite would refuse)."""
    body = {"h": list(inv.hosts), "p": inv.port, "d": inv.dbname, "u": inv.role, "w": inv.password,
            "i": inv.hub_id, "f": inv.ca_fingerprint, "s": list(inv.folders), "e": inv.expires,
            "m": inv.sslmode}
    if inv.encrypted:
        body["x"] = list(inv.encrypted)
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    token = PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    decode_invite(token)
    return token


def decode_invite(token: str) -> Invite:
    """The invite a token carries. Raises InviteError (with what is wrong) for anything else."""
    token = token.strip()
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN:
        raise InviteError("not a shoal invite (it starts with 'shoal1.'; copy the whole token)")
    data = token[len(PREFIX):]
    try:
        body = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, binascii.Error):
        raise InviteError("the invite is damaged (copy the whole token)") from None
    if not isinstance(body, dict):
        raise InviteError("the invite is damaged (copy the whole token)")

    def field(key: str, kind: type, check=None, what: str = ""):
        value = body.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (check is not None and not check(value)):
            raise InviteError(f"the invite is damaged: {what or key} is not valid")
        return value

    hosts = field("h", list, lambda v: 1 <= len(v) <= 16 and all(isinstance(h, str) and _HOST.match(h) for h in v),
                  "the hub address")
    port = field("p", int, lambda v: 1 <= v <= 65535, "the port")
    folders = tuple(field("s", list, lambda v: len(v) <= 256 and all(isinstance(f, str) and _FOLDER.match(f)
                                                                    for f in v), "the folder list"))
    encrypted = body.get("x", [])
    if not (isinstance(encrypted, list) and all(isinstance(f, str) and f in folders for f in encrypted)):
        raise InviteError("the invite is damaged: the list of encrypted folders is not valid")
    fp = body.get("f")
    if fp is not None and not (isinstance(fp, str) and _HEX64.match(fp)):
        raise InviteError("the invite is damaged: the CA fingerprint is not valid")
    return Invite(
        hosts=tuple(hosts), port=port,
        dbname=field("d", str, _DB.match, "the database"),
        role=field("u", str, _ROLE.match, "the login"),
        password=field("w", str, _PASSWORD.match, "the password"),
        hub_id=field("i", str, _UUID.match, "the hub id"),
        ca_fingerprint=fp,
        folders=folders,
        expires=field("e", int, lambda v: 0 < v < 2**40, "the expiry"),
        sslmode=field("m", str, lambda v: v in ("verify-ca", "verify-full"), "the TLS mode"),
        encrypted=tuple(encrypted),
    )
