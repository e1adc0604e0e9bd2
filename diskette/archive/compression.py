"""Gzip streams for archives: isa-l on threads when installed, zlib otherwise.

With the ``fast`` extra, python-isal (Intel's isa-l) does the work: its
threaded writer compresses blocks in parallel, each primed with the last
32 KiB of the one before, into a single gzip member (as ``pigz`` does), and
its reader decompresses on a thread of its own, a few blocks ahead. Measured
for issue 14 on 200 MB of media, isa-l compressed in 0.4 s what zlib's level
6 took 6 s for, to a file 0.6% larger (JSON: a third larger); that is what
lets a dump beat ``tar czf``.

Without it, the standard library's :mod:`gzip` does the same work on the
caller's thread: slower, never different. (diskette's own threaded zlib,
which this replaces, dumped within 20% of it either way on two shared
cores, where the main thread reading, hashing and tarring is the
bottleneck.) Either way the archive is one gzip file that ``tar xzf``,
Python's :mod:`tarfile` and diskette 0.6 read, and either reader reads any
gzip file (concatenated members, zero padding between them), checks each
member's CRC and length, and hands out at most a block at a time however
far a block inflates.

Both readers also count, and may hash, the raw file as they read it: the
sha256 of an archive costs no second pass.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import zlib
from collections.abc import Callable
from typing import Any, Protocol, cast

try:
    from isal import __version__ as isal_version
    from isal import igzip_threaded, isal_zlib
except ImportError:  # the ``fast`` extra is not installed: zlib does the work
    igzip_threaded = isal_zlib = None  # type: ignore[assignment]
else:
    # Before 1.9, a failed write (a full disk) killed isa-l's writing thread
    # and left the dump waiting for it forever: zlib is better than that.
    if tuple(map(int, re.findall(r"\d+", isal_version)[:2])) < (1, 9):
        igzip_threaded = isal_zlib = None  # type: ignore[assignment]

#: Blocks compressed, queued and handed out: memory stays a few of them.
BLOCK_SIZE = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
#: ``tar czf`` compresses at gzip's default level; Python's default (9) costs
#: about three times the time for a few percent of size.
ZLIB_LEVEL = 6
#: isa-l's levels run from 0 to 3; its default (2) compresses media within a
#: percent of zlib's 6 (photos and documents are compressed already) and
#: text as zlib's 1 does; 3 takes three times as long for 2% on JSON.
ISAL_LEVEL = 2
#: Compressing threads at most. One already compresses faster than the main
#: thread reads, hashes and tars (500 MB/s of media against 100 here); a few
#: more absorb text, which compresses slower, and each holds three blocks.
MAX_THREADS = 4
#: What a truncated, corrupt or foreign gzip file raises, whichever reads it.
DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, gzip.BadGzipFile)
if isal_zlib is not None:  # corrupt deflate data; a bad CRC is a BadGzipFile
    # python-isal's stubs declare ``error`` an instance: it is the class raised.
    DECOMPRESSION_ERRORS += (cast("type[Exception]", isal_zlib.error),)


class Writable(Protocol):
    def write(self, data: Any, /) -> int: ...


def backend() -> str:
    """``"isal"`` or ``"zlib"``: what compresses and decompresses here."""
    return "zlib" if igzip_threaded is None else "isal"


class GzipWriter:
    """Write-only file object: gzip-compress what is written into ``target``.

    Errors of ``target`` (a full disk) raise from :meth:`write` or
    :meth:`close`, on the caller's thread, whichever thread met them.
    :meth:`tell` counts the bytes written before compression, which is all
    :class:`tarfile.TarFile` needs to write into it directly.
    """

    def __init__(self, target: Writable) -> None:
        self._sink = _Sink(target)
        self._aborted = False
        self._written = 0
        self._stream: io.BufferedIOBase
        if igzip_threaded is None:
            # mtime 0, as isa-l and ``tar czf`` write: tar keeps the real times.
            self._stream = gzip.GzipFile(
                fileobj=self._sink, mode="wb", compresslevel=ZLIB_LEVEL, mtime=0
            )
        else:
            self._stream = igzip_threaded.open(
                self._sink,
                "wb",
                compresslevel=ISAL_LEVEL,
                threads=compressing_threads(),
                block_size=BLOCK_SIZE,
            )

    def write(self, data: Any) -> int:
        if self._aborted:
            return len(data)
        self._written += len(data)
        return self._stream.write(data)

    def tell(self) -> int:
        return self._written

    def close(self) -> None:
        """Compress what is left and write the gzip trailer."""
        if not self._aborted:
            self._stream.close()

    def abort(self) -> None:
        """Stop without writing: what is queued is dropped, later writes ignored.

        A failed or interrupted dump must not write (maybe onto a full disk)
        an archive that is deleted anyway. isa-l's threads are stopped by
        closing the stream into a sink that drops everything: they compress
        at most the few blocks already queued, in milliseconds.
        """
        if self._aborted:
            return
        self._aborted = self._sink.dropping = True
        with contextlib.suppress(Exception):  # an error of the archive being dropped
            self._stream.close()


class _Sink:
    """Where the compressed stream goes, until :meth:`GzipWriter.abort` drops it."""

    def __init__(self, target: Writable) -> None:
        self.target = target
        self.dropping = False

    def write(self, data: Any) -> int:
        if self.dropping:
            return len(data)
        return self.target.write(data)

    def flush(self) -> None:
        """isa-l flushes its file; the target is flushed by its owner."""


def compressing_threads() -> int:
    """The cores this process may use, at most :data:`MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


class GzipReader:
    """Read-only file object: the gzip file ``source``, decompressed.

    isa-l reads, hashes and decompresses ``source`` on a thread of its own,
    a few blocks ahead of the caller, who meanwhile parses tar headers and
    hashes members: the two overlap (zlib does it all on the caller's
    thread). Errors (truncation, a bad CRC, a foreign file, an OS error) are
    raised by :meth:`read`. ``size`` and ``sha256`` describe the raw file
    once :meth:`read` has returned ``b""``.

    :param progress: called with the raw bytes read, on the caller's thread.
    :param digest: hash the raw file too (``sha256`` is None otherwise).
    """

    def __init__(
        self,
        source: io.BufferedIOBase,
        *,
        progress: Callable[[int], None] | None = None,
        digest: bool = False,
    ) -> None:
        self.raw = _RawFile(source, digest)
        self.progress = progress
        self._reported = 0
        # The block being handed out: a tar header or a small file is a
        # slice of it, not a call down the (Python) gzip stream each.
        self._block, self._offset = b"", 0
        self._stream: io.BufferedIOBase
        if igzip_threaded is None:
            self._stream = gzip.GzipFile(fileobj=self.raw, mode="rb")
        else:
            self._stream = igzip_threaded.open(
                self.raw, "rb", threads=1, block_size=BLOCK_SIZE
            )

    @property
    def size(self) -> int:
        return self.raw.size

    @property
    def sha256(self) -> str | None:
        return self.raw.hash.hexdigest() if self.raw.hash is not None else None

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, and never more than a block: ``b""`` at the end."""
        if self._offset >= len(self._block):
            self._block, self._offset = self._stream.read1(BLOCK_SIZE), 0
            if self.progress is not None and self.raw.size > self._reported:
                self.progress(self.raw.size - self._reported)
                self._reported = self.raw.size
        data = self._block[self._offset : self._offset + size]
        self._offset += len(data)
        return data

    def close(self) -> None:
        """Stop the reading thread, if any, even if it waits on a full queue."""
        self._stream.close()

    def __enter__(self) -> GzipReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _RawFile:
    """The raw file as the decompressor reads it: counted, maybe hashed.

    Its first bytes are checked too: isa-l calls a file shorter than a gzip
    header truncated, where it is rather no gzip file at all, as the
    standard library says (a text file given as an archive, say).
    """

    def __init__(self, source: io.BufferedIOBase, digest: bool) -> None:
        self.source = source
        self.size = 0
        self.hash = hashlib.sha256() if digest else None

    # One read of the source each, returning what there is: from a pipe (an
    # archive fed as it downloads) a full block would wait for the next
    # megabyte; from a file it is the same as a full read.
    def read(self, size: int = -1) -> bytes:
        data = self.source.read1(size)
        self._count(data)
        return data

    def readinto(self, buffer: Any) -> int:
        count = self.source.readinto1(buffer)
        self._count(memoryview(buffer)[:count])
        return count

    def _count(self, data: Any) -> None:
        if not self.size and data and not GZIP_MAGIC.startswith(bytes(data[:2])):
            raise gzip.BadGzipFile(f"Not a gzipped file ({bytes(data[:2])!r})")
        if self.hash is not None:
            self.hash.update(data)
        self.size += len(data)
