"""Tar headers read by hand: ustar, pax and GNU long names, nothing more.

Why not :mod:`tarfile`: in stream mode it costs tens of microseconds of
Python a member and reads content through 10 KiB buffers, which made
extraction slower than ``tar xzf`` on a media tree of small files (see
``benchmarks/``). This reader parses a header with a few slices, and hands
out each member's content in the blocks the stream gives.

It only reads; :mod:`tarfile` still writes. It reports every member type it
meets (hard links, devices and unknown types included) so the caller can
refuse them, and refuses what it cannot read faithfully itself: a bad
header checksum, sparse files, an archive without its end marker.

Member content is streamed, but a pax extended header or a GNU long name is
read whole before the member it describes, so its size, which the archive
alone decides, is bounded before a byte of it is read: a few hundred bytes
of gzip can otherwise claim (and make us allocate) gigabytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..exceptions import TarFormatError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
POSIX_MAGIC = b"ustar\x0000"
#: Each flag byte and the kind of member it makes (unknown flags: "special").
KINDS = {
    b"0": "file",
    b"\x00": "file",
    b"7": "file",  # contiguous file: a regular file to every reader
    b"1": "hardlink",
    b"2": "symlink",
    b"5": "directory",
}
#: Pax keys applied to the member; others (owners, times) are ignored.
PAX_KEYS = ("path", "linkpath", "size", "mtime")
#: Largest pax header read. What diskette writes (a long path, a link target,
#: a fractional mtime) takes a few KiB; other writers add owners, times and
#: extended attributes (ACLs, SELinux labels), still far below this. Beyond
#: it the header is refused unread: it is read whole into memory.
PAX_HEADER_LIMIT = 1024 * 1024
#: Largest GNU long name or link target, and pax path or linkpath. A path is
#: at most a few KiB on any system (PATH_MAX is 4096 on Linux, 1024 on macOS):
#: 64 KiB leaves room for deep trees while bounding what is held.
NAME_LIMIT = 64 * 1024
#: Most records in one pax header: the bytes are bounded by PAX_HEADER_LIMIT,
#: this bounds the work of parsing ``5 a=\n`` records by the hundred thousand.
PAX_RECORDS_LIMIT = 10_000
#: Largest read when skipping what was not read of a member, so a source that
#: returns what is asked never hands over a whole member at once.
SKIP_CHUNK = 1024 * 1024


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class TarMember:
    """One member's header: ``kind`` is file, directory, symlink, hardlink or special."""

    name: str
    kind: str
    size: int
    mode: int
    mtime: float
    linkname: str


class TarStream:
    """Iterate over the members of the tar stream ``source``.

    While a member is current, :meth:`read` returns its content; moving on
    skips what was not read. Iteration ends at the end-of-archive block.
    """

    def __init__(self, source: Readable) -> None:
        self.source = source
        # What was read from source and not consumed yet: a block and an
        # offset, so taking a header never copies the rest of the block.
        self._block, self._offset = b"", 0
        self._left = 0  # content bytes of the current member not yet read
        self._padding = 0

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current member's content; ``b""`` at its end."""
        if not self._left:
            return b""
        data = self._take(min(size, self._left), exact=False)
        self._left -= len(data)
        return data

    def __iter__(self) -> Iterator[TarMember]:
        extended: dict[str, str] = {}
        global_extended: dict[str, str] = {}
        while True:
            self._skip(self._left + self._padding)
            self._left = self._padding = 0
            block = self._take(BLOCK, exact=True)
            if block == ZERO_BLOCK:
                return
            flag, name, linkname, size = _parse(block)
            if flag in (b"x", b"g", b"L", b"K"):
                _check_header_size(flag, size)  # before reading it: it is held whole
                content = self._take(size, exact=True)
                self._skip(-size % BLOCK)
                if flag == b"x":
                    extended.update(_pax_records(content))
                elif flag == b"g":
                    global_extended.update(_pax_records(content))
                elif flag == b"L":
                    extended["path"] = _text(content.split(b"\x00", 1)[0])
                else:
                    extended["linkpath"] = _text(content.split(b"\x00", 1)[0])
                continue
            values = {**global_extended, **extended}
            extended = {}
            kind = KINDS.get(flag, "special")
            name = values.get("path", name)
            if kind == "file" and name.endswith("/"):
                kind = "directory"  # an old-style directory
            if "size" in values:
                size = _pax_number(values["size"], int, "size")
            mtime = (
                _pax_number(values["mtime"], float, "mtime")
                if "mtime" in values
                else _number(block[136:148])
            )
            if kind == "file":
                self._left, self._padding = size, -size % BLOCK
            yield TarMember(
                name=name.rstrip("/") if kind == "directory" else name,
                kind=kind,
                size=size if kind == "file" else 0,
                mode=_number(block[100:108]) & 0o7777,
                mtime=mtime,
                linkname=values.get("linkpath", linkname),
            )

    def _take(self, size: int, *, exact: bool) -> bytes:
        """``size`` bytes (or fewer but at least one, unless ``exact``) from the source."""
        available = len(self._block) - self._offset
        if not available:
            self._block, self._offset = self.source.read(max(size, BLOCK)), 0
            available = len(self._block)
            if not available and size:
                raise TarFormatError("the tar stream ends before its end-of-archive block")
        if available >= size or not exact:
            start = self._offset
            self._offset += min(size, available)
            return self._block[start : self._offset]
        parts, missing = [self._block[self._offset :]], size - available
        self._block, self._offset = b"", 0
        while missing > 0:
            chunk = self.source.read(max(missing, BLOCK))
            if not chunk:
                raise TarFormatError("the tar stream ends before its end-of-archive block")
            parts.append(chunk[:missing])
            if len(chunk) > missing:
                self._block, self._offset = chunk, missing
            missing -= len(chunk)
        return b"".join(parts)

    def _skip(self, size: int) -> None:
        available = len(self._block) - self._offset
        if size <= available:  # padding, mostly: no copy at all
            self._offset += size
            return
        while size > 0:
            size -= len(self._take(min(size, SKIP_CHUNK), exact=False))


def _parse(block: bytes) -> tuple[bytes, str, str, int]:
    """Flag, name, link name and size of a header block, its checksum checked."""
    recorded = _number(block[148:156])
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    if recorded != unsigned and recorded != _signed_checksum(block):
        raise TarFormatError("a tar header has a bad checksum")
    flag = block[156:157]
    name = _text(block[:100].split(b"\x00", 1)[0])
    if block[257:265] == POSIX_MAGIC and block[345] and flag not in (b"L", b"K"):
        name = _text(block[345:500].split(b"\x00", 1)[0]) + "/" + name
    linkname = _text(block[157:257].split(b"\x00", 1)[0])
    return flag, name, linkname, _number(block[124:136])


def _check_header_size(flag: bytes, size: int) -> None:
    """Refuse a pax header or GNU long name larger than diskette ever reads."""
    pax = flag in (b"x", b"g")
    limit = PAX_HEADER_LIMIT if pax else NAME_LIMIT
    if size > limit:
        what = "a pax extended header" if pax else "a GNU long name header"
        raise TarFormatError(
            f"{what} of {size} bytes exceeds diskette's limit of {limit} bytes; "
            "no archive diskette writes holds one: use another archive"
        )


def _signed_checksum(block: bytes) -> int:
    """The checksum some old tars wrote, summing bytes as signed chars."""
    rest = block[:148] + block[156:]
    return sum(byte - 256 if byte > 127 else byte for byte in rest) + 8 * 0x20


def _number(field: bytes) -> int:
    """An octal header number, or GNU's base-256 form for large values."""
    if field[0] == 0x80:
        return int.from_bytes(field[1:], "big")
    if field[0] & 0x80:
        raise TarFormatError("a tar header holds a negative number")
    digits = field.split(b"\x00", 1)[0].strip()
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        raise TarFormatError(f"a tar header holds an invalid number: {digits!r}") from None


def _pax_records(content: bytes) -> dict[str, str]:
    """The ``LENGTH KEY=VALUE\\n`` records of a pax header, refusing sparse files."""
    records: dict[str, str] = {}
    position = count = 0
    while position < len(content) and content[position] != 0:
        count += 1
        if count > PAX_RECORDS_LIMIT:
            raise TarFormatError(
                f"a pax header holds over {PAX_RECORDS_LIMIT} records, "
                "more than any tar writes"
            )
        # The length field counts the whole record, so it has no more digits
        # than the header's size: a bound that keeps the search short too.
        space = content.find(b" ", position, position + len(str(len(content))) + 1)
        try:
            length = int(content[position:space]) if space > position else 0
        except ValueError:
            length = 0
        record = content[space + 1 : position + length]
        if space < 0 or length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise TarFormatError("a pax header is malformed")
        key, _, value = record[:-1].partition(b"=")
        name = key.decode("utf-8", "surrogateescape")
        if name.startswith("GNU.sparse"):
            raise TarFormatError(
                "the archive holds a sparse file, which diskette never writes"
            )
        if name in ("path", "linkpath") and len(value) > NAME_LIMIT:
            raise TarFormatError(
                f"a pax header holds a {name} of {len(value)} bytes, "
                f"over diskette's limit of {NAME_LIMIT} bytes"
            )
        if name in PAX_KEYS:
            records[name] = _text(value)
        position += length
    return records


_Number = TypeVar("_Number", int, float)


def _pax_number(value: str, kind: type[_Number], key: str) -> _Number:
    try:
        number = kind(value)
    except ValueError:
        raise TarFormatError(f"a pax header holds an invalid {key}: {value!r}") from None
    if number < 0:
        raise TarFormatError(f"a pax header holds a negative {key}")
    return number


def _text(raw: bytes) -> str:
    """Names as :mod:`tarfile` decodes them: UTF-8, undecodable bytes kept."""
    return raw.decode("utf-8", "surrogateescape")
