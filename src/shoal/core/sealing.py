"""End-to-end encryption of a folder (SPEC "Encryption", DESIGN "Encryption"): keys, blocks,
paths and changelog rows, as pure functions over bytes. Randomness is passed in.

- A random 32-byte folder key is wrapped (AES-256-GCM) under a key derived from the passphrase
  by scrypt; the wrapped key and the scrypt parameters are kept on the hub as one JSON text.
- HKDF-SHA-256 derives one sub-key per purpose from the folder key.
- A block's id is HMAC-SHA-256(block-id key, plaintext): equal blocks of the folder dedup, and
  nobody without the key can confirm a guessed file. The block is sealed with AES-256-GCM, its
  id as associated data and as the (synthetic) nonce, so sealing is deterministic: the sealed
  block's SHA-256 names it on the hub, which checks what it stores as for any block. Opening
  checks the id against the decrypted plaintext.
- A content (whole file) is named on the hub by HMAC(content key, its SHA-256).
- Paths are sealed with AES-SIV (deterministic: equal paths give equal hub keys, so the hub's
  compare-and-swap still detects concurrent edits), padded to 16 bytes.
- A changelog row's plaintext (path, size, mtime, SHA-256, symlink target, rename and conflict
  origins) is sealed with AES-SIV with the folder, device, incarnation and seq as associated
  data: the hub cannot move a row to another device or seq, nor swap two rows' contents.
  Opening also checks the hub's visible columns (path key, kind, deleted, content id) against
  the sealed plaintext.
- Lengths are padded (Padmé: at most 12% more, leaking O(log log n) bits of a size).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from shoal.core.blocks import block_size_for
from shoal.model import CONTENT_KINDS
from shoal.errors import SealBroken, WrongPassphrase

KEY_BYTES = 32
#: scrypt's cost for new keys: 64 MiB and about a quarter of a second, once per process.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 16, 8, 1
#: What a wrapped key from the hub may ask of a device (a hostile hub must not exhaust memory or
#: time): at most 128 MiB (128 * r * n bytes) and twice the work of the default.
SCRYPT_MAX_N, SCRYPT_MAX_R, SCRYPT_MAX_P = 1 << 17, 8, 1
_WRAP_AAD = b"shoal folder key v1"
BLOCK_OVERHEAD = 32 + 4 + 16  # id, length, GCM tag
MAX_WRAPPED = 1000  # bytes of a wrapped key's JSON


def padme(n: int) -> int:
    """Padmé (PURBs, Nikitin et al. 2019): `n` rounded up so that only its top bits vary."""
    if n < 2:
        return n
    e = n.bit_length() - 1  # floor(log2 n)
    s = e.bit_length()  # floor(log2 e) + 1
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


def sealed_block_size(length: int) -> int:
    """The bytes a sealed block of `length` plaintext bytes takes on the hub."""
    return BLOCK_OVERHEAD + padme(length)


def sealed_size(size: int) -> int:
    """The bytes a sealed content of `size` plaintext bytes takes on the hub: what the hub sees
    of a file's size (rounded up, so similar sizes look alike)."""
    if size <= 0:
        return 0
    block = block_size_for(size)
    full, rest = divmod(size, block)  # arithmetic: a hostile size must not build a list of blocks
    return full * sealed_block_size(block) + (sealed_block_size(rest) if rest else 0)


# -- the folder key ------------------------------------------------------------------------


def new_wrapped_key(passphrase: str, random_bytes: Callable[[int], bytes], *,
                    n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> tuple[bytes, str]:
    """A new random folder key and its wrapping under `passphrase` (the text kept on the hub)."""
    key = random_bytes(KEY_BYTES)
    return key, wrap_key(key, passphrase, random_bytes, n=n, r=r, p=p)


def wrap_key(key: bytes, passphrase: str, random_bytes: Callable[[int], bytes], *,
             n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt, nonce = random_bytes(16), random_bytes(12)
    kek = _kek(passphrase, salt, n, r, p)
    sealed = AESGCM(kek).encrypt(nonce, key, _WRAP_AAD)
    return json.dumps({"v": 1, "kdf": "scrypt", "n": n, "r": r, "p": p, "salt": _b64(salt),
                       "nonce": _b64(nonce), "key": _b64(sealed)}, separators=(",", ":"))


def unwrap_key(wrapped: str, passphrase: str) -> bytes:
    """The folder key. Raises WrongPassphrase if the passphrase does not open it, SealBroken
    if the wrapped key is malformed (or asks for more than SCRYPT_MAX_*)."""
    try:
        if len(wrapped) > MAX_WRAPPED:
            raise ValueError("too long")
        w = json.loads(wrapped)
        n, r, p = w["n"], w["r"], w["p"]
        if (w["v"], w["kdf"]) != (1, "scrypt") or not all(type(x) is int for x in (n, r, p)):
            raise ValueError("unknown format")
        if not (2 <= n <= SCRYPT_MAX_N and n & (n - 1) == 0 and 1 <= r <= SCRYPT_MAX_R and 1 <= p <= SCRYPT_MAX_P):
            raise ValueError("scrypt parameters out of bounds")
        salt, nonce, sealed = _unb64(w["salt"]), _unb64(w["nonce"]), _unb64(w["key"])
        if len(nonce) != 12 or len(salt) < 8 or len(sealed) != KEY_BYTES + 16:
            raise ValueError("wrong lengths")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SealBroken(f"the folder's wrapped key on the hub is malformed ({e})") from None
    try:
        return AESGCM(_kek(passphrase, salt, n, r, p)).decrypt(nonce, sealed, _WRAP_AAD)
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase: it does not open the folder's key on the hub") from None
    except MemoryError:
        raise SealBroken(f"opening the folder's key needs more memory than this device has (scrypt n={n}, "
                         f"r={r})") from None


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def key_fingerprint(key: bytes) -> str:
    """A short public name of a folder key (to notice the hub swapping it)."""
    return hmac.new(key, b"shoal key fingerprint", hashlib.sha256).hexdigest()[:32]


# -- sealing a folder's data ---------------------------------------------------------------


@dataclass(frozen=True)
class SealedRow:
    """A changelog row as the hub sees it: its visible columns and its sealed payload."""

    path: str
    kind: str
    size: int
    sha256: str
    deleted: bool
    sealed: bytes


@dataclass(frozen=True)
class RowPlaintext:
    """What a sealed row hides: every value a device needs to apply the change."""

    path: str
    kind: str
    size: int
    mtime_ns: int
    sha256: str
    deleted: bool
    target: str | None = None
    moved_from: str | None = None
    conflict_of: str | None = None


class FolderSealer:
    """The sub-keys of one folder key and everything sealed with them."""

    def __init__(self, folder_key: bytes, folder_id: str):
        if len(folder_key) != KEY_BYTES:
            raise ValueError("a folder key is 32 bytes")
        self.folder_id = folder_id
        self._folder = folder_id.encode("utf-8")
        self._block_id = _hkdf(folder_key, b"block id", 32)
        self._block = AESGCM(_hkdf(folder_key, b"block", 32))
        self._content = _hkdf(folder_key, b"content id", 32)
        self._path = AESSIV(_hkdf(folder_key, b"path", 64))
        self._row = AESSIV(_hkdf(folder_key, b"row", 64))
        self._path_cache: dict[str, str] = {}

    # contents and blocks

    def content_id(self, sha256_hex: str) -> str:
        """The hub's name of a content (a file's SHA-256 as hex, or any text, e.g. a symlink's)."""
        return hmac.new(self._content, sha256_hex.encode("ascii", "surrogateescape"), hashlib.sha256).hexdigest()

    def seal_block(self, data: bytes) -> tuple[str, bytes]:
        """(hub name, sealed bytes) of a plaintext block; the same for the same block."""
        bid = hmac.new(self._block_id, data, hashlib.sha256).digest()
        padded = len(data).to_bytes(4, "big") + data + bytes(padme(len(data)) - len(data))
        sealed = bid + self._block.encrypt(bid[:12], padded, bid)
        return hashlib.sha256(sealed).hexdigest(), sealed

    def open_block(self, sealed: bytes) -> bytes:
        """The plaintext of a sealed block. Raises SealBroken unless it decrypts and its
        plaintext has its id."""
        bid = sealed[:32]
        try:
            padded = self._block.decrypt(bid[:12], sealed[32:], bid)
        except (InvalidTag, ValueError):
            raise SealBroken("a block from the hub fails its authentication (tampered?)") from None
        n = int.from_bytes(padded[:4], "big")
        data = padded[4:4 + n]
        if len(data) != n or not hmac.compare_digest(hmac.new(self._block_id, data, hashlib.sha256).digest(), bid):
            raise SealBroken("a block from the hub does not match its id (tampered?)")
        return data

    # paths and rows

    def seal_path(self, path: str) -> str:
        """The hub's key of a path: deterministic, base64url."""
        got = self._path_cache.get(path)
        if got is None:
            raw = path.encode("utf-8", "surrogateescape")
            raw += bytes(-(len(raw) + 1) % 16 + 1)  # NUL padding (a path holds no NUL)
            got = _b64(self._path.encrypt(raw, [b"path", self._folder]))
            if len(self._path_cache) > 100_000:
                self._path_cache.clear()
            self._path_cache[path] = got
        return got

    def open_path(self, sealed: str) -> str:
        try:
            raw = self._path.decrypt(_unb64(sealed), [b"path", self._folder])
        except (InvalidTag, ValueError):
            raise SealBroken("a path from the hub fails its authentication (tampered?)") from None
        return raw.rstrip(b"\0").decode("utf-8", "surrogateescape")

    def _row_aad(self, device_id: str, incarnation: str, seq: int) -> list[bytes]:
        return [b"row v1", self._folder, device_id.lower().encode("ascii"), incarnation.lower().encode("ascii"),
                seq.to_bytes(8, "big", signed=True)]

    def visible_size(self, row: RowPlaintext) -> int:
        """The size the hub sees: the content's sealed size (0 for deletions and symlinks)."""
        if row.deleted or row.kind not in CONTENT_KINDS:
            return 0
        return sealed_size(row.size)

    def seal_row(self, row: RowPlaintext, *, device_id: str, incarnation: str, seq: int) -> SealedRow:
        body = json.dumps({"p": row.path, "k": row.kind, "s": row.size, "m": row.mtime_ns, "h": row.sha256,
                           "d": row.deleted, "t": row.target, "mv": row.moved_from, "co": row.conflict_of},
                          separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")
        sealed = self._row.encrypt(body, self._row_aad(device_id, incarnation, seq))
        return SealedRow(self.seal_path(row.path), row.kind, self.visible_size(row), self.content_id(row.sha256),
                         row.deleted, sealed)

    def open_row(self, hub: SealedRow, *, device_id: str, incarnation: str, seq: int) -> RowPlaintext:
        """The plaintext of a row the hub serves. Raises SealBroken if the payload fails its
        authentication for this (folder, device, incarnation, seq), or if the hub's visible
        columns are not the ones it was pushed with."""
        try:
            body = self._row.decrypt(bytes(hub.sealed), self._row_aad(device_id, incarnation, seq))
        except (InvalidTag, ValueError):
            raise SealBroken(f"a changelog row of device {device_id[:8]} (seq {seq}) fails its authentication: "
                             "tampered, moved to another device or seq, or replayed") from None
        try:
            d = json.loads(body.decode("utf-8", "surrogateescape"))
            row = RowPlaintext(d["p"], d["k"], d["s"], d["m"], d["h"], d["d"], d["t"], d["mv"], d["co"])
            for value, kind in ((row.path, str), (row.kind, str), (row.size, int), (row.mtime_ns, int),
                                (row.sha256, str), (row.deleted, bool)):
                if type(value) is not kind:
                    raise ValueError("wrong type")
        except (ValueError, KeyError, TypeError):
            raise SealBroken("a changelog row's sealed payload is malformed") from None
        if (hub.path, hub.kind, hub.deleted, hub.sha256) != (
                self.seal_path(row.path), row.kind, row.deleted, self.content_id(row.sha256)):
            raise SealBroken(f"the hub altered the visible columns of a changelog row of device {device_id[:8]}")
        return row


def _hkdf(key: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=b"shoal v1 " + purpose).derive(key)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
