"""core.sealing (SPEC "Encryption"): the folder key, blocks, paths and changelog rows as pure
functions. Round trips, determinism where the hub relies on it (dedup, compare-and-swap),
and refusal of everything a hostile hub could serve instead: a tampered, truncated or foreign
block, path or row, a row opened under another folder/device/incarnation/seq, a wrapped key
that is malformed or asks scrypt for more than the bounds (refused before scrypt runs).

scrypt runs with tiny parameters here (n=16): the format is the same, the cost is not."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import shoal.core.sealing as sealing
from shoal.core.blocks import block_ranges
from shoal.core.sealing import (BLOCK_OVERHEAD, KEY_BYTES, MAX_WRAPPED, SCRYPT_MAX_N, SCRYPT_MAX_P, SCRYPT_MAX_R,
                                FolderSealer, RowPlaintext, SealedRow, key_fingerprint, new_wrapped_key, padme,
                                sealed_block_size, sealed_size, unwrap_key, wrap_key)
from shoal.errors import FolderKeyProblem, SealBroken, WrongPassphrase

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
FOLDER = "docs"
DEV = "6f1c2a9e-0b7d-4c3a-9d1e-2f3a4b5c6d7e"
OTHER_DEV = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
INC = "11111111-2222-4333-8444-555555555555"
OTHER_INC = "99999999-8888-4777-8666-555555555555"
SMALL = {"n": 16, "r": 1, "p": 1}  # scrypt parameters that cost nothing
B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rng_bytes(seed: int = 0):
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


@pytest.fixture(scope="module")
def sealer() -> FolderSealer:
    return FolderSealer(KEY, FOLDER)


def flip(data: bytes, i: int, mask: int = 0x01) -> bytes:
    b = bytearray(data)
    b[i] ^= mask
    return bytes(b)


# -- Padmé ------------------------------------------------------------------------------------


def padme_reference(n: int) -> int:
    """Padmé as the paper states it (PURBs, Algorithm 1), written out independently."""
    if n < 2:
        return n
    e = 0
    while (1 << (e + 1)) <= n:
        e += 1
    s = 0
    while (1 << (s + 1)) <= e:
        s += 1
    s += 1
    step = 1 << (e - s)
    return -(-n // step) * step


@pytest.mark.parametrize("n, padded", [
    (0, 0), (1, 1), (2, 2), (3, 3), (7, 7), (8, 8), (9, 10), (15, 16), (17, 18), (100, 104),
    (129, 144), (1000, 1024), (1025, 1088), (4097, 4352), (131072, 131072), (131073, 135168),
    (10**6, 1015808), (2**40 + 1, 2**40 + 2**34),
])
def test_padme_table(n, padded):
    assert padme(n) == padded == padme_reference(n)


def test_padme_small_sizes_exhaustively():
    prev = 0
    for n in range(1 << 14):
        p = padme(n)
        assert p == padme_reference(n)
        assert p >= n and p >= prev  # never shrinks, monotonic
        assert p - n <= 0.12 * n  # at most 12% more, for every size
        assert padme(p) == p  # a padded size is its own padding
        prev = p


@FAST
@given(st.integers(min_value=1, max_value=2**62), st.integers(min_value=0, max_value=2**20))
def test_padme_properties(n, delta):
    p = padme(n)
    assert n <= p <= n + n * 12 // 100
    assert padme(n + delta) >= p
    assert padme(p) == p
    # only the top bits vary: p is a multiple of 2^(e - s)
    e = n.bit_length() - 1
    step = 1 << max(e - e.bit_length(), 0)
    assert p % step == 0


def test_padme_leaks_few_bits_of_a_size():
    """Sizes in [2^e, 2^(e+1)) map to at most 2^s + 1 padded sizes (s = floor(log2 e) + 1)."""
    for e in (10, 13, 17):
        outputs = {padme(n) for n in range(1 << e, 1 << (e + 1), max(1, (1 << e) // 4096))}
        assert len(outputs) <= 2 ** e.bit_length() + 1


# -- blocks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 100, 4096, 128 * 1024, 128 * 1024 + 1])
def test_block_round_trip_and_size(sealer, length):
    data = random.Random(length).randbytes(length)
    name, stored = sealer.seal_block(data)
    assert name == hashlib.sha256(stored).hexdigest()  # the hub checks a block against its name
    assert len(stored) == sealed_block_size(length) == BLOCK_OVERHEAD + padme(length)
    assert sealer.open_block(stored) == data
    if length >= 16:
        assert data not in stored


@FAST
@given(st.binary(max_size=3000))
def test_block_round_trip_deterministic(sealer, data):
    name, stored = sealer.seal_block(data)
    assert sealer.open_block(stored) == data
    assert sealer.seal_block(data) == (name, stored)
    assert FolderSealer(KEY, "another folder").seal_block(data) == (name, stored)  # a fresh sealer, same key
    other_name, other_stored = FolderSealer(OTHER_KEY, FOLDER).seal_block(data)
    assert other_name != name and other_stored != stored
    assert name != hashlib.sha256(data).hexdigest()  # the hub cannot confirm a guessed block


@FAST
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_different_blocks_have_different_names(sealer, a, b):
    assume(a != b)
    assert sealer.seal_block(a)[0] != sealer.seal_block(b)[0]


def test_sealed_size_is_what_the_blocks_take(sealer):
    for size in (0, 1, 5000, 128 * 1024, 300 * 1024 + 7):
        data = random.Random(size).randbytes(size)
        stored = [sealer.seal_block(data[o:o + n])[1] for o, n in block_ranges(size)]
        assert sealed_size(size) == sum(len(s) for s in stored)


@pytest.mark.parametrize("where", ["id", "ciphertext", "tag", "last"])
def test_tampered_block_is_refused(sealer, where):
    data = b"the block of a file nobody may change " * 40
    _, stored = sealer.seal_block(data)
    i = {"id": 5, "ciphertext": 40, "tag": len(stored) - 10, "last": len(stored) - 1}[where]
    for mask in (0x01, 0x80, 0xff):
        with pytest.raises(SealBroken):
            sealer.open_block(flip(stored, i, mask))


@pytest.mark.parametrize("cut", ["empty", "id only", "no tag", "one short", "one more", "doubled"])
def test_truncated_or_extended_block_is_refused(sealer, cut):
    _, stored = sealer.seal_block(b"x" * 1000)
    bad = {"empty": b"", "id only": stored[:32], "no tag": stored[:-16], "one short": stored[:-1],
           "one more": stored + b"\0", "doubled": stored + stored}[cut]
    with pytest.raises(SealBroken):
        sealer.open_block(bad)


def test_block_of_another_folder_key_is_refused(sealer):
    _, foreign = FolderSealer(OTHER_KEY, FOLDER).seal_block(b"from another folder")
    with pytest.raises(SealBroken):
        sealer.open_block(foreign)


def test_block_swapped_with_another_blocks_id_is_refused(sealer):
    """The id in front of a sealed block is its nonce and associated data: another block's id
    put in front of a sealed body does not open."""
    _, one = sealer.seal_block(b"one" * 100)
    _, two = sealer.seal_block(b"two" * 100)
    with pytest.raises(SealBroken):
        sealer.open_block(two[:32] + one[32:])


def test_block_whose_plaintext_does_not_match_its_id_is_refused(sealer):
    """White-box: an authentic encryption (made with the block key) of a plaintext under an id
    that is not that plaintext's, and one whose length prefix overstates it."""
    data = b"what the id says"
    bid = bytes(32)  # not HMAC(block-id key, data)
    body = len(data).to_bytes(4, "big") + data
    forged = bid + sealer._block.encrypt(bid[:12], body, bid)
    with pytest.raises(SealBroken, match="does not match its id"):
        sealer.open_block(forged)
    real = sealer.seal_block(data)[1][:32]
    overlong = (len(data) + 100).to_bytes(4, "big") + data
    with pytest.raises(SealBroken):
        sealer.open_block(real + sealer._block.encrypt(real[:12], overlong, real))


# -- content ids ------------------------------------------------------------------------------------


def test_content_ids(sealer):
    cid = sealer.content_id(SHA_A)
    assert re.fullmatch(r"[0-9a-f]{64}", cid)  # what the hub's hash columns accept
    assert cid == FolderSealer(KEY, "elsewhere").content_id(SHA_A)  # dedup across the key's folders
    assert cid != SHA_A and cid != sealer.content_id(SHA_B)
    assert cid != FolderSealer(OTHER_KEY, FOLDER).content_id(SHA_A)


@FAST
@given(st.binary(min_size=0, max_size=64))
def test_different_folder_keys_give_different_content_ids(data):
    sha = hashlib.sha256(data).hexdigest()
    a, b = FolderSealer(KEY, FOLDER).content_id(sha), FolderSealer(OTHER_KEY, FOLDER).content_id(sha)
    assert a != b and sha not in (a, b)


# -- paths -----------------------------------------------------------------------------------------

path_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1,
                    max_size=120)


@pytest.mark.parametrize("path", [
    "a", "notes/todo.txt", "Ünïcødé ñame/日本語.md", "emoji 🎉/x", "a" * 255 + "/" + "b" * 255,
    "trailing space ", "x/" * 500 + "deep", b"latin1-\xe9\xff".decode("utf-8", "surrogateescape"),
])
def test_path_round_trip(sealer, path):
    hub_path = sealer.seal_path(path)
    assert B64URL.fullmatch(hub_path)
    assert sealer.open_path(hub_path) == path
    assert FolderSealer(KEY, FOLDER).seal_path(path) == hub_path  # deterministic, not a cache artefact
    if len(path) > 4:
        assert path not in hub_path


@FAST
@given(path_text)
def test_path_round_trip_deterministic(sealer, path):
    hub_path = sealer.seal_path(path)
    assert sealer.open_path(hub_path) == path
    assert sealer.seal_path(path) == hub_path == FolderSealer(KEY, FOLDER).seal_path(path)
    assert FolderSealer(KEY, "other folder").seal_path(path) != hub_path
    assert FolderSealer(OTHER_KEY, FOLDER).seal_path(path) != hub_path


@FAST
@given(path_text, path_text)
def test_different_paths_have_different_hub_keys(sealer, a, b):
    assume(a != b)
    assert sealer.seal_path(a) != sealer.seal_path(b)


def test_path_lengths_are_padded(sealer):
    lengths = {len(sealer.seal_path("p" * n)) for n in range(1, 16)}
    assert len(lengths) == 1  # 1 to 15 bytes all look alike
    assert len(sealer.seal_path("p" * 15)) < len(sealer.seal_path("p" * 16))


@pytest.mark.parametrize("bad", ["", "!!!!", "AAAA", "not base64 at all", None, 5])
def test_malformed_hub_path_is_refused(sealer, bad):
    with pytest.raises(SealBroken):
        sealer.open_path(bad)


def test_tampered_or_foreign_hub_path_is_refused(sealer):
    hub_path = sealer.seal_path("secret/plan.txt")
    raw = base64.urlsafe_b64decode(hub_path + "=" * (-len(hub_path) % 4))
    for i in (0, 15, 16, len(raw) - 1):
        with pytest.raises(SealBroken):
            sealer.open_path(base64.urlsafe_b64encode(flip(raw, i)).decode().rstrip("="))
    with pytest.raises(SealBroken):
        sealer.open_path(FolderSealer(KEY, "other folder").seal_path("secret/plan.txt"))
    with pytest.raises(SealBroken):
        sealer.open_path(FolderSealer(OTHER_KEY, FOLDER).seal_path("secret/plan.txt"))


# -- changelog rows -------------------------------------------------------------------------------

ROW = RowPlaintext("Geheim/plan für Ørjan.txt", "file", 123_456, 1_111_222_333_444_555_666, SHA_A, False,
                   None, "Geheim/old name.txt", None)

rows = st.builds(
    RowPlaintext,
    path=path_text,
    kind=st.sampled_from(["file", "symlink"]),
    size=st.integers(min_value=0, max_value=2**40),  # sealed_size lists the blocks: 65536 at 1 TiB
    mtime_ns=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    sha256=st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest()),
    deleted=st.booleans(),
    target=st.none() | path_text,
    moved_from=st.none() | path_text,
    conflict_of=st.none() | path_text,
)


def seal(sealer, row=ROW, device=DEV, incarnation=INC, seq=7) -> SealedRow:
    return sealer.seal_row(row, device_id=device, incarnation=incarnation, seq=seq)


def test_row_round_trip_and_visible_columns(sealer):
    hub = seal(sealer)
    assert sealer.open_row(hub, device_id=DEV, incarnation=INC, seq=7) == ROW
    assert hub.path == sealer.seal_path(ROW.path)
    assert hub.sha256 == sealer.content_id(ROW.sha256) != ROW.sha256
    assert (hub.kind, hub.deleted) == ("file", False)
    assert hub.size == sealed_size(ROW.size) >= ROW.size
    for secret in (ROW.path, ROW.moved_from, "Ørjan", str(ROW.mtime_ns), str(ROW.size), ROW.sha256):
        assert secret.encode() not in hub.sealed
    # the device id's letter case is not part of its identity (a uuid)
    assert sealer.open_row(hub, device_id=DEV.upper(), incarnation=INC.upper(), seq=7) == ROW


@FAST
@given(rows, st.integers(min_value=0, max_value=2**62))
def test_row_round_trip_deterministic(sealer, row, seq):
    hub = seal(sealer, row, seq=seq)
    assert sealer.open_row(hub, device_id=DEV, incarnation=INC, seq=seq) == row
    assert seal(sealer, row, seq=seq) == hub
    assert hub.size == (0 if row.deleted or row.kind != "file" else sealed_size(row.size))


@pytest.mark.parametrize("opened_as", [
    {"device_id": OTHER_DEV}, {"incarnation": OTHER_INC}, {"seq": 8}, {"seq": 6}, {"seq": -7},
    {"seq": 7 + 2**32}, {"folder": "docs2"}, {"folder": "Docs"}, {"key": OTHER_KEY},
    {"device_id": OTHER_DEV, "incarnation": OTHER_INC},
])
def test_row_opened_as_another_row_fails(sealer, opened_as):
    """A row moved to another device, incarnation, seq or folder (or served to a folder with
    another key) does not open."""
    hub = seal(sealer)
    other = FolderSealer(opened_as.get("key", KEY), opened_as.get("folder", FOLDER))
    if "folder" in opened_as:
        hub = SealedRow(other.seal_path(ROW.path), hub.kind, hub.size, hub.sha256, hub.deleted, hub.sealed)
    with pytest.raises(SealBroken):
        other.open_row(hub, device_id=opened_as.get("device_id", DEV),
                       incarnation=opened_as.get("incarnation", INC), seq=opened_as.get("seq", 7))


def test_two_rows_payloads_swapped_fail(sealer):
    one = seal(sealer, seq=1)
    two = seal(sealer, RowPlaintext("other.txt", "file", 1, 2, SHA_B, False), seq=2)
    with pytest.raises(SealBroken):
        sealer.open_row(SealedRow(one.path, one.kind, one.size, one.sha256, one.deleted, two.sealed),
                        device_id=DEV, incarnation=INC, seq=1)
    with pytest.raises(SealBroken):  # the same payload under its visible columns, at the other seq
        sealer.open_row(two, device_id=DEV, incarnation=INC, seq=1)


@pytest.mark.parametrize("i", [0, 8, 15, 16, 20, -1])
def test_tampered_row_payload_fails(sealer, i):
    hub = seal(sealer)
    bad = SealedRow(hub.path, hub.kind, hub.size, hub.sha256, hub.deleted, flip(hub.sealed, i))
    with pytest.raises(SealBroken):
        sealer.open_row(bad, device_id=DEV, incarnation=INC, seq=7)


@pytest.mark.parametrize("payload", [b"", b"x" * 15, b"x" * 16])
def test_short_row_payload_fails(sealer, payload):
    hub = seal(sealer)
    with pytest.raises(SealBroken):
        sealer.open_row(SealedRow(hub.path, hub.kind, hub.size, hub.sha256, hub.deleted, payload),
                        device_id=DEV, incarnation=INC, seq=7)


@pytest.mark.parametrize("column, value", [
    ("path", "elsewhere"), ("path", "other"), ("kind", "symlink"), ("deleted", True),
    ("sha256", "other content"), ("sha256", SHA_A),
])
def test_row_with_altered_visible_columns_fails(sealer, column, value):
    hub = seal(sealer)
    if column == "path":
        value = sealer.seal_path(value)
    elif column == "sha256" and value != SHA_A:
        value = sealer.content_id(hashlib.sha256(value.encode()).hexdigest())
    bad = SealedRow(**{**hub.__dict__, column: value})
    with pytest.raises(SealBroken, match="visible columns"):
        sealer.open_row(bad, device_id=DEV, incarnation=INC, seq=7)


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"{}", b'{"p":"a"}',
    b'{"p":"a","k":"file","s":"1","m":0,"h":"x","d":false,"t":null,"mv":null,"co":null}',
    b'{"p":"a","k":"file","s":1,"m":0,"h":"x","d":0,"t":null,"mv":null,"co":null}',
    b'{"p":"a","k":"file","s":true,"m":0,"h":"x","d":false,"t":null,"mv":null,"co":null}',
    b'{"p":1,"k":"file","s":1,"m":0,"h":"x","d":false,"t":null,"mv":null,"co":null}',
    b'{"p":"a","k":"file","s":1,"m":1.5,"h":"x","d":false,"t":null,"mv":null,"co":null}',
    b"\xff\xfe",
])
def test_authentic_but_malformed_row_payload_fails(sealer, body):
    """White-box: a payload made with the row key (only a device could) that is not a row."""
    sealed = sealer._row.encrypt(body, sealer._row_aad(DEV, INC, 7))
    hub = SealedRow(sealer.seal_path("a"), "file", 0, sealer.content_id("x"), False, sealed)
    with pytest.raises(SealBroken):
        sealer.open_row(hub, device_id=DEV, incarnation=INC, seq=7)


# -- the folder key ---------------------------------------------------------------------------------


def test_new_key_wraps_and_unwraps():
    key, wrapped = new_wrapped_key("correct horse battery staple", rng_bytes(1), **SMALL)
    assert len(key) == KEY_BYTES and len(wrapped) <= MAX_WRAPPED
    assert unwrap_key(wrapped, "correct horse battery staple") == key
    w = json.loads(wrapped)
    assert (w["v"], w["kdf"], w["n"], w["r"], w["p"]) == (1, "scrypt", 16, 1, 1)
    text = wrapped.encode()
    assert b"correct horse" not in text and key not in text
    assert base64.urlsafe_b64encode(key).rstrip(b"=")[:20] not in text
    # a re-wrap (another passphrase, another salt) opens to the same key
    again = wrap_key(key, "ünïcødé passphrase 🔑", rng_bytes(2), **SMALL)
    assert again != wrapped and unwrap_key(again, "ünïcødé passphrase 🔑") == key
    assert new_wrapped_key("correct horse battery staple", rng_bytes(3), **SMALL)[0] != key


def test_default_scrypt_cost_is_within_the_bounds_a_device_accepts():
    assert 2 <= sealing.SCRYPT_N <= SCRYPT_MAX_N and sealing.SCRYPT_R <= SCRYPT_MAX_R
    assert sealing.SCRYPT_P <= SCRYPT_MAX_P and sealing.SCRYPT_N >= 1 << 15


@pytest.mark.parametrize("wrong", ["", "correct horse battery stapl", "Correct horse battery staple",
                                   "correct horse battery staple ", "💣"])
def test_wrong_passphrase(wrong):
    _, wrapped = new_wrapped_key("correct horse battery staple", rng_bytes(4), **SMALL)
    with pytest.raises(WrongPassphrase) as info:
        unwrap_key(wrapped, wrong)
    assert not isinstance(info.value, SealBroken)
    assert isinstance(info.value, FolderKeyProblem)


def test_a_key_wrapped_for_another_purpose_does_not_open():
    """The wrapping is authenticated with its own associated data: the sealed key cannot be
    moved into another wrapped key's place and opened as something else."""
    key, wrapped = new_wrapped_key("pw", rng_bytes(5), **SMALL)
    w = json.loads(wrapped)
    other_key, other = new_wrapped_key("pw", rng_bytes(6), **SMALL)
    o = json.loads(other)
    mixed = json.dumps({**w, "key": o["key"]})  # another key's ciphertext under this salt/nonce
    with pytest.raises(WrongPassphrase):
        unwrap_key(mixed, "pw")


def _wrapped(**changes) -> str:
    _, wrapped = new_wrapped_key("pw", rng_bytes(7), **SMALL)
    w = json.loads(wrapped)
    for k, v in changes.items():
        if v is KeyError:
            del w[k]
        else:
            w[k] = v
    return json.dumps(w)


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(bytes(n)).decode().rstrip("=")


MALFORMED = {
    "empty": "",
    "not json": "{nope",
    "json list": "[1, 2, 3]",
    "json string": '"hello"',
    "json null": "null",
    "json number": "42",
    "too long": _wrapped(pad="x" * 2000),
    "no n": _wrapped(n=KeyError),
    "no salt": _wrapped(salt=KeyError),
    "no key": _wrapped(key=KeyError),
    "version 2": _wrapped(v=2),
    "argon2": _wrapped(kdf="argon2id"),
    "huge n": _wrapped(n=1 << 40),
    "n just over the bound": _wrapped(n=SCRYPT_MAX_N * 2),
    "n not a power of two": _wrapped(n=1000),
    "n zero": _wrapped(n=0),
    "n one": _wrapped(n=1),
    "n negative": _wrapped(n=-16),
    "n float": _wrapped(n=16.0),
    "n string": _wrapped(n="16"),
    "n bool": _wrapped(n=True),
    "huge r": _wrapped(r=1 << 30),
    "r over the bound": _wrapped(r=SCRYPT_MAX_R + 1),
    "r zero": _wrapped(r=0),
    "huge p": _wrapped(p=1 << 30),
    "p over the bound": _wrapped(p=SCRYPT_MAX_P + 1),
    "p zero": _wrapped(p=0),
    "salt short": _wrapped(salt=_b64(7)),
    "salt not base64": _wrapped(salt="!!!!"),
    "salt number": _wrapped(salt=12345),
    "nonce short": _wrapped(nonce=_b64(11)),
    "nonce long": _wrapped(nonce=_b64(16)),
    "nonce list": _wrapped(nonce=[1, 2]),
    "key short": _wrapped(key=_b64(KEY_BYTES + 15)),
    "key long": _wrapped(key=_b64(KEY_BYTES + 17)),
    "key null": _wrapped(key=None),
}


@pytest.fixture
def scrypt_calls(monkeypatch):
    """Every scrypt the code under test runs, as (n, r, p); it still runs (for small n)."""
    calls = []
    real = sealing.Scrypt

    def spy(*, salt, length, n, r, p):
        calls.append((n, r, p))
        assert n * r <= 1 << 16, f"scrypt asked for {128 * n * r} bytes"
        return real(salt=salt, length=length, n=n, r=r, p=p)

    monkeypatch.setattr(sealing, "Scrypt", spy)
    return calls


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_wrapped_key_is_refused_before_scrypt(name, scrypt_calls):
    with pytest.raises(SealBroken) as info:
        unwrap_key(MALFORMED[name], "pw")
    assert not isinstance(info.value, WrongPassphrase)
    assert scrypt_calls == []  # refused before any memory was asked for
    assert "pw" not in str(info.value).split("(")[0]


def test_well_formed_key_still_opens_with_the_spy(scrypt_calls):
    key, wrapped = new_wrapped_key("pw", rng_bytes(8), **SMALL)
    scrypt_calls.clear()
    assert unwrap_key(wrapped, "pw") == key
    assert scrypt_calls == [(16, 1, 1)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@FAST
@given(st.fixed_dictionaries({}, optional={
    "v": st.sampled_from([1, 2, "1"]) | json_values, "kdf": st.sampled_from(["scrypt", "pbkdf2"]) | json_values,
    "n": st.sampled_from([2, 16, 1 << 40]) | st.integers(), "r": st.integers(-2, 1 << 40),
    "p": st.integers(-2, 1 << 40), "salt": st.just(_b64(16)) | json_values,
    "nonce": st.just(_b64(12)) | json_values, "key": st.just(_b64(48)) | json_values,
}) | json_values)
def test_any_wrapped_key_is_opened_or_refused_cleanly(value):
    """Whatever JSON the hub holds: SealBroken or WrongPassphrase, never another exception and
    never a costly scrypt (a small n is all this strategy can reach within the bounds)."""
    if isinstance(value, dict) and isinstance(value.get("n"), int) and isinstance(value.get("r"), int):
        assume(value["n"] * value["r"] <= 1 << 12)  # within the bounds, scrypt is real: keep it cheap
    try:
        unwrap_key(json.dumps(value), "pw")
    except (SealBroken, WrongPassphrase):
        pass


@FAST
@given(st.text(max_size=300))
def test_any_text_as_wrapped_key_is_refused_cleanly(text):
    with pytest.raises((SealBroken, WrongPassphrase)):
        unwrap_key(text, "pw")


def test_key_fingerprint():
    fp = key_fingerprint(KEY)
    assert re.fullmatch(r"[0-9a-f]{32}", fp) and fp == key_fingerprint(KEY) != key_fingerprint(OTHER_KEY)
    assert KEY.hex()[:32] != fp


@pytest.mark.parametrize("n", [0, 16, 31, 33, 64])
def test_folder_sealer_wants_a_32_byte_key(n):
    with pytest.raises(ValueError):
        FolderSealer(bytes(n), FOLDER)


def test_the_bounds_on_a_wrapped_key_cap_memory_and_time():
    assert 128 * SCRYPT_MAX_R * SCRYPT_MAX_N * SCRYPT_MAX_P <= 128 << 20


def test_a_key_that_needs_more_memory_than_there_is_is_a_folder_problem(monkeypatch):
    wrapped = sealing.wrap_key(bytes(32), "pw", os.urandom, n=1 << 10, r=1, p=1)

    def no_memory(*a, **kw):
        raise MemoryError

    monkeypatch.setattr(sealing, "_kek", no_memory)
    with pytest.raises(SealBroken, match="more memory"):
        sealing.unwrap_key(wrapped, "pw")


def test_sealed_size_of_a_hostile_size_is_arithmetic():
    import time

    t = time.perf_counter()
    assert sealing.sealed_size(2**50) > 2**50
    assert time.perf_counter() - t < 0.1
    for size in (0, 1, 128 * 1024, 128 * 1024 + 1, 300_000, 5 << 30):
        from shoal.core.blocks import block_ranges

        assert sealing.sealed_size(size) == sum(sealing.sealed_block_size(n) for _, n in block_ranges(size))
