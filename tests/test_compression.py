"""The gzip streams of archives, on isa-l and on the standard library alike."""

import errno
import gzip
import hashlib
import io
import os
import random
import threading
import zlib

import pytest

from diskette.archive.compression import (
    BLOCK_SIZE,
    DECOMPRESSION_ERRORS,
    GzipReader,
    GzipWriter,
)
from tests.gzip_backends import BACKENDS, use


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request, monkeypatch):
    return use(request.param, monkeypatch)


def fixture_lines(count: int) -> bytes:
    """JSON Lines as ``dumpdata`` writes them: what a dump compresses besides media."""
    rng = random.Random(14)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing"]
    return b"".join(
        b'{"model": "demo.book", "pk": %d, "fields": {"title": "%s", "price": "%.2f"}}\n'
        % (pk, " ".join(rng.choices(words, k=4)).encode(), rng.random() * 100)
        for pk in range(count)
    )


#: Media as a dump meets it: incompressible blocks, then text.
MEDIA = os.urandom(2 * BLOCK_SIZE + 17) + fixture_lines(20_000)


def compress(data: bytes, write_size: int = 10240) -> bytes:
    out = io.BytesIO()
    writer = GzipWriter(out)
    for start in range(0, len(data), write_size):
        writer.write(data[start : start + write_size])
    writer.close()
    return out.getvalue()


def read_all(data: bytes, block: int = 4096) -> bytes:
    with GzipReader(io.BytesIO(data), digest=True) as reader:
        return b"".join(iter(lambda: reader.read(block), b""))


def test_what_is_written_is_one_gzip_member():
    """One member, as ``gzip`` writes: every gunzip reads it, at its best speed."""
    data = compress(MEDIA)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflater.decompress(data) == MEDIA
    assert inflater.eof and inflater.unused_data == b""
    assert read_all(data) == MEDIA
    assert compress(b"") and gzip.decompress(compress(b"")) == b""


def test_data_compresses_nearly_as_well_as_gzip_6():
    """isa-l trades ratio for speed on text (a third more bytes here), not more."""
    text = fixture_lines(20_000)
    assert len(compress(text)) < 1.5 * len(gzip.compress(text, compresslevel=6))


class Disk:
    """A target that fills up after ``room`` bytes, keeping what it took."""

    def __init__(self, room: int = 1 << 40) -> None:
        self.room = room
        self.data = bytearray()

    def write(self, data) -> int:
        if len(self.data) + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.data += data
        return len(data)


def test_a_write_error_of_the_target_raises_on_the_caller_thread():
    writer = GzipWriter(Disk(room=BLOCK_SIZE))
    with pytest.raises(OSError, match="No space left"):
        for _ in range(8):
            writer.write(os.urandom(BLOCK_SIZE))
        writer.close()
    writer.abort()


def test_abort_writes_nothing_more_and_stops_every_thread():
    threads = set(threading.enumerate())
    disk = Disk()
    writer = GzipWriter(disk)
    for _ in range(4):
        writer.write(os.urandom(BLOCK_SIZE))
    writer.abort()
    written = len(disk.data)
    writer.write(b"ignored")
    writer.close()
    assert len(disk.data) == written
    assert set(threading.enumerate()) == threads
    with pytest.raises(EOFError):  # never finished: no trailer
        gzip.decompress(bytes(disk.data))


def test_every_member_is_read_and_zero_padding_tolerated():
    parts = [os.urandom(3000), b"text " * 5000, b""]
    data = b"".join(gzip.compress(part) for part in parts)
    assert read_all(data) == b"".join(parts)
    assert read_all(data + bytes(700)) == b"".join(parts)
    assert read_all(gzip.compress(b"a") + bytes(9) + gzip.compress(b"b")) == b"ab"


def test_size_sha256_and_progress_describe_the_raw_file():
    data = compress(MEDIA)
    seen = []
    with GzipReader(io.BytesIO(data), digest=True, progress=seen.append) as reader:
        while reader.read(1000):
            pass
    assert (reader.size, reader.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert sum(seen) == len(data)
    with GzipReader(io.BytesIO(data)) as reader:
        assert reader.read(10) and reader.sha256 is None


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


TEXT_GZ = gzip.compress(b"lorem ipsum dolor amet " * 50_000)


@pytest.mark.parametrize(
    "damaged",
    [
        TEXT_GZ[:-4],  # truncated trailer
        TEXT_GZ[: len(TEXT_GZ) // 2],
        TEXT_GZ[:-8] + b"\0\0\0\0" + TEXT_GZ[-4:],  # CRC
        TEXT_GZ[:-4] + b"\0\0\0\0",  # length
        TEXT_GZ + b"garbage",
        b"not gzip at all",
        *(flip(TEXT_GZ, position) for position in (12, 40, len(TEXT_GZ) // 2)),
    ],
)
def test_damaged_streams_are_refused(damaged):
    with pytest.raises(DECOMPRESSION_ERRORS):
        read_all(damaged)


@pytest.mark.parametrize("content", [b"h", b"hello", b"hello, not gzip at all"])
def test_what_is_not_gzip_is_called_so_however_short(content):
    with pytest.raises(gzip.BadGzipFile, match=r"^Not a gzipped file \(b'he?'\)$"):
        read_all(content)


def test_memory_stays_bounded_on_a_compression_bomb():
    bomb = gzip.compress(bytes(64 * 1024 * 1024))  # 64 MiB in about 64 KiB
    with GzipReader(io.BytesIO(bomb)) as reader:
        sizes = [len(b) for b in iter(lambda: reader.read(1 << 30), b"")]
    assert sum(sizes) == 64 * 1024 * 1024
    assert max(sizes) <= BLOCK_SIZE


def test_closing_early_stops_the_reading_thread():
    threads = set(threading.enumerate())
    reader = GzipReader(io.BytesIO(gzip.compress(os.urandom(20 * BLOCK_SIZE))))
    reader.read(10)
    reader.close()
    assert set(threading.enumerate()) == threads
