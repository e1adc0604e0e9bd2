"""The hand-written tar reader, against real tar files.

Every archive here is written by :mod:`tarfile` or GNU ``tar``; the reader
must see exactly what :mod:`tarfile` sees, and refuse what it cannot read
faithfully.
"""

import io
import os
import shutil
import subprocess
import tarfile

import pytest

from diskette.archive.tarstream import (
    NAME_LIMIT,
    PAX_HEADER_LIMIT,
    PAX_RECORDS_LIMIT,
    TarStream,
)
from diskette.exceptions import TarFormatError

LONG = "media/" + "/".join(["folder-with-a-long-name"] * 6) + "/file.txt"
NAMES = ["media/a.txt", LONG, "media/çà et là/été.txt", "media/" + "x" * 99]
KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.DIRTYPE: "directory",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "special",
}


def sample(format: int, mtime: float = 1_700_000_000) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as tar:
        for index, name in enumerate(NAMES):
            content = name.encode() * (index * 300 + 1)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o640 + index, mtime
            tar.addfile(info, io.BytesIO(content))
        for kind, linkname in [
            (tarfile.DIRTYPE, ""),
            (tarfile.SYMTYPE, "a.txt"),
            (tarfile.SYMTYPE, "../" + LONG),
            (tarfile.LNKTYPE, "media/a.txt"),
            (tarfile.FIFOTYPE, ""),
        ]:
            info = tarfile.TarInfo(f"media/{kind.decode()}-{len(linkname)}")
            info.type, info.linkname, info.mtime = kind, linkname, mtime
            tar.addfile(info)
    return buffer.getvalue()


def as_tarfile_sees_it(data: bytes) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [
            (
                info.name,
                KINDS[info.type],
                info.mode,
                info.mtime,
                info.linkname,
                tar.extractfile(info).read() if info.isfile() else b"",
            )
            for info in tar
        ]


def as_tarstream_sees_it(data: bytes, read_size: int = 1000) -> list[tuple]:
    stream = TarStream(io.BytesIO(data))
    members = []
    for member in stream:
        content = b"".join(iter(lambda: stream.read(read_size), b""))
        assert len(content) == member.size
        members.append(
            (member.name, member.kind, member.mode, member.mtime, member.linkname, content)
        )
    return members


@pytest.mark.parametrize("format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_every_member_reads_as_tarfile_reads_it(format):
    data = sample(format)
    assert as_tarstream_sees_it(data) == as_tarfile_sees_it(data)
    # Content read in blocks of any size, crossing the source's block edges.
    assert as_tarstream_sees_it(data, read_size=7) == as_tarfile_sees_it(data)


def test_ustar_prefix_joins_the_name():
    name = "media/" + "p" * 120 + "/file.txt"  # over 100: split into prefix and name
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    assert [m[0] for m in as_tarstream_sees_it(buffer.getvalue())] == [name]


def test_pax_mtime_and_large_numbers_are_read():
    assert as_tarstream_sees_it(sample(tarfile.PAX_FORMAT, 1_700_000_000.25))[0][3] == (
        1_700_000_000.25
    )
    # GNU writes numbers too large for octal in base-256.
    huge = 8**12
    assert as_tarstream_sees_it(sample(tarfile.GNU_FORMAT, huge))[0][3] == huge


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is not installed")
def test_gnu_tar_output_reads_as_tarfile_reads_it(tmp_path):
    tree = tmp_path / "media"
    (tree / os.path.dirname(LONG[6:])).mkdir(parents=True)
    (tree / LONG[6:]).write_text("deep")
    (tree / "link").symlink_to(LONG[6:])
    (tree / "empty").mkdir()
    archive = tmp_path / "gnu.tar"
    subprocess.run(["tar", "cf", str(archive), "-C", str(tmp_path), "media"], check=True)
    data = archive.read_bytes()
    assert as_tarstream_sees_it(data) == as_tarfile_sees_it(data)


def test_a_damaged_header_is_refused():
    data = bytearray(sample(tarfile.PAX_FORMAT))
    data[10] ^= 0x01  # a name byte: the checksum no longer matches
    with pytest.raises(TarFormatError, match="bad checksum"):
        as_tarstream_sees_it(bytes(data))


def test_an_archive_without_its_end_marker_is_refused():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("media/a.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    whole = buffer.getvalue()
    assert as_tarstream_sees_it(whole)[0][-1] == b"ok"
    with pytest.raises(TarFormatError, match="ends before its end-of-archive block"):
        as_tarstream_sees_it(whole[:1024])  # the header and its content block only
    with pytest.raises(TarFormatError, match="ends"):
        as_tarstream_sees_it(whole[:700])  # inside the content


def test_sparse_files_are_refused():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("media/sparse")
        info.pax_headers = {"GNU.sparse.size": "1000000"}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(TarFormatError, match="sparse"):
        as_tarstream_sees_it(buffer.getvalue())


class Endless:
    """A source of zeros that counts what was read, and fails past ``budget``.

    A header claiming a gigabyte must be refused from its 512 bytes: reading
    on would allocate the gigabyte first (the bomb of issue 11).
    """

    def __init__(self, head: bytes, budget: int = 4 * 1024 * 1024) -> None:
        self.head, self.budget, self.consumed = head, budget, 0

    def read(self, size: int) -> bytes:
        self.consumed += size
        if self.consumed > self.budget:
            raise AssertionError(f"read {self.consumed} bytes of a header-only bomb")
        start = min(self.consumed - size, len(self.head))
        data = self.head[start : self.consumed]
        return data + bytes(size - len(data))


def header_block(kind: bytes, size: int, name: str = "././@PaxHeader") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def pax_record(key: bytes, value: bytes) -> bytes:
    """``LENGTH KEY=VALUE\\n``, the length counting its own digits."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    length += len(str(length)) - len(str(len(body)))
    return str(length).encode() + body


def with_header(body: bytes, kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A tar of one empty file ``short`` behind a ``kind`` header holding ``body``."""
    return b"".join(
        [
            header_block(kind, len(body)),
            body + bytes(-len(body) % 512),
            header_block(tarfile.REGTYPE, 0, "short"),
            bytes(1024),
        ]
    )


@pytest.mark.parametrize(
    ("kind", "what", "limit"),
    [
        (tarfile.XHDTYPE, "a pax extended header", PAX_HEADER_LIMIT),
        (tarfile.XGLTYPE, "a pax extended header", PAX_HEADER_LIMIT),
        (tarfile.GNUTYPE_LONGNAME, "a GNU long name header", NAME_LIMIT),
        (tarfile.GNUTYPE_LONGLINK, "a GNU long name header", NAME_LIMIT),
    ],
)
def test_a_huge_header_is_refused_after_reading_only_its_block(kind, what, limit):
    source = Endless(header_block(kind, 2**30))
    with pytest.raises(
        TarFormatError,
        match=rf"^{what} of 1073741824 bytes exceeds diskette's limit of {limit} bytes",
    ):
        list(TarStream(source))
    assert source.consumed == 512


@pytest.mark.parametrize(
    ("kind", "limit"),
    [(tarfile.XHDTYPE, PAX_HEADER_LIMIT), (tarfile.GNUTYPE_LONGNAME, NAME_LIMIT)],
)
def test_headers_up_to_the_limit_are_read(kind, limit):
    """The limit is exact: a header of that size reads, one byte more is refused."""
    name = b"media/" + b"n" * 200
    if kind == tarfile.XHDTYPE:  # the path, then a comment filling up to `limit`
        path = pax_record(b"path", name)
        digits = len(str(limit))
        body = path + pax_record(b"comment", b"c" * (limit - len(path) - digits - 10))
    else:
        body = name + bytes(limit - len(name))
    assert len(body) == limit
    assert [m[0] for m in as_tarstream_sees_it(with_header(body, kind))] == [name.decode()]
    with pytest.raises(TarFormatError, match="exceeds diskette's limit"):
        as_tarstream_sees_it(with_header(body + b"\0", kind))


def test_a_pax_header_of_countless_tiny_records_is_refused():
    records = b"6 a=b\n" * (PAX_RECORDS_LIMIT + 1)  # 60 KiB: under the byte limit
    with pytest.raises(TarFormatError, match=f"over {PAX_RECORDS_LIMIT} records"):
        as_tarstream_sees_it(with_header(records))
    assert as_tarstream_sees_it(with_header(b"6 a=b\n" * PAX_RECORDS_LIMIT))


def test_a_pax_path_longer_than_any_path_is_refused():
    record = pax_record(b"path", b"p" * (NAME_LIMIT + 1))
    with pytest.raises(TarFormatError, match=f"a path of {NAME_LIMIT + 1} bytes"):
        as_tarstream_sees_it(with_header(record))
    assert as_tarstream_sees_it(with_header(pax_record(b"path", b"p" * NAME_LIMIT)))


@pytest.mark.parametrize(
    "records",
    [
        b"99999999999999 path=x\n",  # claims more than the header holds
        b"1" * 5000 + b" path=x\n",  # a length field longer than the header's size
        b"path=x\n",  # no length at all
    ],
)
def test_a_pax_record_whose_length_lies_is_malformed(records):
    with pytest.raises(TarFormatError, match="a pax header is malformed"):
        as_tarstream_sees_it(with_header(records))
