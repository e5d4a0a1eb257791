"""shoal.platform: the one owner of Termux, Android shared storage, socket path and atomic
write facts."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from shoal.platform import (
    SOCKET_PATH_MAX,
    is_android_app_prefix,
    is_android_shared_storage,
    is_termux,
    short_temp_path,
    socket_path_fits,
    write_file_atomic,
)


@pytest.mark.parametrize(("env", "sys_prefix", "expected"), [
    ({"TERMUX_VERSION": "0.118.0"}, "/usr", True),
    ({"TERMUX_VERSION": ""}, "/usr", False),
    ({"HOME": "/data/data/com.termux/files/home"}, "/usr", True),
    ({"PREFIX": "/data/data/com.termux/files/usr"}, "/usr", True),
    ({}, "/data/data/com.termux/files/usr", True),
    ({}, "/data/data/com.termux", True),
    ({"HOME": "/data/data/com.termuxish/home"}, "/usr", False),
    ({"PREFIX": "/data/data/com.termuxish/files/usr"}, "/usr", False),
    ({"HOME": "/home/me", "PREFIX": "/usr/local"}, "/usr", False),
    ({}, "/usr", False),
])
def test_is_termux(env, sys_prefix, expected):
    assert is_termux(env, sys_prefix) is expected


@pytest.mark.parametrize(("prefix", "expected"), [
    ("/data/data/com.termux/files/usr", True),
    ("/data/data/other.app/files/usr", True),
    ("/data/data", False),
    ("/data/data/", False),
    ("/data/database", False),
    ("/usr", False),
    ("", False),
])
def test_is_android_app_prefix(prefix, expected):
    assert is_android_app_prefix(prefix) is expected


@pytest.mark.parametrize(("path", "home", "expected"), [
    ("/storage/emulated/0/DCIM", None, True),
    ("/storage", None, True),
    ("/sdcard", None, True),
    ("/sdcard/Music", None, True),
    ("/mnt/sdcard/Music", None, True),  # the two old copies disagreed on this one
    ("/sdcardx/Music", None, False),
    ("/storagebox", None, False),
    ("/mnt/storage", None, False),
    ("/sdcard/../home/u", None, False),  # normalised first
    ("/data/data/com.termux/files/home/storage/shared", "/data/data/com.termux/files/home", True),
    ("/data/data/com.termux/files/home/storage/shared", "/home/u", False),
    ("/home/u/storage/dcim", "/home/u", True),
    ("/home/u/storagebox/x", "/home/u", False),
    ("/home/u/Shoal", "/home/u", False),
    ("", None, False),
])
def test_is_android_shared_storage(path, home, expected):
    assert is_android_shared_storage(path, home) is expected


@pytest.mark.parametrize(("length", "fits"), [(10, True), (SOCKET_PATH_MAX - 1, True),
                                              (SOCKET_PATH_MAX, False), (200, False)])
def test_socket_path_fits_counts_bytes(length, fits):
    assert socket_path_fits("/" + "a" * (length - 1)) is fits


def test_socket_path_fits_counts_bytes_not_characters():
    assert socket_path_fits("/" + "é" * 50) is False  # 51 characters, 101 bytes


def test_short_temp_path_is_in_the_temp_dir():
    assert short_temp_path("shoal-x.sock") == Path(tempfile.gettempdir()) / "shoal-x.sock"


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755])
def test_write_file_atomic_replaces_with_mode_and_leaves_no_temp(tmp_path, mode):
    target = tmp_path / "f.txt"
    target.write_text("old")
    write_file_atomic(target, "new\r\nline\n", mode=mode)
    assert target.read_bytes() == b"new\r\nline\n"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert os.listdir(tmp_path) == ["f.txt"]


def test_write_file_atomic_without_replace_keeps_an_existing_file(tmp_path):
    target = tmp_path / "f.txt"
    write_file_atomic(target, b"first", replace=False)
    with pytest.raises(FileExistsError):
        write_file_atomic(target, b"second", replace=False)
    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_write_file_atomic_failure_leaves_no_temp(tmp_path):
    with pytest.raises(OSError):
        write_file_atomic(tmp_path / "missing-dir" / "f.txt", "x")
    assert os.listdir(tmp_path) == []
