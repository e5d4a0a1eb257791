"""How a file's content is cut into blocks for the hub's content-addressed store.

Owns the block size rule of DESIGN "Hub": the block size grows with the file (as Syncthing's,
128 KiB to 16 MiB) so that a file has at most about 2000 blocks, and the byte ranges of those
blocks. Every device must cut the same file the same way, or blocks would not deduplicate.
"""

from __future__ import annotations

MIN_BLOCK = 128 * 1024
MAX_BLOCK = 16 * 1024 * 1024
#: The number of blocks a file should not exceed while the block size can still grow.
TARGET_MAX_BLOCKS = 2000


def block_size_for(file_size: int) -> int:
    """The smallest power of two in [MIN_BLOCK, MAX_BLOCK] that cuts `file_size` bytes into
    at most 2000 blocks; MAX_BLOCK for files too large for that.
    Raises ValueError for a negative size.
    """
    if file_size < 0:
        raise ValueError(f"negative file size: {file_size}")
    size = MIN_BLOCK
    while size < MAX_BLOCK and -(-file_size // size) > TARGET_MAX_BLOCKS:
        size *= 2
    return size


def block_ranges(file_size: int) -> list[tuple[int, int]]:
    """The (offset, length) of each block of a `file_size`-byte file, in order; every block
    but the last is full. An empty file has no blocks. Raises ValueError for a negative size.
    """
    size = block_size_for(file_size)
    return [(offset, min(size, file_size - offset)) for offset in range(0, file_size, size)]
