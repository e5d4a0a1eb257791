"""Moving file contents to and from the hub as content-addressed blocks.

Upload: a content already on the hub is never sent again, and of a new content only the
blocks the hub lacks are sent, which also makes an interrupted upload resume. Small files
(one block) travel in batches. Download: blocks are written to a `.part` file in `.shoal/tmp`
whose name is a digest of the content's SHA-256 (never a value from the hub itself); an
interrupted download resumes after the last block that still verifies. A block whose bytes
do not match its SHA-256 is refused and fetched again; it never reaches the folder. Every hash
the hub hands out (a content's, its block list) is checked to be 64 lowercase hex digits first.

Bandwidth limits (`sync.max_upload_rate`, `sync.max_download_rate`): a Throttle per direction,
shared by every folder of an engine, is paid before each round trip of blocks for the bytes that
will actually move (blocks the hub already has cost nothing). With a limit, a round trip carries
about half a second's worth of blocks instead of GROUP_BYTES, so the rate is smooth to within a
block (blocks are at most 16 MiB; one block is never split).
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shoal.core.blocks import MIN_BLOCK, block_ranges, block_size_for
from shoal.core.ratelimit import TokenBucket
from shoal.core.paths import validate_sha256
from shoal.errors import FileProblem, PathRefused
from shoal.model import EMPTY_SHA, ErrorKind
from shoal.sync.folder_io import FolderWriter
from shoal.hub.client import ContentInfo, Hub

GROUP_BYTES = 8 << 20  # blocks sent or fetched per round trip

OnBytesMoved = Callable[[int], None]  # told the bytes just uploaded or downloaded

LIMITED_GROUP_SECONDS = 0.5  # with a limit, a round trip carries about this long's worth of bytes
WAIT_SLICE = 0.5  # a long wait is slept in slices, telling `progress` 0 bytes between them


class Throttle:
    """One direction's bandwidth limit: `rate` bytes per second, 0 = none. Thread-safe; shared
    by every folder (and every write thread) of an engine. `clock` and `sleep` are for tests."""

    def __init__(self, rate: float = 0.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._bucket = TokenBucket(self.rate, clock())
        self._lock = threading.Lock()

    @property
    def limited(self) -> bool:
        return self.rate > 0

    def group_bytes(self) -> int:
        """How many bytes of blocks one round trip should carry."""
        if not self.limited:
            return GROUP_BYTES
        return max(MIN_BLOCK, min(GROUP_BYTES, int(self.rate * LIMITED_GROUP_SECONDS)))

    def wait(self, nbytes: int, tick: OnBytesMoved | None = None) -> None:
        """Block until `nbytes` may move. A long wait is slept in slices, calling tick(0) after
        each (the daemon's progress sink raises there when it is stopping)."""
        if not self.limited or nbytes <= 0:
            return
        with self._lock:
            now = self._clock()
            end = now + self._bucket.take(nbytes, now)
        while (left := end - self._clock()) > 0:
            self._sleep(min(left, WAIT_SLICE))
            if tick is not None:
                tick(0)


@dataclass(frozen=True)
class TransferLimits:
    """The upload and download Throttles of one engine (from `sync.max_*_rate`)."""

    upload: Throttle = field(default_factory=Throttle)
    download: Throttle = field(default_factory=Throttle)

    @classmethod
    def of(cls, upload_rate: float, download_rate: float) -> TransferLimits:
        return cls(Throttle(upload_rate), Throttle(download_rate))


_UNLIMITED = Throttle()


@dataclass
class UploadStats:
    contents: int = 0
    blocks_sent: int = 0
    bytes_sent: int = 0
    skipped_existing: int = 0


def _read_exact(fd: int, offset: int, length: int) -> bytes:
    chunks = []
    while length:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def upload_contents(hub: Hub, files: Iterable[tuple[str, str, int]], stats: UploadStats,
                    progress: OnBytesMoved | None = None, throttle: Throttle | None = None) -> set[str]:
    """Make the contents of (sha256, os path, size) files available on the hub, at most as fast
    as `throttle` allows.

    Returns the set of sha256 that are on the hub afterwards; a file that changed since it
    was hashed (its bytes no longer match) or cannot be read is left out, not raised.
    Raises HubUnreachable / HubError for hub failures.
    """
    throttle = throttle or _UNLIMITED
    group_bytes = throttle.group_bytes()
    wanted: dict[str, tuple[str, int]] = {}
    for sha, path, size in files:
        wanted.setdefault(sha, (path, size))
    missing = set()
    shas = list(wanted)
    for i in range(0, len(shas), 1000):
        chunk = shas[i:i + 1000]
        missing |= hub.missing_contents(chunk) & set(chunk)  # only what was asked about
    stats.skipped_existing += len(wanted) - len(missing)
    ok = set(wanted) - missing
    small: list[tuple[str, bytes]] = []
    small_bytes = 0
    for sha in sorted(missing):
        path, size = wanted[sha]
        if sha == EMPTY_SHA:
            hub.put_content(sha, 0, MIN_BLOCK, [])
            ok.add(sha)
            continue
        if size <= MIN_BLOCK:
            try:
                with open(path, "rb") as f:
                    data = f.read(MIN_BLOCK + 1)
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() != sha:
                continue  # changed since it was hashed: the next scan records the new content
            small.append((sha, data))
            small_bytes += len(data)
            if small_bytes >= group_bytes or len(small) >= 2000:
                _flush_small(hub, small, stats, ok, progress, throttle)
                small, small_bytes = [], 0
            continue
        if _upload_large(hub, sha, path, size, stats, progress, throttle):
            ok.add(sha)
    _flush_small(hub, small, stats, ok, progress, throttle)
    return ok


def _flush_small(hub: Hub, small: list[tuple[str, bytes]], stats: UploadStats, ok: set[str],
                 progress: OnBytesMoved | None, throttle: Throttle) -> None:
    if not small:
        return
    n = sum(len(d) for _, d in small)
    throttle.wait(n, progress)
    hub.put_small_contents(small, MIN_BLOCK)
    stats.contents += len(small)
    stats.blocks_sent += len(small)
    stats.bytes_sent += n
    ok.update(s for s, _ in small)
    if progress:
        progress(n)


def _upload_large(hub: Hub, sha: str, path: str, size: int, stats: UploadStats,
                  progress: OnBytesMoved | None, throttle: Throttle) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        whole = hashlib.sha256()
        names: list[str] = []
        group: list[tuple[str, bytes]] = []
        group_bytes = 0
        for offset, length in block_ranges(size):
            data = _read_exact(fd, offset, length)
            if len(data) != length:
                return False  # shrank while uploading
            whole.update(data)
            name, stored = hub.seal_block(data)
            names.append(name)
            group.append((name, stored))
            group_bytes += length
            if group_bytes >= throttle.group_bytes():
                _send_group(hub, group, stats, progress, throttle)
                group, group_bytes = [], 0
        _send_group(hub, group, stats, progress, throttle)
        if whole.hexdigest() != sha or os.pread(fd, 1, size):
            return False  # changed while uploading: the next scan records the new content
    except OSError:
        return False
    finally:
        os.close(fd)
    hub.put_content(sha, size, block_size_for(size), names)
    stats.contents += 1
    return True


def _send_group(hub: Hub, group: list[tuple[str, bytes]], stats: UploadStats,
                progress: OnBytesMoved | None, throttle: Throttle) -> None:
    if not group:
        return
    missing = hub.missing_blocks([s for s, _ in group])
    send = [(s, d) for s, d in group if s in missing]
    sent = {}
    for s, d in send:
        sent[s] = d  # a content may repeat a block: send it once
    throttle.wait(sum(len(d) for d in sent.values()), progress)
    hub.put_blocks(list(sent.items()))
    stats.blocks_sent += len(sent)
    stats.bytes_sent += sum(len(d) for d in sent.values())
    if progress:
        progress(sum(len(d) for _, d in group))  # stored bytes: a sealed block is a little longer


def part_name(sha: str) -> str:
    """The temp file name of a resumable download of content `sha`: the same for every attempt
    (so a download resumes), and by construction hex digits, whatever `sha` holds."""
    return hashlib.sha256(b"shoal.part\0" + sha.encode("utf-8", "surrogatepass")).hexdigest()[:40] + ".part"


def _refused(message: str) -> FileProblem:
    # Malformed data from the hub: reported, not retried as a failed write.
    return FileProblem(message, kind=ErrorKind.REFUSED)


def check_content_info(sha: str, info: ContentInfo) -> None:
    """Raise FileProblem (kind REFUSED) unless the content's hashes from the hub are well formed."""
    try:
        validate_sha256(sha)
        for b in info.blocks:
            validate_sha256(b, "block id")
    except PathRefused as e:
        raise _refused(f"content {sha[:12]!r} from the hub is refused: {e}") from None


class Downloader:
    """Fetches contents from the hub into temp files of one folder, verifying every block, at
    most as fast as `throttle` allows."""

    def __init__(self, hub: Hub, writer: FolderWriter, progress: OnBytesMoved | None = None,
                 throttle: Throttle | None = None):
        self.hub = hub
        self.writer = writer
        self.progress = progress
        self.throttle = throttle or _UNLIMITED
        self.infos: dict[str, ContentInfo] = {}
        self.cache: dict[str, bytes] = {}  # prefetched small blocks
        self.bytes_fetched = 0

    def prefetch(self, shas: Iterable[str]) -> None:
        """Look up the block lists of many contents, and fetch small ones in batches."""
        need = [s for s in set(shas) if s not in self.infos]
        asked = set(need)
        for i in range(0, len(need), 1000):
            got = self.hub.get_contents(need[i:i + 1000])
            self.infos.update((s, info) for s, info in got.items() if s in asked)  # nothing unasked
        batch: list[str] = []
        size = 0
        group_bytes = self.throttle.group_bytes()
        for sha in need:
            info = self.infos.get(sha)
            try:
                if info:
                    check_content_info(sha, info)
            except FileProblem:
                continue  # fetch() refuses it, path by path
            if info and len(info.blocks) == 1 and info.blocks[0] not in self.cache:
                batch.append(info.blocks[0])
                size += info.size
                if size >= group_bytes or len(batch) >= 2000:
                    self._fetch_into_cache(batch, size)
                    batch, size = [], 0
        self._fetch_into_cache(batch, size)

    def _fetch_into_cache(self, names: list[str], size: int) -> None:
        if not names:
            return
        self.throttle.wait(size, self.progress)
        for s, stored in self.hub.get_blocks(names).items():
            data = self.hub.open_block(s, stored)
            if data is not None:
                self.cache[s] = data
                self.bytes_fetched += len(stored)

    def drop_cached(self, sha: str) -> None:
        info = self.infos.pop(sha, None)
        if info:
            for b in info.blocks:
                self.cache.pop(b, None)

    def _disk_full(self) -> FileProblem:
        # Recorded as a write error: retried later, not a bad block.
        return FileProblem(f"cannot write: no space left on the device holding {self.writer.root}",
                           kind=ErrorKind.WRITE)

    def has_small(self, sha: str) -> bool:
        """Whether `sha` is a one-block content already fetched and verified."""
        info = self.infos.get(sha)
        if info is None or len(info.blocks) != 1 or info.blocks[0] not in self.cache:
            return False
        # The block is the whole content: a plain block is named by the content's SHA-256; a
        # sealed block's plaintext must hash to it.
        return info.blocks[0] == sha or hashlib.sha256(self.cache[info.blocks[0]]).hexdigest() == sha

    def write_small(self, sha: str, mtime_ns: int | None) -> str:
        """Write a small fetched content (see has_small) into a new temp file; returns its name.
        Thread-safe. Raises FileProblem when the disk is full, OSError otherwise."""
        name, fd = self.writer.new_temp()
        try:
            os.write(fd, self.cache[self.infos[sha].blocks[0]])
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        except OSError as e:
            os.close(fd)
            self.writer.discard_temp(name)
            if e.errno == errno.ENOSPC:
                raise self._disk_full() from e
            raise
        os.close(fd)
        return name

    def fetch(self, sha: str, size: int, base: str | None = None) -> str:
        """Write the content `sha` into a temp file; returns its name in `.shoal/tmp`.

        Resumes a partial temp file of an earlier attempt. Blocks that the folder's file `base`
        (the version being replaced) has at the same offset are copied from it, not fetched: an
        edit in the middle of a big file moves only the blocks it touched. Raises FileProblem if
        the hub lacks the content or a block keeps failing its check, HubUnreachable for the hub.
        """
        info = self.infos.get(sha) or self.hub.get_contents([sha]).get(sha)
        if info is None:
            raise FileProblem(f"content {sha[:12]!r} is not on the hub")
        check_content_info(sha, info)
        if info.size != self.hub.stored_size(size):
            raise FileProblem(f"content {sha[:12]} has size {info.size} on the hub, not {size}")
        if self.has_small(sha):
            name = self.write_small(sha, None)
            if self.progress:
                self.progress(size)
            return name
        name, fd = self.writer.new_temp(part_name(sha))
        base_fd = self._open_base(base)
        try:
            whole = hashlib.sha256()
            ranges = block_ranges(size) if info.blocks else []
            if len(ranges) != len(info.blocks) or (ranges and ranges[0][1] > info.block_size):
                raise FileProblem(f"content {sha[:12]} has an inconsistent block list on the hub")
            have = os.fstat(fd).st_size
            start = 0
            # Resume: keep the leading blocks that still verify.
            for (offset, length), bsha in zip(ranges, info.blocks):
                if offset + length > have:
                    break
                data = _read_exact(fd, offset, length)
                if self.hub.seal_block(data)[0] != bsha:
                    break
                whole.update(data)
                start += 1
            resume_at = ranges[start][0] if start < len(ranges) else size
            if have != resume_at:  # truncating a new file would make ext4 flush it on close
                os.ftruncate(fd, resume_at)
            i = start
            most = self.throttle.group_bytes()
            while i < len(ranges):
                group = []
                group_bytes = 0
                while i < len(ranges) and (not group or group_bytes + ranges[i][1] <= most):
                    group.append(i)
                    group_bytes += ranges[i][1]
                    i += 1
                local = self._same_blocks(base_fd, group, ranges, info.blocks)
                self.throttle.wait(sum(ranges[j][1] for j in group
                                       if j not in local and info.blocks[j] not in self.cache), self.progress)
                blocks = self._get_verified([info.blocks[j] for j in group if j not in local])
                for j in group:
                    data = local[j] if j in local else blocks[info.blocks[j]]
                    os.pwrite(fd, data, ranges[j][0])
                    whole.update(data)
                if self.progress:
                    self.progress(group_bytes)
            if whole.hexdigest() != sha:
                os.ftruncate(fd, 0)
                raise FileProblem(f"content {sha[:12]} does not match its SHA-256 after download")
        except OSError as e:
            if e.errno == errno.ENOSPC:
                os.ftruncate(fd, 0)  # the disk is full: give the space back, retry from scratch later
                raise self._disk_full() from e
            raise
        finally:
            os.close(fd)
            if base_fd is not None:
                os.close(base_fd)
        return name

    def _open_base(self, base: str | None) -> int | None:
        if base is None:
            return None
        try:
            return self.writer.open_read(base)
        except (OSError, PathRefused):
            return None  # gone or not a plain file: every block comes from the hub

    def _same_blocks(self, base_fd: int | None, group: list[int], ranges: list[tuple[int, int]],
                     names: list[str]) -> dict[int, bytes]:
        """The blocks of `group` that the base file holds at the same offsets (index -> bytes)."""
        if base_fd is None:
            return {}
        same = {}
        for j in group:
            offset, length = ranges[j]
            try:
                data = _read_exact(base_fd, offset, length)
            except OSError:
                break
            if len(data) == length and self.hub.seal_block(data)[0] == names[j]:
                same[j] = data
        return same

    def _get_verified(self, names: list[str]) -> dict[str, bytes]:
        out = {n: self.cache[n] for n in names if n in self.cache}
        for attempt in range(2):
            need = [n for n in dict.fromkeys(names) if n not in out]
            if not need:
                break
            for s, stored in self.hub.get_blocks(need).items():
                data = self.hub.open_block(s, stored)  # a corrupt (or tampered) block is refused
                if data is not None:
                    out[s] = data
                    self.bytes_fetched += len(stored)
        missing = [n for n in names if n not in out]
        if missing:
            raise FileProblem(f"block {missing[0][:12]} is missing on the hub or failed its check twice")
        return out
