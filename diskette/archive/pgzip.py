"""A gzip stream compressed on several threads, as ``pigz`` does.

Data is cut into blocks, each compressed into a gzip member of its own by a
thread pool (zlib releases the GIL, so the blocks really compress in
parallel), and the members are written in order. A file of concatenated
gzip members is one valid gzip file: ``gzip``, ``tar xzf``, Python's
``gzip``/``tarfile`` and diskette 0.6 read it whole. It costs a few bytes a
block and a little ratio, since blocks do not share their history.
"""

from __future__ import annotations

import gzip
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

BLOCK_SIZE = 1024 * 1024


class ParallelGzipWriter:
    """Write-only file object: gzip-compress what is written into ``target``.

    :param workers: compressing threads; default one per core.
    """

    def __init__(
        self, target: Any, *, compresslevel: int, mtime: int, workers: int | None = None
    ) -> None:
        self.target = target
        self.level, self.mtime = compresslevel, mtime
        self.workers = workers or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="diskette-gzip")
        self.pending: deque[Future[bytes]] = deque()
        self.buffer = bytearray()
        self.blocks = 0

    def write(self, data: Any) -> int:
        self.buffer += data
        while len(self.buffer) >= BLOCK_SIZE:
            self._submit(bytes(self.buffer[:BLOCK_SIZE]))
            del self.buffer[:BLOCK_SIZE]
        return len(data)

    def close(self) -> None:
        """Compress what is left and write every block, in order."""
        if self.buffer or not self.blocks:  # an empty stream is one empty member
            self._submit(bytes(self.buffer))
            self.buffer.clear()
        self._drain(0)
        self.pool.shutdown()

    def abort(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def _submit(self, block: bytes) -> None:
        self.pending.append(
            self.pool.submit(gzip.compress, block, self.level, mtime=self.mtime)
        )
        self.blocks += 1
        self._drain(2 * self.workers)  # bounded: memory stays a few blocks

    def _drain(self, keep: int) -> None:
        while len(self.pending) > keep:
            self.target.write(self.pending.popleft().result())
