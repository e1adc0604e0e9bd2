"""Gzip streams on threads: compressed in parallel, decompressed ahead.

Writing: data is cut into blocks, each compressed into a gzip member of its
own by a thread pool (zlib releases the GIL, so the blocks really compress
in parallel), and the members are written in order. A file of concatenated
gzip members is one valid gzip file: ``gzip``, ``tar xzf``, Python's
``gzip``/``tarfile`` and diskette 0.6 read it whole. It costs a few bytes a
block and a little ratio, since blocks do not share their history.

Reading: parsing tar headers in Python holds the GIL, so reading (and, when
asked, hashing) and decompressing the raw file happen one step ahead on a
thread of their own, which zlib and hashlib let run beside it. Any number
of members is read, as ``gzip`` does, and zlib checks each member's CRC and
length.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import queue
import threading
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

BLOCK_SIZE = 1024 * 1024
#: zlib's window bits for a gzip header and trailer.
GZIP_WBITS = 16 + zlib.MAX_WBITS
GZIP_MAGIC = b"\x1f\x8b"


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
        self.aborted = False

    def write(self, data: Any) -> int:
        if self.aborted:  # tarfile's stream flushes its buffer when collected
            return len(data)
        self.buffer += data
        while len(self.buffer) >= BLOCK_SIZE:
            self._submit(bytes(self.buffer[:BLOCK_SIZE]))
            del self.buffer[:BLOCK_SIZE]
        return len(data)

    def close(self) -> None:
        """Compress what is left and write every block, in order."""
        if self.aborted:
            return
        if self.buffer or not self.blocks:  # an empty stream is one empty member
            self._submit(bytes(self.buffer))
            self.buffer.clear()
        self._drain(0)
        self.pool.shutdown()

    def abort(self) -> None:
        """Stop without writing: queued blocks are dropped, later writes ignored.

        A failed or interrupted dump must not spend minutes compressing (and
        writing, maybe onto a full disk) an archive that is deleted anyway.
        Blocks being compressed finish (zlib cannot be stopped), unwritten.
        """
        self.aborted = True
        self.buffer.clear()
        self.pending.clear()
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


class PrefetchingGzipReader:
    """Read-only file object: the gzip file ``source`` decompressed on a thread.

    Memory stays bounded: at most ``depth`` blocks of ``BLOCK_SIZE`` wait,
    however much a block inflates. Errors of the thread (truncation, a bad
    CRC, a foreign file, an OS error) are raised by :meth:`read`. ``size``
    and ``sha256`` describe the raw file once :meth:`read` has returned
    ``b""``.

    :param progress: called with the raw bytes consumed, on the caller's thread.
    :param digest: hash the raw file too (``sha256`` is None otherwise).
    """

    def __init__(
        self,
        source: IO[bytes],
        *,
        progress: Callable[[int], None] | None = None,
        digest: bool = False,
        depth: int = 8,
    ) -> None:
        self.source = source
        self.progress = progress
        self.size = 0
        self.hash = hashlib.sha256() if digest else None
        self._queue: queue.Queue[tuple[bytes, int] | BaseException | None] = queue.Queue(
            depth
        )
        self._stop = threading.Event()
        self._block, self._offset, self._done = b"", 0, False
        self._thread = threading.Thread(
            target=self._produce, name="diskette-gunzip", daemon=True
        )
        self._thread.start()

    @property
    def sha256(self) -> str | None:
        return self.hash.hexdigest() if self.hash is not None else None

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(BLOCK_SIZE), b""))
        while self._offset >= len(self._block):
            if self._done:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if item is None:
                self._done = True
                return b""
            self._block, self._offset = item[0], 0
            if self.progress is not None and item[1]:
                self.progress(item[1])
        data = self._block[self._offset : self._offset + size]
        self._offset += len(data)
        return data

    def close(self) -> None:
        """Stop the thread, even if it waits on a full queue."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.01)

    def __enter__(self) -> PrefetchingGzipReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _put(self, item: tuple[bytes, int] | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        try:
            self._inflate_all()
        except BaseException as exc:  # handed to the reader, raised there
            self._put(exc)
        else:
            self._put(None)

    def _inflate_all(self) -> None:
        inflater: Any = None  # the member being read; None between members
        started = False
        while not self._stop.is_set():
            raw = self.source.read(BLOCK_SIZE)
            if not raw:
                break
            if self.hash is not None:
                self.hash.update(raw)
            self.size += len(raw)
            consumed = len(raw)
            while not self._stop.is_set():
                if inflater is None:
                    # gzip tolerates zero padding after a member: so do we.
                    raw = raw.lstrip(b"\0") if started else raw
                    if not raw:
                        break
                    if not GZIP_MAGIC.startswith(raw[:2]):
                        raise gzip.BadGzipFile(f"Not a gzipped file ({raw[:2]!r})")
                    inflater, started = zlib.decompressobj(GZIP_WBITS), True
                data = inflater.decompress(raw, BLOCK_SIZE)
                raw = inflater.unconsumed_tail
                if data:
                    self._put((data, consumed))
                    consumed = 0
                if inflater.eof:
                    raw, inflater = inflater.unused_data, None
                elif not raw and len(data) < BLOCK_SIZE:
                    break  # all input used, no output held back: read on
            if consumed:
                self._put((b"", consumed))
        if inflater is not None and not self._stop.is_set():
            raise EOFError(
                "Compressed file ended before the end-of-stream marker was reached"
            )
