"""End-to-end encrypted folders against their hub (SPEC "Encryption"): the hub's superuser
reads every table and finds no name, no content and no mtime; and what it can do to the data
(tamper a block or a changelog row, move a row to another device or seq, replay an old row,
alter a sealed row's visible columns, slip in an unsealed row) is noticed by the device that
reads it: the folder's sync stops with an "encryption: " pause and nothing is written (a
tampered block: that file is not written and its error is recorded).

One hub and three device logins serve the whole module (making them costs seconds); each test
syncs a folder of its own (a new folder id: a new folder key) through the same devices."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools
import hashlib
import os
import random
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from shoal.core.blocks import block_ranges
import shoal.core.sealing as sealing
import shoal.sync.sealed as sealed_mod
from shoal.core.guards import KEY_PAUSE_PREFIX
from shoal.core.sealing import FolderSealer, unwrap_key
from shoal.model import ErrorKind
from shoal.sync.engine import SyncEngine

from tests.devices import Device, assert_converged, sync_all
from tests.fixtures.devices import TEST_PASSPHRASE
from tests.fixtures.hubs import TestHub, new_hub

PASSPHRASE = TEST_PASSPHRASE


# -- the module's hub and devices ------------------------------------------------------------


@dataclasses.dataclass
class World:
    hub: TestHub
    devices: dict[str, Device]
    sealers: dict[str, FolderSealer] = dataclasses.field(default_factory=dict)

    def owner(self) -> psycopg.Connection:
        return psycopg.connect(self.hub.owner_url, autocommit=True, row_factory=dict_row)


@pytest.fixture(scope="module", autouse=True)
def cheap_scrypt():
    """New folder keys are wrapped with a cheap scrypt here (n = 2^10; the format is the same):
    the attacks are on what the key protects, not on the passphrase, and each test's folder
    key is made once and opened three or four times."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sealed_mod, "new_wrapped_key", functools.partial(sealing.new_wrapped_key, n=1 << 10, r=8, p=1))
        yield


@pytest.fixture(scope="module")
def world(pg_server, tmp_path_factory, cheap_scrypt):
    base = tmp_path_factory.mktemp("attacks")
    hub = new_hub(pg_server, base / "logins")
    devices: dict[str, Device] = {}
    try:
        for name in ("alpha", "beta", "gamma"):
            devices[name] = d = Device(base, name, hub, passphrase=PASSPHRASE, folder_id="setup")
            d.sync()  # registers the device with the hub
        yield World(hub, devices)
    finally:
        for d in devices.values():
            d.close()
        hub.drop()


def on_folder(d: Device, folder_id: str) -> Device:
    """Device `d` (its store, login and passphrase) syncing a new folder `folder_id` instead."""
    v = object.__new__(Device)
    v.__dict__.update(d.__dict__)
    v.folder_id = folder_id
    v.root = d.root.parent / "folders" / folder_id
    v.root.mkdir(parents=True)
    v.config = dataclasses.replace(
        d.config, folders=(dataclasses.replace(d.config.folders[0], id=folder_id, path=v.root),))
    v.engine = SyncEngine(v.config, v.store, v.hub)
    return v


def restarted(d: Device) -> Device:
    """`d` with a new engine (as after a restart of its daemon: no key opened yet)."""
    v = object.__new__(Device)
    v.__dict__.update(d.__dict__)
    v.engine = SyncEngine(v.config, v.store, v.hub)
    return v


@pytest.fixture
def trio(world):
    """alpha, beta and gamma on a folder of this test's own."""
    fid = "t-" + uuid.uuid4().hex[:10]
    return [on_folder(world.devices[n], fid) for n in ("alpha", "beta", "gamma")]


def sealer_of(world: World, folder_id: str) -> FolderSealer:
    """The folder's sealer, from the wrapped key on the hub and the passphrase (the test knows it)."""
    if folder_id not in world.sealers:
        with world.owner() as conn:
            wrapped = conn.execute("SELECT sealed_key FROM shoal.folders WHERE folder_id = %s",
                                   (folder_id,)).fetchone()["sealed_key"]
        world.sealers[folder_id] = FolderSealer(unwrap_key(wrapped, PASSPHRASE), folder_id)
    return world.sealers[folder_id]


def changes_of(conn, folder_id: str) -> list[dict]:
    return conn.execute("SELECT * FROM shoal.changes WHERE folder_id = %s ORDER BY id", (folder_id,)).fetchall()


def row_of(world: World, d: Device, path: str) -> dict:
    """The hub's latest changelog row of `path` (found through its sealed path)."""
    hub_path = sealer_of(world, d.folder_id).seal_path(path)
    with world.owner() as conn:
        rows = [r for r in changes_of(conn, d.folder_id) if r["path"] == hub_path]
    assert rows, f"no row of {path} on the hub"
    return rows[-1]


def assert_refused(d: Device, before: dict[str, str]) -> None:
    """`d` syncs (twice): the folder is paused with an encryption reason, nothing in it changed."""
    for _ in range(2):
        report = d.sync()
        fr = report.folders[0]
        assert fr.paused is not None and fr.paused.startswith(KEY_PAUSE_PREFIX), fr
        assert d.store.folder(d.folder_id).paused == fr.paused
        assert fr.written == 0 and fr.deleted == 0
        assert d.files() == before, "the folder changed"
        assert not report.ok
    tmp = d.root / ".shoal" / "tmp"
    assert not (tmp.exists() and any(tmp.iterdir())), "something was downloaded"


# -- what the hub's administrator can read ---------------------------------------------------------


def _pattern(seed: str, n: int) -> bytes:
    r = random.Random(seed)
    return r.randbytes(n)


def _text(seed: str, lines: int) -> bytes:
    return "".join(f"{seed} Zeile {i:04d}: Kanarienvogel-Geheimnis quokka-{i * 7919 % 10007}\n"
                   for i in range(lines)).encode()


def _needles(data: bytes) -> list[bytes]:
    """Distinctive pieces of a content: itself if short, else windows at the start, the end and
    every block boundary and middle; as raw bytes, hex and base64 (three alignments)."""
    pieces = [data] if len(data) <= 48 else []
    if len(data) > 48:
        offsets = {0, len(data) - 48}
        for off, length in block_ranges(len(data)):
            offsets |= {off, off + length // 2}
        pieces += [data[o:o + 48] for o in sorted(offsets) if o + 48 <= len(data)]
    return [n for p in pieces for n in _encodings(p)]


def _encodings(raw: bytes) -> list[bytes]:
    """`raw` as raw bytes, hex, and base64 in both alphabets at the three alignments it can
    have inside a longer encoded text (a partial last group dropped)."""
    out = [raw.hex().encode()]
    for shift in range(3):
        b = base64.b64encode(raw[shift:])
        b = b[:len(raw[shift:]) // 3 * 4]
        out += [b, b.replace(b"+", b"-").replace(b"/", b"_")]
    return [raw] + [n for n in out if len(n) >= 8]


def _mtime_needles(ns: int) -> list[bytes]:
    s = ns // 10**9
    utc = datetime.datetime.fromtimestamp(s, datetime.UTC)
    out = [str(v).encode() for v in (ns, s, ns // 10**6, ns // 10**3)]
    out += [v.to_bytes(8, order) for v in (ns, s) for order in ("big", "little")]
    out += [utc.strftime(f).encode() for f in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")]
    return out


def dump_hub(conn) -> dict[str, bytes]:
    """Every column of every table of the hub's database outside the system catalogs (schema
    shoal and any other; found in pg_catalog), as the superuser reads it: `schema.table.column`
    -> all its values (bytea raw, everything else as text), and `schema.table (COPY)` -> the
    table's text dump (bytea as hex, arrays, timestamps)."""
    tables = [(r["nspname"], r["relname"]) for r in conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1, 2")]
    dump: dict[str, bytes] = {}
    for schema, table in tables:
        ident = sql.Identifier(schema, table)
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql.SQL("SELECT * FROM {}").format(ident))
            names = [d.name for d in cur.description]
            values: dict[str, list[bytes]] = {n: [] for n in names}
            for row in cur:
                for name, value in zip(names, row):
                    values[name].append(_as_bytes(value))
        with conn.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(ident)) as copy:
            dump[f"{schema}.{table} (COPY)"] = b"".join(bytes(chunk) for chunk in copy)
        for name in names:
            dump[f"{schema}.{table}.{name}"] = b"\0".join(values[name])
    return dump


def _as_bytes(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return b"\0".join(_as_bytes(v) for v in value)
    return str(value).encode("utf-8", "surrogateescape")


def test_hub_dump_holds_no_name_content_or_mtime(world, trio):
    """The superuser reads every row of every table of schema shoal after files with known
    names, contents and mtimes were synced (added, renamed, deleted, in conflict, a symlink, a
    multi-block file): none of the names, contents, content or block hashes, or mtimes is there."""
    a, b, _ = trio
    files = {
        "Geheimnisse/Überraschungs-Party für Ørjan 🎉.txt": _text("Party", 120),
        "日本語フォルダ/秘密のメモ-ﾃｽﾄ.md": "極秘メモ: 火曜日に金庫を開ける。暗証番号は 4-8-15-16-23-42\n".encode() * 40,
        "Finanzen-Wombat/Kontoauszug-Quokka-2004.csv": _text("Konto", 60),
        "winzig-Axolotl.txt": b"tiny secret: xyzzy-plugh-Axolotl",
        "Medien-Kakapo/großes-Video-Ψ.bin": _pattern("big", 300 * 1024 + 123),  # three blocks
        "zu-löschen-Pangolin.txt": _text("Loeschen", 30),
        "Konflikt-Narwal.txt": _text("Basis", 20),
    }
    mtimes: dict[str, int] = {}
    for i, (path, data) in enumerate(files.items()):
        mtimes[path] = 1_087_654_321_123_456_789 + i * 1_000_003_007_011  # June 2004, odd ns
        a.write(path, data)
        os.utime(a.root / path, ns=(mtimes[path], mtimes[path]))
    link_target = "Geheimnisse/Schatzkarte-Ziel-💎.txt"
    os.symlink(link_target, a.root / "Verknüpfung-zum-Schatz")
    link_mtime = 1_088_888_888_777_666_555
    os.utime(a.root / "Verknüpfung-zum-Schatz", ns=(link_mtime, link_mtime), follow_symlinks=False)
    sync_all([a, b])
    # a rename, a deletion and a concurrent edit (a conflict copy with conflict_of)
    os.rename(a.root / "winzig-Axolotl.txt", a.root / "umbenannt-Capybara-ß.txt")
    (a.root / "zu-löschen-Pangolin.txt").unlink()
    conflict = {"alpha": _text("Alpha-Fassung", 25), "beta": _text("Beta-Fassung", 25)}
    for d, ns in ((a, 1_090_000_000_555_444_333), (b, 1_090_000_111_222_333_444)):
        d.write("Konflikt-Narwal.txt", conflict[d.name])
        os.utime(d.root / "Konflikt-Narwal.txt", ns=(ns, ns))
        mtimes[f"conflict {d.name}"] = ns
    a.sync()
    b.sync()
    sync_all([a, b])
    heads = assert_converged([a, b])
    assert any("sync-conflict" in p for p in heads) and "umbenannt-Capybara-ß.txt" in heads
    assert b.read("Medien-Kakapo/großes-Video-Ψ.bin") == files["Medien-Kakapo/großes-Video-Ψ.bin"]

    names = set()
    for path in [*files, "umbenannt-Capybara-ß.txt", "Verknüpfung-zum-Schatz", link_target, *heads]:
        names.add(path)
        names.update(path.split("/"))
        names.add(path.rsplit(".", 1)[0])
    contents = [*files.values(), *conflict.values(), link_target.encode()]
    needles: dict[str, list[bytes]] = {}
    for name in names:
        needles[f"name {name!r}"] = _encodings(name.encode())
    for data in contents:
        label = f"content {data[:24]!r}"
        needles[label] = _needles(data)
        hashes = [hashlib.sha256(data).hexdigest()] + [
            hashlib.sha256(data[o:o + n]).hexdigest() for o, n in block_ranges(len(data))]
        needles[label] += [h.encode() for h in hashes] + [bytes.fromhex(h) for h in hashes]
    for label, ns in [*mtimes.items(), ("symlink", link_mtime)]:
        needles[f"mtime of {label} ({ns})"] = _mtime_needles(ns)

    with world.owner() as conn:
        dump = dump_hub(conn)
        ours = changes_of(conn, a.folder_id)
    assert {f"shoal.{t}" for t in ("changes", "heads", "blocks", "contents", "folders", "devices", "sync_log")} <= {
        ".".join(k.split(" ")[0].split(".")[:2]) for k in dump}
    # the dump is not vacuous: the folder's rows and sealed blocks are in it, and a name the hub
    # is meant to know (a device's, the folder id) is found by the same search
    assert len(ours) >= len(files) + 4 and all(r["sealed"] for r in ours)
    assert len(dump["shoal.blocks.data"]) > sum(len(c) for c in contents)
    everything = b"\0".join(dump.values())
    assert b"gamma" in everything and a.folder_id.encode() in everything

    found = list(dict.fromkeys(f"{label}: {needle[:40]!r} in {where}"
                               for label, ns in needles.items() for needle in ns
                               if needle in everything
                               for where, blob in dump.items() if needle in blob))
    assert not found, "the hub can read:\n" + "\n".join(found[:40])
    # no mtime column holds anything but 0 for the folder
    assert {r["mtime_ns"] for r in ours} == {0}


# -- tampered blocks -------------------------------------------------------------------------


def _content_blocks(conn, sealer: FolderSealer, data: bytes) -> dict:
    cid = sealer.content_id(hashlib.sha256(data).hexdigest())
    row = conn.execute("SELECT space, sha256, blocks FROM shoal.contents WHERE sha256 = %s", (cid,)).fetchone()
    assert row is not None, "the content is not on the hub"
    return row


def _block(conn, name: str) -> bytes:
    return bytes(conn.execute("SELECT data FROM shoal.blocks WHERE sha256 = %s", (name,)).fetchone()["data"])


def _flip(data: bytes, i: int) -> bytes:
    b = bytearray(data)
    b[i] ^= 0x20
    return bytes(b)


def _sealed_hub_open_block(d: Device, name: str, stored: bytes):
    conn = d.hub()
    try:
        return d.engine.folder_hub(conn, d.config.folders[0]).open_block(name, stored)
    finally:
        conn.close()


def _assert_block_refused(b: Device, path: str, before: dict[str, str]) -> None:
    report = b.sync()
    assert b.files() == before, "the tampered file reached the folder"
    assert (b.root / path).exists() is False
    errors = [e for e in b.store.errors(b.folder_id) if e.path == path]
    assert errors and errors[0].kind is ErrorKind.BLOCK, b.store.errors(b.folder_id)
    # refused as a block that fails its check, before anything of it is written (not only by
    # the whole file's SHA-256 afterwards)
    assert "failed its check" in errors[0].message, errors[0].message
    assert report.folders[0].failed >= 1


@pytest.mark.parametrize("shape", ["one block", "third of three blocks"])
def test_tampered_block_is_refused(world, trio, shape):
    """The hub makes a tampered copy of a sealed block (stored under the SHA-256 of its new bytes,
    as the hub checks) and points the content at it: the device refuses the block."""
    a, b, _ = trio
    path = "tamper/victim.bin"
    data = _pattern(shape, 5000 if shape == "one block" else 2 * 128 * 1024 + 4000)
    a.write(path, data)
    a.write("tamper/innocent.txt", "not touched")
    a.sync()
    sealer = sealer_of(world, a.folder_id)
    with world.owner() as conn:
        content = _content_blocks(conn, sealer, data)
        i = len(content["blocks"]) - 1
        old = content["blocks"][i]
        stored = _block(conn, old)
        bad = _flip(stored, 40)  # in the ciphertext, after the 32-byte id
        new = hashlib.sha256(bad).hexdigest()
        conn.execute("INSERT INTO shoal.blocks(sha256, data) VALUES (%s, %s)", (new, bad))
        conn.execute("INSERT INTO shoal.block_spaces(space, sha256) VALUES (%s, %s)", (content["space"], new))
        conn.execute("UPDATE shoal.contents SET blocks[%s] = %s WHERE space = %s AND sha256 = %s",
                     (i + 1, new, content["space"], content["sha256"]))
    assert _sealed_hub_open_block(b, new, bad) is None
    assert _sealed_hub_open_block(b, old, stored) == data[block_ranges(len(data))[i][0]:]
    _assert_block_refused(b, path, {"tamper/innocent.txt": hashlib.sha256(b"not touched").hexdigest()})


def test_block_flipped_in_place_is_refused(world, trio):
    """The naive tamper: a byte of a stored block flipped where it lies (its name no longer
    matches its bytes)."""
    a, b, _ = trio
    data = _pattern("in place", 3000)
    a.write("flipped.bin", data)
    a.sync()
    sealer = sealer_of(world, a.folder_id)
    with world.owner() as conn:
        name = _content_blocks(conn, sealer, data)["blocks"][0]
        bad = _flip(_block(conn, name), 100)
        conn.execute("UPDATE shoal.blocks SET data = %s WHERE sha256 = %s", (bad, name))
    assert _sealed_hub_open_block(b, name, bad) is None
    _assert_block_refused(b, "flipped.bin", {})


# -- tampered, moved, replayed and unsealed changelog rows ---------------------------------------------


def test_tampered_row_payload_pauses_the_folder(world, trio):
    """A digit of the row's sealed mtime flipped in the ciphertext (what a stream cipher without
    authentication would let through as a valid row): the device refuses the row."""
    a, b, _ = trio
    mtime = 1_234_567_890_123_456_789
    a.write("payload.txt", "the row of this file is tampered with")
    os.utime(a.root / "payload.txt", ns=(mtime, mtime))
    a.sync()
    row = row_of(world, a, "payload.txt")
    sealer = sealer_of(world, a.folder_id)
    # white-box: where the mtime lies in the payload (AES-SIV: 16-byte tag, then the ciphertext)
    body = sealer._row.decrypt(bytes(row["sealed"]), sealer._row_aad(str(row["device_id"]),
                                                                       str(row["incarnation"]), row["seq"]))
    at = 16 + body.index(str(mtime).encode()) + 3  # the 4th digit, '4'
    tampered = bytearray(row["sealed"])
    tampered[at] ^= ord("4") ^ ord("9")
    with world.owner() as conn:
        conn.execute("UPDATE shoal.changes SET sealed = %s WHERE id = %s", (bytes(tampered), row["id"]))
    assert_refused(b, {})


@pytest.mark.parametrize("move", ["device", "incarnation", "seq", "payloads swapped"])
def test_row_moved_to_another_device_or_seq_pauses_the_folder(world, trio, move):
    """The hub moves a row to another registered device of the space (gamma), another
    incarnation or another seq, or swaps two rows' payloads: the device refuses the row."""
    a, b, c = trio
    a.write("moved-1.txt", "first")
    a.write("moved-2.txt", "second")
    a.sync()
    row = row_of(world, a, "moved-1.txt")
    other = row_of(world, a, "moved-2.txt")
    with world.owner() as conn:
        if move == "device":
            conn.execute("UPDATE shoal.changes SET device_id = %s WHERE id = %s", (c.store.device_id, row["id"]))
        elif move == "incarnation":
            conn.execute("UPDATE shoal.changes SET incarnation = %s WHERE id = %s", (str(uuid.uuid4()), row["id"]))
        elif move == "seq":
            conn.execute("UPDATE shoal.changes SET seq = seq + 1000 WHERE id = %s", (row["id"],))
        else:  # everything of the two rows but their device, incarnation and seq
            for mine, theirs in ((row, other), (other, row)):
                conn.execute("UPDATE shoal.changes SET path = %s, kind = %s, size = %s, sha256 = %s, deleted = %s,"
                             " sealed = %s WHERE id = %s", (theirs["path"], theirs["kind"], theirs["size"],
                                                             theirs["sha256"], theirs["deleted"], theirs["sealed"],
                                                             mine["id"]))
    assert_refused(b, {})


def _insert(conn, row: dict) -> int:
    """Insert a changelog row (every column of `row` but its id: a new one); returns the id."""
    cols = [c for c in row if c != "id"]
    return conn.execute(sql.SQL("INSERT INTO shoal.changes({}) VALUES ({}) RETURNING id").format(
        sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(sql.Placeholder() * len(cols))),
        [row[c] for c in cols]).fetchone()["id"]


def _replay(conn, row_id: int) -> int:
    """Delete a changelog row and insert the same row again under a new id; returns the new id."""
    row = conn.execute("SELECT * FROM shoal.changes WHERE id = %s", (row_id,)).fetchone()
    with conn.transaction():
        conn.execute("DELETE FROM shoal.changes WHERE id = %s", (row_id,))
        new = _insert(conn, row)
    assert new > row_id
    return new


def test_replayed_row_pauses_the_folder(world, trio):
    """The hub serves an old row again under a new id (to roll a file back to a version the
    device already read and replaced): the device notices the replay."""
    a, b, _ = trio
    a.write("replayed.txt", "version one")
    sync_all([a, b], rounds=1)
    first = row_of(world, a, "replayed.txt")
    a.write("replayed.txt", "version two, the current one")
    sync_all([a, b], rounds=1)
    assert b.read("replayed.txt") == b"version two, the current one"
    with world.owner() as conn:
        _replay(conn, first["id"])
    before = b.files()
    assert_refused(b, before)
    assert b.read("replayed.txt") == b"version two, the current one"


def test_replay_to_a_device_that_never_read_the_row_is_only_a_late_row(world, trio):
    """Control for the test above: a row re-inserted before a device read it is the same row
    (same device, incarnation, seq): that device applies it normally."""
    a, b, _ = trio
    a.write("late.txt", "delivered late")
    a.sync()
    with world.owner() as conn:
        _replay(conn, row_of(world, a, "late.txt")["id"])
    report = b.sync()
    assert report.ok and b.read("late.txt") == b"delivered late"


@pytest.mark.parametrize("column", ["deleted", "sha256", "kind", "path"])
def test_altered_visible_column_pauses_the_folder(world, trio, column):
    """The hub changes a visible column of a sealed row (marks it deleted, points it at another
    content, another kind or another path of the folder): the device refuses the row."""
    a, b, _ = trio
    a.write("visible.txt", "the row's visible columns are altered")
    a.write("other.txt", "another file of the folder")
    a.sync()
    row = row_of(world, a, "visible.txt")
    other = row_of(world, a, "other.txt")
    value = {"deleted": True, "sha256": other["sha256"], "kind": "symlink", "path": other["path"]}[column]
    with world.owner() as conn:
        conn.execute(sql.SQL("UPDATE shoal.changes SET {} = %s WHERE id = %s").format(
            sql.Identifier(column)), (value, row["id"]))
    assert_refused(b, {})


def test_unsealed_row_in_an_encrypted_folder_pauses_the_folder(world, trio):
    """The hub inserts a plaintext row (as from alpha, at a seq alpha has not used) into the
    encrypted folder."""
    a, b, _ = trio
    a.write("real.txt", "a real file")
    a.sync()
    real = row_of(world, a, "real.txt")
    evil = {**real, "path": "evil.txt", "seq": real["seq"] + 100, "size": 0,
            "sha256": hashlib.sha256(b"").hexdigest(), "sealed": None}
    if "path_hash" in evil:
        evil["path_hash"] = hashlib.sha256(b"evil.txt").digest()
    with world.owner() as conn:
        _insert(conn, evil)
    assert_refused(b, {})


def test_tampered_head_in_a_push_conflict_pauses_the_folder(world, trio):
    """The head the hub returns with a push conflict is a tampered row: the device does not
    resolve the conflict with it (its own edit stays as it is)."""
    a, b, _ = trio
    a.write("contested.txt", "base")
    sync_all([a, b], rounds=1)
    a.write("contested.txt", "alpha's edit")
    a.sync()
    row = row_of(world, a, "contested.txt")
    tampered = bytearray(row["sealed"])
    tampered[len(tampered) // 2] ^= 0x01
    with world.owner() as conn:
        conn.execute("UPDATE shoal.changes SET sealed = %s WHERE id = %s", (bytes(tampered), row["id"]))
    b.write("contested.txt", "beta's concurrent edit")
    assert_refused(b, b.files())
    assert b.read("contested.txt") == b"beta's concurrent edit"
    assert row_of(world, a, "contested.txt")["id"] == row["id"], "pushed over a head it could not open"
    assert b.store.pending_count(b.folder_id) == 1  # the edit waits


def test_wrapped_key_swapped_for_another_folders_pauses_the_folder(world, trio):
    """The hub puts another folder's wrapped key (same passphrase: it opens) in this folder's
    place: a device that synced the folder before notices the key is not the one it pinned."""
    a, b, _ = trio
    a.write("keyed.txt", "sealed with the folder's own key")
    sync_all([a, b], rounds=1)
    with world.owner() as conn:
        conn.execute("UPDATE shoal.folders SET sealed_key = (SELECT sealed_key FROM shoal.folders"
                     " WHERE folder_id = 'setup') WHERE folder_id = %s", (a.folder_id,))
    b.write("new-after-swap.txt", "must not be sealed with the hub's key")
    assert_refused(restarted(b), b.files())
    with world.owner() as conn:  # nothing of beta's was pushed under the swapped key
        assert not [r for r in changes_of(conn, b.folder_id) if str(r["device_id"]) == b.store.device_id]
    assert b.store.pending_count(b.folder_id) == 1


# -- rollbacks through the hub's heads (found by the tests above; fixed) ---------------------------


def test_a_retry_never_takes_a_head_older_than_a_version_read(world, trio):
    """The hub withholds v2's content (beta's write fails), then points the head back at v1 for
    beta's retry: beta must not write v1 over what it knows was replaced."""
    a, b, _ = trio
    a.write("p.txt", "version one")
    a.sync()
    v1 = row_of(world, a, "p.txt")
    a.write("p.txt", "version two, the newest")
    a.sync()
    cid2 = sealer_of(world, a.folder_id).content_id(hashlib.sha256(b"version two, the newest").hexdigest())
    with world.owner() as conn:
        conn.execute("UPDATE shoal.contents SET blocks = ARRAY[%s] WHERE sha256 = %s", ("0" * 64, cid2))
    b.sync()
    assert not (b.root / "p.txt").exists()
    with world.owner() as conn:
        conn.execute("UPDATE shoal.heads SET version = %s, sha256 = %s, size = %s WHERE folder_id = %s AND path = %s",
                     (v1["id"], v1["sha256"], v1["size"], a.folder_id, v1["path"]))
    report = b.sync(retry_now=True)
    assert not (b.root / "p.txt").exists()
    assert (report.folders[0].paused or "").startswith("encryption: ") and "rollback" in report.folders[0].paused


def test_a_conflict_head_older_than_a_version_read_stops_the_folder(world, trio):
    a, b, _ = trio
    a.write("p.txt", "version one")
    a.sync()
    b.sync()
    v1 = row_of(world, a, "p.txt")
    a.write("p.txt", "version two, the newest")
    a.sync()
    b.sync()
    assert b.read("p.txt") == b"version two, the newest"
    with world.owner() as conn:
        conn.execute("UPDATE shoal.heads SET version = %s, sha256 = %s, size = %s WHERE folder_id = %s AND path = %s",
                     (v1["id"], v1["sha256"], v1["size"], a.folder_id, v1["path"]))
    b.write("p.txt", "beta's edit")
    report = b.sync()
    assert "rollback" in (report.folders[0].paused or "")
    assert b.read("p.txt") == b"beta's edit"  # nothing moved aside, nothing lost
