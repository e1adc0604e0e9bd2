"""Files that appear whole or not at all, hashed as they are written.

Every archive diskette writes (a dump, an HTTP download, an SSH download)
goes through :class:`PartialFile`: a private file beside the target, under a
unique hidden name (``.<name>.<random>.part``), hashed and counted as bytes
arrive, flushed to disk, and only then given its name. A crash, a full disk
or a mismatch leaves no file that looks complete; two writers of one name
never share a temporary file. :class:`HashingReader` is the same on the
reading side.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .progress import human_size

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

#: Bytes read or written at a time: large enough that per-call costs vanish,
#: small enough to keep memory flat.
BLOCK_SIZE = 1024 * 1024

Progress = Callable[[int], None]


class _Counted:
    """What a written archive shares, whatever it goes to: its size and,
    with ``digest``, its sha256, kept as bytes pass."""

    def __init__(self, digest: bool) -> None:
        self.hash = hashlib.sha256() if digest else None
        self.size = 0

    @property
    def sha256(self) -> str | None:
        """Hex sha256 of what was written so far (``None`` without ``digest``)."""
        return self.hash.hexdigest() if self.hash is not None else None

    def _count(self, data: Any) -> None:
        if self.hash is not None:
            self.hash.update(data)
        self.size += len(data)


class PartialFile(_Counted):
    """A new file for ``target``, written privately and moved into place whole.

    Use as a context manager: leaving it without :meth:`commit` (an
    exception, Ctrl-C) removes the temporary file.

    :param mode: permissions, set before the first byte is written (0600 by
        default: archives hold production data).
    :param digest: compute the sha256 of what is written.
    :param progress: called with the size of each write.
    :param lock: hold an exclusive ``flock`` on the file until it is closed,
        so that a sweep of leftovers can tell a writer at work from a dead one.
    :raises OSError: if the file cannot be created in ``target``'s folder.
    """

    def __init__(
        self,
        target: Path,
        *,
        mode: int = 0o600,
        digest: bool = True,
        progress: Progress | None = None,
        lock: bool = False,
    ) -> None:
        self.target = target
        descriptor, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
        self.path = Path(name)
        try:
            if lock and fcntl is not None:  # released by the kernel however we end
                # Where locks fail (some network file systems), others' flock
                # fails too: they leave this file alone.
                with contextlib.suppress(OSError):
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(descriptor, mode)
        except OSError:
            os.close(descriptor)
            self.path.unlink(missing_ok=True)
            raise
        self.file: IO[bytes] = os.fdopen(descriptor, "wb")
        super().__init__(digest)
        self.progress = progress
        self.committed = False

    def __enter__(self) -> PartialFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.committed:
            self.discard()

    def write(self, data: Any) -> int:
        self._count(data)
        if self.progress is not None:
            self.progress(len(data))
        return self.file.write(data)

    def restart(self) -> None:
        """Forget what was written: the file starts over, empty (a download
        whose source changed while it was resumed)."""
        self.file.seek(0)
        self.file.truncate()
        self.hash = hashlib.sha256() if self.hash is not None else None
        self.size = 0

    def commit(self, *, replace: bool = True, name: str | None = None) -> None:
        """Put the file on disk, then give it its name; then make that durable.

        :param replace: replace an existing ``target``; with ``False`` an
            existing one is kept and :class:`FileExistsError` raised.
        :param name: the file's name in ``target``'s folder instead, when
            it is known only once the file is written (a streamed dump says
            it last); a plain file name, checked by the caller.
        :raises OSError: a late write error (a full disk may only show at
            ``fsync``), or the rename failing; the temporary file stays for
            the caller's ``with`` to remove.
        """
        if name is not None:
            self.target = self.target.with_name(name)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if replace:
            os.replace(self.path, self.target)
        else:
            _link_new(self.path, self.target)
        self.committed = True
        fsync_folder(self.target.parent)

    def discard(self) -> None:
        """Remove the temporary file; its unwritten buffer is dropped with it."""
        self.path.unlink(missing_ok=True)
        # On a full disk, closing flushes and fails again: the failure being
        # handled is the cause, this one adds nothing.
        with contextlib.suppress(OSError):
            self.file.close()


class StreamFile(_Counted):
    """An archive written to a stream (a pipe) instead of a file, hashed and
    counted as :class:`PartialFile` does.

    What went down a pipe cannot be taken back: the reader tells a whole
    archive from a cut one by the exit status and by the size and sha256
    the writer announces once it is done (``diskette_dump --to-stdout``).
    """

    def __init__(self, stream: IO[bytes], *, digest: bool = True) -> None:
        super().__init__(digest)
        self.stream = stream

    def write(self, data: Any) -> int:
        self._count(data)
        return self.stream.write(data)

    def commit(self) -> None:
        """Send what is buffered: the archive is whole once this returns."""
        self.stream.flush()

    def discard(self) -> None:
        """Nothing to remove: the reader sees no answer, and drops what it got."""


def _link_new(partial: Path, target: Path) -> None:
    """Name ``partial`` ``target`` unless ``target`` exists, then drop ``partial``.

    ``os.link`` fails if ``target`` exists, unlike a rename, so a file that
    appeared meanwhile is kept. Where hard links are not supported (some
    network or FAT file systems), a rename after a last check is the fallback.
    """
    try:
        os.link(partial, target)
    except FileExistsError:
        raise
    except OSError:
        if target.exists():
            raise FileExistsError(f"'{target}' already exists") from None
        os.rename(partial, target)
        return
    partial.unlink()


def user_cache() -> Path:
    """The user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``), where
    diskette keeps what it can always make again. A relative
    ``$XDG_CACHE_HOME`` is ignored, as the XDG specification asks."""
    chosen = os.environ.get("XDG_CACHE_HOME") or ""
    return Path(chosen if os.path.isabs(chosen) else os.path.expanduser("~/.cache"))


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort where folders cannot sync."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class HashingReader:
    """Read from ``source`` while hashing and counting what was read."""

    def __init__(
        self, source: IO[bytes], digest: bool = True, progress: Progress | None = None
    ) -> None:
        self.source = source
        self.hash = hashlib.sha256() if digest else None
        self.size = 0
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if self.hash is not None:
            self.hash.update(data)
        self.size += len(data)
        if self.progress is not None:
            self.progress(len(data))
        return data


def file_sha256(path: Path, progress: Progress | None = None) -> str:
    """sha256 of a local file, read a block at a time."""
    with open(path, "rb") as source:
        reader = HashingReader(source, progress=progress)
        while reader.read(BLOCK_SIZE):
            pass
    assert reader.hash is not None
    return reader.hash.hexdigest()


def room_problem(folder: Path, size: int, what: str) -> str | None:
    """Why ``folder`` cannot take ``size`` more bytes of ``what``, or ``None``.

    Told before a long download rather than by a full disk at its end;
    where the file system does not say, nothing is told.
    """
    try:
        disk = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    free = disk.f_bavail * disk.f_frsize
    if free >= size:
        return None
    return (
        f"'{folder}' has {human_size(free)} free, {what} needs {human_size(size)}: "
        "free some space or choose another --download-destination"
    )
