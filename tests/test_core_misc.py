"""shoal.core.blocks, shoal.core.backoff, shoal.core.debounce."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.core.backoff import backoff_ceiling, backoff_delay
from shoal.core.blocks import MAX_BLOCK, MIN_BLOCK, block_ranges, block_size_for
from shoal.core.debounce import Debouncer

KiB = 1024
MiB = 1024 * KiB

# -- blocks -------------------------------------------------------------------------------


def test_block_limits():
    assert MIN_BLOCK == 128 * KiB
    assert MAX_BLOCK == 16 * MiB


@pytest.mark.parametrize(
    "size,block",
    [
        (0, MIN_BLOCK),
        (1, MIN_BLOCK),
        (2000 * MIN_BLOCK, MIN_BLOCK),  # exactly 2000 blocks: still the smallest size
        (2000 * MIN_BLOCK + 1, 2 * MIN_BLOCK),  # 2001 blocks would be too many
        (2000 * MiB, MiB),
        (2000 * MiB + 1, 2 * MiB),
        (2000 * MAX_BLOCK, MAX_BLOCK),
        (2000 * MAX_BLOCK + 1, MAX_BLOCK),  # beyond that the size stops growing
        (10**13, MAX_BLOCK),
    ],
)
def test_block_size_for(size, block):
    assert block_size_for(size) == block


def test_empty_file_has_no_blocks():
    assert block_ranges(0) == []


def test_block_ranges_small_file():
    assert block_ranges(MIN_BLOCK + 5) == [(0, MIN_BLOCK), (MIN_BLOCK, 5)]


def test_negative_size_is_refused():
    with pytest.raises(ValueError):
        block_size_for(-1)
    with pytest.raises(ValueError):
        block_ranges(-1)


@given(st.integers(0, 2**45))
def test_block_size_is_a_bounded_power_of_two_with_few_blocks(size):
    block = block_size_for(size)
    assert MIN_BLOCK <= block <= MAX_BLOCK
    assert block & (block - 1) == 0
    count = -(-size // block)
    if block < MAX_BLOCK:
        assert count <= 2000
    if block > MIN_BLOCK:
        assert -(-size // (block // 2)) > 2000  # the smallest size that fits


@given(st.integers(0, 2**36))
def test_block_ranges_cover_the_file_exactly(size):
    ranges = block_ranges(size)
    block = block_size_for(size)
    offset = 0
    for start, length in ranges:
        assert start == offset
        assert 0 < length <= block
        offset += length
    assert offset == size
    assert all(length == block for _, length in ranges[:-1])


# -- backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attempt,rand,expected",
    [
        (0, 0.0, 0.5),
        (0, 0.999999, pytest.approx(1.0, abs=1e-5)),
        (3, 0.0, 4.0),
        (3, 0.5, 6.0),
        (20, 0.0, 150.0),  # capped at 300: jitter in [150, 300]
        (10_000, 0.5, 225.0),  # huge attempts do not overflow
    ],
)
def test_backoff_delay(attempt, rand, expected):
    assert backoff_delay(attempt, rand=rand) == expected


def test_backoff_base_and_cap():
    assert backoff_delay(2, base=0.5, cap=10.0, rand=0.0) == 1.0
    assert backoff_delay(9, base=0.5, cap=10.0, rand=0.0) == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempt": -1, "rand": 0.0},
        {"attempt": 0, "rand": 1.0},
        {"attempt": 0, "rand": -0.1},
        {"attempt": 0, "rand": 0.0, "base": 0.0},
        {"attempt": 0, "rand": 0.0, "cap": 0.0},
    ],
)
def test_backoff_refuses_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        backoff_delay(**kwargs)


@given(
    st.integers(0, 200),
    st.floats(0.0, 1.0, exclude_max=True),
    st.floats(0.001, 10.0),
    st.floats(0.01, 1000.0),
)
def test_backoff_within_bounds_and_caps_monotone(attempt, rand, base, cap):
    ceiling = backoff_ceiling(attempt, base=base, cap=cap)
    assert ceiling == min(cap, base * 2.0**attempt)
    delay = backoff_delay(attempt, base=base, cap=cap, rand=rand)
    assert ceiling / 2 <= delay <= ceiling
    assert delay <= cap
    assert backoff_ceiling(attempt + 1, base=base, cap=cap) >= ceiling


# -- debounce -----------------------------------------------------------------------------


def test_debounce_waits_for_quiet():
    d = Debouncer(1.0)
    d.mark("a", 10.0)
    assert d.due(10.5) == []
    assert len(d) == 1
    assert d.due(11.0) == ["a"]
    assert len(d) == 0
    assert d.due(20.0) == []


def test_a_new_mark_restarts_the_quiet_period():
    d = Debouncer(1.0)
    d.mark("a", 10.0)
    d.mark("a", 10.8)
    assert d.due(11.5) == []
    assert d.next_deadline() == pytest.approx(11.8)
    assert d.due(11.8) == ["a"]


def test_due_is_sorted_and_only_ripe_paths_leave():
    d = Debouncer(2.0)
    for path, t in [("c", 0.0), ("a", 0.5), ("b", 1.0), ("z", 5.0)]:
        d.mark(path, t)
    assert d.due(3.0) == ["a", "b", "c"]
    assert len(d) == 1
    assert d.next_deadline() == 7.0


def test_next_deadline_empty_and_earliest():
    d = Debouncer(1.0)
    assert d.next_deadline() is None
    d.mark("b", 5.0)
    d.mark("a", 3.0)
    assert d.next_deadline() == 4.0
    assert d.due(4.0) == ["a"]
    assert d.next_deadline() == 6.0


def test_a_marked_directory_is_just_a_path():
    d = Debouncer(1.0)
    d.mark("photos", 0.0)
    d.mark("photos/a.jpg", 0.0)
    assert d.due(1.0) == ["photos", "photos/a.jpg"]


def test_zero_quiet_is_due_at_once_and_negative_is_refused():
    d = Debouncer(0.0)
    d.mark("a", 1.0)
    assert d.due(1.0) == ["a"]
    with pytest.raises(ValueError):
        Debouncer(-1.0)


def test_marking_one_path_many_times_keeps_memory_bounded():
    d = Debouncer(1.0)
    for i in range(10_000):
        d.mark("hot", i * 0.001)
    assert len(d) == 1
    assert len(d._heap) < 200
    assert d.due(100.0) == ["hot"]


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.floats(0, 100)), max_size=40), st.floats(0, 200))
def test_debounce_matches_a_simple_model(marks, now):
    marks.sort(key=lambda m: m[1])
    d = Debouncer(1.5)
    last: dict[str, float] = {}
    for path, t in marks:
        d.mark(path, t)
        last[path] = t
    expected = sorted(p for p, t in last.items() if t + 1.5 <= now)
    assert d.due(now) == expected
    remaining = {p: t for p, t in last.items() if p not in expected}
    assert len(d) == len(remaining)
    assert d.next_deadline() == (min(remaining.values()) + 1.5 if remaining else None)


@pytest.mark.parametrize("keys", [
    [("docs", "a", False), ("docs", "", True)],
    [("b", "x/y", False), ("a", "x", True), ("a", "x", False)],
])
def test_debouncer_takes_tuple_keys_and_hands_them_back_sorted(keys):
    d = Debouncer(1.0)
    for key in keys:
        d.mark(key, 10.0)
    d.mark(keys[0], 10.5)  # marked again: the same key, not a second one
    assert len(d) == len(keys)
    assert d.due(11.0) == sorted(keys[1:])
    assert d.due(11.5) == [keys[0]]
