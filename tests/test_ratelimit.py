"""Bandwidth limits (issue 13 item 4): the rate syntax (core.rates), the token bucket
(core.ratelimit), the config keys `sync.max_upload_rate` / `sync.max_download_rate`, and the
Throttle that block transfers pay before each round trip (sync.transfer)."""

from __future__ import annotations

import hashlib
import math
import random
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.config import parse_config_text
from shoal.core.blocks import MIN_BLOCK
from shoal.core.ratelimit import MIN_BURST, TokenBucket, default_burst
from shoal.core.rates import RATE_HINT, format_rate, parse_rate
from shoal.errors import ConfigError
from shoal.sync.transfer import GROUP_BYTES, Throttle, UploadStats, upload_contents

# --- the rate syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("500KB/s", 500_000.0),
        ("500kB/s", 500_000.0),
        ("2MB/s", 2_000_000.0),
        ("1GB/s", 1e9),
        ("500KiB/s", 512_000.0),
        ("1MiB/s", 1_048_576.0),
        ("1.5MiB/s", 1_572_864.0),
        ("2GiB/s", 2 * 1024**3),
        ("1.5MB/s", 1_500_000.0),
        (".5MB/s", 500_000.0),
        ("2 MB/s", 2_000_000.0),
        ("2MB", 2_000_000.0),  # the /s may be left out
        ("100B/s", 100.0),
        ("1000000", 1_000_000.0),  # a bare number is bytes per second
        ("  2MB/s \n", 2_000_000.0),
        ("0", 0.0),  # unlimited
        ("0MB/s", 0.0),
        ("unlimited", 0.0),
        (0, 0.0),  # YAML may hand numbers over as int or float
        (1_000_000, 1_000_000.0),
        (2.5, 2.5),
    ],
)
def test_parse_rate_accepts(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text",
    [
        "", " ", "MB/s", "-1MB/s", "-1", "+2MB/s", "2mb/s", "500kb/s", "500Kb/s", "2Mbit/s", "2MBps",
        "2 MB /s", "2  MB/s", "5TB/s", "5K/s", "5M", "2kiB/s", "2KIB/s", "1e6", "1e6B/s", "nan", "inf",
        "2MB/s2", "two MB/s", "2MB/h", "0x10", "2MB/s/s",
        -1, -0.5, float("nan"), float("inf"), 10**400, True, False, None, ["2MB/s"],
    ],
)  # fmt: skip
def test_parse_rate_refuses_with_the_hint(text):
    with pytest.raises(ValueError) as caught:
        parse_rate(text)
    assert str(caught.value).startswith(RATE_HINT)
    assert "(got " in str(caught.value)


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (1_000_000, "1 MB/s"),
        (2_000_000.0, "2 MB/s"),
        (500_000, "500 KB/s"),
        (512_000, "512 KB/s"),  # also 500 KiB/s: the shorter spelling wins
        (1_024_000, "1024 KB/s"),  # shorter than 1.024 MB/s or 1000 KiB/s
        (250_000, "250 KB/s"),  # not 0.25 MB/s
        (1_048_576, "1 MiB/s"),
        (1_500_000, "1.5 MB/s"),
        (1_572_864, "1.5 MiB/s"),
        (1e9, "1 GB/s"),
        (512, "512 B/s"),
        (1, "1 B/s"),
        (2.5, "2.5 B/s"),
        (0, "unlimited"),
    ],
)
def test_format_rate(rate, text):
    assert format_rate(rate) == text
    assert parse_rate(text) == rate


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "2MB/s", None, True])
def test_format_rate_refuses(bad):
    with pytest.raises(ValueError):
        format_rate(bad)


@given(st.one_of(st.integers(min_value=0, max_value=10**15),
                 st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False)))
def test_format_rate_reads_back_exactly(rate):
    assert parse_rate(format_rate(rate)) == rate


@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
       st.sampled_from(["B", "KB", "kB", "KiB", "MB", "MiB", "GB", "GiB"]),
       st.sampled_from(["", " "]), st.sampled_from(["", "/s"]))
def test_parse_rate_of_any_spelling(number, unit, space, per_second):
    factor = {"B": 1, "KB": 1000, "kB": 1000, "KiB": 1024, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30}
    rate = parse_rate(f"{number}{space}{unit}{per_second}")
    assert math.isclose(rate, float(number) * factor[unit], rel_tol=1e-12)


# --- the token bucket ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "burst", "takes", "waits"),
    [
        # (n, now) pairs -> the seconds to wait before moving each
        (1000, 500, [(500, 0.0)], [0.0]),  # the burst goes at once
        (1000, 500, [(500, 0.0), (1000, 0.0)], [0.0, 1.0]),  # then the rate
        (1000, 500, [(1500, 0.0)], [1.0]),  # a take larger than the burst: the debt's refill time
        (1000, 500, [(1500, 0.0), (1000, 1.0)], [1.0, 1.0]),  # waited as told: 1000 more = 1 s
        (1000, 500, [(1500, 0.0), (1000, 1.5)], [1.0, 0.5]),  # came late: that much less to wait
        (1000, 500, [(500, 0.0), (500, 10.0)], [0.0, 0.0]),  # idle: refilled, but only to the burst
        (1000, 500, [(500, 0.0), (1000, 10.0)], [0.0, 0.5]),
        (1000, 500, [(1000, 5.0), (1000, 4.0)], [0.5, 1.5]),  # the clock went back: no tokens
        (1000, 0, [(1000, 0.0), (1000, 1.0)], [1.0, 1.0]),  # no burst at all
        (0, 0, [(10**12, 0.0), (10**12, 0.0)], [0.0, 0.0]),  # 0 = unlimited
        (1000, 500, [(0, 0.0), (-5, 0.0), (500, 0.0)], [0.0, 0.0, 0.0]),
    ],
)
def test_bucket_table(rate, burst, takes, waits):
    bucket = TokenBucket(rate, now=0.0, burst=burst)
    assert [bucket.take(n, now) for n, now in takes] == pytest.approx(waits)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(1000, float(MIN_BURST)), (1_000_000, 131_072.0), (2_000_000, 200_000.0), (10**9, 4 * 2**20)],
)
def test_default_burst(rate, burst):
    assert default_burst(rate) == burst
    assert TokenBucket(rate, now=0.0).burst == burst


@pytest.mark.parametrize(("rate", "burst"), [(-1, None), (float("nan"), None), (float("inf"), None), (1, -1)])
def test_bucket_refuses_bad_values(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, now=0.0, burst=burst)


def test_ten_megabytes_at_one_megabyte_per_second_take_ten_seconds_within_the_burst():
    """The issue's figure on the bucket alone: 10 MB in 128 KiB blocks at 1 MB/s, back to back."""
    bucket = TokenBucket(1_000_000, now=0.0)
    now = 0.0
    left = 10_000_000
    while left:
        n = min(MIN_BLOCK, left)
        now += bucket.take(n, now)
        left -= n
    assert now == pytest.approx((10_000_000 - bucket.burst) / 1_000_000)
    assert 8.0 <= now <= 12.0


_takes = st.lists(st.tuples(st.integers(min_value=0, max_value=20_000_000),
                            st.floats(min_value=0, max_value=5, allow_nan=False)), min_size=1, max_size=60)


@given(st.floats(min_value=1, max_value=1e9, allow_nan=False), st.floats(min_value=0, max_value=1e8), _takes)
def test_bucket_never_lets_more_than_burst_plus_rate_times_elapsed(rate, burst, takes):
    """A caller that waits as told (and may come later: `gap` seconds after its wait) never moves
    more than burst + rate * (time since the start) bytes."""
    bucket = TokenBucket(rate, now=100.0, burst=burst)
    now = 100.0
    moved = 0
    for n, gap in takes:
        now += gap
        now += bucket.take(n, now)
        moved += n
        assert moved <= burst + rate * (now - 100.0) + 1e-6 * max(moved, 1)


@given(st.floats(min_value=1, max_value=1e9, allow_nan=False), st.floats(min_value=0, max_value=1e8),
       st.lists(st.integers(min_value=0, max_value=20_000_000), min_size=1, max_size=60))
def test_bucket_back_to_back_moves_at_exactly_the_rate(rate, burst, sizes):
    """A caller that moves as soon as it may moves N bytes in max(0, N - burst) / rate seconds:
    the limit never holds it back more than it must."""
    bucket = TokenBucket(rate, now=0.0, burst=burst)
    now = 0.0
    for n in sizes:
        now += bucket.take(n, now)
    assert now == pytest.approx(max(0.0, sum(sizes) - burst) / rate, rel=1e-9, abs=1e-6)


# --- the config keys -----------------------------------------------------------------------------


def _sync(text: str):
    return parse_config_text("device:\n  name: x\nsync:\n" + textwrap.indent(textwrap.dedent(text), "  "),
                             "config.yaml", "/tmp").sync


def test_rates_default_to_unlimited():
    sync = _sync("interval: 5m\n")
    assert (sync.max_upload_rate, sync.max_download_rate) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("text", "up", "down"),
    [
        ("max_upload_rate: 500KB/s\nmax_download_rate: 2MB/s\n", 500_000.0, 2_000_000.0),
        ("max_upload_rate: 1MiB/s\n", 1_048_576.0, 0.0),
        ("max_upload_rate: 0\nmax_download_rate: unlimited\n", 0.0, 0.0),
        ("max_upload_rate: 250000\n", 250_000.0, 0.0),
        ("max_download_rate: '2 MB/s'\n", 0.0, 2_000_000.0),
        ("max_upload_rate:\nmax_download_rate: ~\n", 0.0, 0.0),  # null: the default
    ],
)
def test_rates_in_the_config(text, up, down):
    sync = _sync(text)
    assert (sync.max_upload_rate, sync.max_download_rate) == (up, down)


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("max_upload_rate: fast\n", [f"config.yaml:4: sync.max_upload_rate: {RATE_HINT}"]),
        ("interval: 5m\nmax_download_rate: 500kb/s\n", [f"config.yaml:5: sync.max_download_rate: {RATE_HINT}"]),
        ("max_upload_rate: -1MB/s\nmax_download_rate: [2MB/s]\n",
         [f"config.yaml:4: sync.max_upload_rate: {RATE_HINT}", f"config.yaml:5: sync.max_download_rate: {RATE_HINT}"]),
        ("max_upload_rate: .inf\n", [f"config.yaml:4: sync.max_upload_rate: {RATE_HINT}"]),
        ("max_upload_rate: 0.5\n", ["config.yaml:4: sync.max_upload_rate: must be 0 (unlimited) or at least 1 byte per second"]),
    ],
)  # fmt: skip
def test_bad_rates_are_refused_with_the_line(text, problems):
    with pytest.raises(ConfigError) as caught:
        _sync(text)
    assert caught.value.problems == problems


# --- the Throttle on uploads -----------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


class FakeHub:
    """The upload half of the hub: knows nothing, records each round trip at the fake time."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.puts: list[tuple[float, int]] = []  # (time, bytes) of each put

    def missing_contents(self, shas):
        return set(shas)

    def missing_blocks(self, names):
        return set(names)

    def seal_block(self, data):
        return hashlib.sha256(data).hexdigest(), data

    def put_blocks(self, blocks):
        self.puts.append((self.clock(), sum(len(d) for _, d in blocks)))

    def put_small_contents(self, small, block_size):
        self.puts.append((self.clock(), sum(len(d) for _, d in small)))

    def put_content(self, sha, size, block_size, names):
        pass


def _files(tmp_path, sizes):
    path_base = tmp_path.name
    out = []
    for i, size in enumerate(sizes):
        data = random.Random(f"{path_base}/{i}").randbytes(size)  # no repeated blocks to dedup
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        out.append((hashlib.sha256(data).hexdigest(), str(path), size))
    return out


@pytest.mark.parametrize("sizes", [[10_000_000], [3_000_000, 40_000, 90_000, 5_000_000], [100_000] * 30])
def test_uploads_pay_the_throttle_before_each_round_trip(tmp_path, sizes):
    clock = FakeClock()
    hub = FakeHub(clock)
    throttle = Throttle(1_000_000, clock=clock, sleep=clock.sleep)
    ticks = []
    ok = upload_contents(hub, _files(tmp_path, sizes), UploadStats(), progress=ticks.append, throttle=throttle)
    assert len(ok) == len(sizes)
    total = sum(sizes)
    assert sum(n for _, n in hub.puts) == total
    elapsed = clock.now - 1000.0
    assert elapsed == pytest.approx((total - default_burst(1_000_000)) / 1_000_000, abs=0.01)
    # smooth: no round trip carries more than about half a second's worth, none is ahead of the rate
    assert max(n for _, n in hub.puts) <= max(MIN_BLOCK, 500_000) + MIN_BLOCK
    moved = 0
    for when, n in hub.puts:
        moved += n
        assert moved <= default_burst(1_000_000) + 1_000_000 * (when - 1000.0) + 1
    assert max(clock.slept) <= 0.5 and 0 in ticks  # slept in slices, telling progress between


def test_no_limit_sends_whole_groups_without_sleeping(tmp_path):
    clock = FakeClock()
    hub = FakeHub(clock)
    upload_contents(hub, _files(tmp_path, [20_000_000]), UploadStats(),
                    throttle=Throttle(0, clock=clock, sleep=clock.sleep))
    assert clock.slept == [] and max(n for _, n in hub.puts) >= GROUP_BYTES


def test_a_throttle_is_shared_across_calls(tmp_path):
    """One Throttle per direction per engine: two folders' uploads share the rate."""
    clock = FakeClock()
    throttle = Throttle(1_000_000, clock=clock, sleep=clock.sleep)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        upload_contents(FakeHub(clock), _files(tmp_path / name, [5_000_000]), UploadStats(), throttle=throttle)
    assert clock.now - 1000.0 == pytest.approx((10_000_000 - default_burst(1_000_000)) / 1_000_000, abs=0.01)
