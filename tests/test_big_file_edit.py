"""An edit in the middle of a big file moves only the blocks it touched, both ways (issue 14,
item 5): the device that made it uploads them, the device that gets it reuses the rest from its
own copy of the old version. Device logins of a real hub, plain and encrypted."""

from __future__ import annotations

import os

import pytest

from shoal.core.blocks import block_size_for
from shoal.hub.client import Hub
from tests.fixtures.devices import both_ways

SIZE = 24 << 20  # 24 MiB: 192 blocks of 128 KiB


@pytest.fixture
def moved(monkeypatch):
    """Block bytes sent to and fetched from the hub."""
    got = {"up": 0, "down": 0}
    put, get = Hub.put_blocks, Hub.get_blocks

    def put_blocks(self, blocks):
        got["up"] += sum(len(b) for _, b in blocks)
        return put(self, blocks)

    def get_blocks(self, shas):
        out = get(self, shas)
        got["down"] += sum(len(b) for b in out.values())
        return out

    monkeypatch.setattr(Hub, "put_blocks", put_blocks)
    monkeypatch.setattr(Hub, "get_blocks", get_blocks)
    return got


@pytest.mark.slow
@both_ways
def test_a_1_mib_edit_in_the_middle_moves_only_its_blocks(make_device, moved):
    a, b = make_device("alpha"), make_device("beta")
    data = bytearray(os.urandom(SIZE))
    a.write("video.bin", bytes(data))
    a.sync()
    b.sync()
    assert b.read("video.bin") == bytes(data)

    block = block_size_for(SIZE)
    middle = SIZE // 2 + 12345  # not on a block boundary: touches 9 blocks of 128 KiB
    data[middle:middle + (1 << 20)] = os.urandom(1 << 20)
    a.write("video.bin", bytes(data))
    moved.update(up=0, down=0)
    a.sync()
    b.sync()
    assert b.read("video.bin") == bytes(data)
    touched = ((middle + (1 << 20) - 1) // block - middle // block + 1) * block
    slack = 64 << 10  # sealed blocks carry a little more
    assert moved["up"] <= touched + slack, moved
    assert moved["down"] <= touched + slack, f"beta fetched {moved['down']} bytes for a 1 MiB edit"
