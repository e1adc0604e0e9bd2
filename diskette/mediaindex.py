"""What a media folder holds (path, size, sha256), kept so that it is rarely read again.

An incremental pull sends the host the list of the files the laptop has, so
that the archive carries only the new and changed ones (:mod:`diskette.delta`).
Hashing a gigabyte of media at each pull would cost more than the pull
saves, so each folder has an index: per file, its size, modification time,
inode, disk and sha256. A file whose size, time, inode and disk are those
recorded is taken at its recorded sha256 (rsync's quick check, and the
inode besides, since a load replaces files rather than rewriting them);
any other file is read once and recorded. Loads write the index of what
they put in place, from the sha256 the archive verified, so the first pull
after a load reads nothing.

The index is a cache, never the truth: it is written whole under a
temporary name then renamed, read leniently (a damaged or foreign one is
ignored and rebuilt), and skipped where it cannot be written. It lies in
the user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``, then
``diskette/media-index/``), named by a hash of the folder's real path: not
in the media folder, which stays the application's own, listed by its
storage as it was, and no dump can carry it; nor beside it, where it would
show in ``git status`` and change the tree of a host a pull reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .files import file_sha256, user_cache
from .journal import is_work_folder

#: The folder of the indexes, in the user's cache folder.
INDEX_DIR = Path("diskette") / "media-index"
#: Bumped when entries change shape: an index of another format is ignored.
INDEX_FORMAT = 2
#: A file modified this recently when it is recorded may be written again
#: within the same tick of its clock without its time changing: such an
#: entry is used once, then the file is read again (git's "racily clean").
RACY_NS = 2_000_000_000


class Known(NamedTuple):
    """A file as the index knows it: what it holds, and how to tell it unchanged.

    A named tuple: an index of 16,000 files makes as many when it is read,
    four times faster than a frozen dataclass would.
    """

    size: int
    sha256: str
    mtime_ns: int = 0
    inode: int = 0
    device: int = 0

    def matches(self, status: os.stat_result) -> bool:
        """Whether ``status`` is of the file this entry was recorded for: the
        same size, time, inode and disk (a folder rebuilt elsewhere is read again)."""
        return (
            status.st_size == self.size
            and status.st_mtime_ns == self.mtime_ns
            and status.st_ino == self.inode
            and status.st_dev == self.device
        )


class MediaIndex:
    """The index of one folder, loaded once and saved when it changed.

    :param folder: the folder whose files are indexed, by path relative to it.
    :param path: the index file, if not the one in the cache (:func:`index_path`).
    """

    def __init__(
        self, folder: Path, path: Path | None = None, *, read: bool = True
    ) -> None:
        self.folder = folder
        self.real = os.path.realpath(folder)
        self.in_cache = path is None
        self.path = path or _cached(self.real)
        self.entries: dict[str, Known] = _read(self.path, self.real) if read else {}
        self.changed = not read

    def sha256(self, relative: str, status: os.stat_result | None = None) -> str:
        """The sha256 of file ``relative``, read only if the index does not know it.

        :raises OSError: the file cannot be read.
        """
        status = status or (self.folder / relative).stat()
        known = self.entries.get(relative)
        if known is not None and known.matches(status):
            return known.sha256
        digest = file_sha256(self.folder / relative)
        self.record(relative, digest, status)
        return digest

    def record(self, relative: str, sha256: str, status: os.stat_result) -> None:
        """Remember that file ``relative``, as ``status`` shows it, holds ``sha256``
        (until it is next read, where it was modified too recently to tell)."""
        racy = status.st_mtime_ns > time.time_ns() - RACY_NS
        self.entries[relative] = Known(
            status.st_size,
            sha256,
            -1 if racy else status.st_mtime_ns,
            status.st_ino,
            status.st_dev,
        )
        self.changed = True

    def scan(self, progress: Callable[[int], None] | None = None) -> dict[str, Known]:
        """Every regular file of the folder with its sha256; forgets the files gone.

        Symbolic links are left out: a load never takes a link's target as
        a file, and a dump archives links as links.

        :param progress: called with the bytes of each file read for its hash.
        """
        found: dict[str, Known] = {}
        for relative, status in regular_files(self.folder):
            known = self.entries.get(relative)
            if known is None or not known.matches(status):
                try:
                    self.sha256(relative, status)
                except OSError:
                    continue  # gone or unreadable since the walk: not a file we have
                if progress is not None:
                    progress(status.st_size)
            found[relative] = self.entries[relative]
        if set(self.entries) != set(found):
            self.entries = dict(found)
            self.changed = True
        return found

    def save(self) -> None:
        """Write the index if it changed; quietly not where the cache cannot be written."""
        if not self.changed:
            return
        content = {
            "format": INDEX_FORMAT,
            "folder": self.real,
            "files": {
                name: [k.size, k.sha256, k.mtime_ns, k.inode, k.device]
                for name, k in sorted(self.entries.items())
            },
        }
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(
                prefix=f"{self.path.name}.", suffix=".part", dir=self.path.parent
            )
            try:
                # dumps, not dump: only one string at once takes the C encoder
                # (0.1 s for 16,000 files, against 0.3 s).
                text = json.dumps(content, separators=(",", ":"))
                with os.fdopen(descriptor, "w", encoding="utf-8") as output:
                    output.write(text)
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            self.changed = False
        if self.in_cache:
            sweep(self.path.parent)


#: The cache folder is swept at most this often (seconds), by an index saved.
SWEEP_EVERY = 24 * 3600
#: A temporary index this old (seconds) was left by a writer that was killed:
#: a live one renames its own within milliseconds.
PART_AGE = 3600
#: The file whose time says when the cache folder was last swept.
SWEPT = ".swept"


def sweep(cache: Path, now: float | None = None) -> list[str]:
    """Remove from the cache folder what nothing will use again: the
    temporary files of killed writers, and the indexes of folders that no
    longer exist (a folder that comes back, from a disk mounted again, is
    read again once). At most once a day; best effort, as the cache is.

    :returns: the names removed.
    """
    now = time.time() if now is None else now
    stamp = cache / SWEPT
    try:
        if now - stamp.stat().st_mtime < SWEEP_EVERY:
            return []
    except FileNotFoundError:
        pass
    except OSError:
        return []
    removed: list[str] = []
    with contextlib.suppress(OSError):
        stamp.touch()
        for entry in os.scandir(cache):
            if entry.name.endswith(".part"):
                stale = now - entry.stat(follow_symlinks=False).st_mtime > PART_AGE
            elif entry.name.endswith(".json"):
                folder = _folder_of(Path(entry.path))
                stale = folder is not None and not os.path.isdir(folder)
            else:
                continue
            if stale:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def _folder_of(index: Path) -> str | None:
    """The folder an index file is of, or ``None`` if it does not say."""
    folder = _content(index).get("folder")
    return folder if isinstance(folder, str) else None


def _content(index: Path) -> dict[str, Any]:
    """An index file's object; empty for a missing or damaged one."""
    try:
        with open(index, encoding="utf-8") as source:
            content = json.load(source)
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def index_path(folder: Path) -> Path:
    """Where the index of ``folder`` lies: in the user's cache folder, named
    by its real path (one index however the folder is reached)."""
    return _cached(os.path.realpath(folder))


def _cached(real: str) -> Path:
    name = hashlib.sha256(os.fsencode(real)).hexdigest()[:32]
    return user_cache() / INDEX_DIR / f"{name}.json"


def regular_files(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """The regular files below ``folder``, relative (POSIX), with their ``lstat``.

    Diskette's own entries at the top (work folders, the index) are not media.
    """
    # Paths as text, each folder's with its path in ``folder``: pathlib's
    # joins cost more than the stat calls on a folder of many small files.
    pending = [(os.fspath(folder), "")]
    while pending:
        current, prefix = pending.pop()
        try:
            children = list(os.scandir(current))
        except OSError:
            continue
        for child in children:
            if not prefix and is_work_folder(child.name):
                continue
            try:
                status = child.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(status.st_mode):
                pending.append((child.path, f"{prefix}{child.name}/"))
            elif stat.S_ISREG(status.st_mode):
                yield f"{prefix}{child.name}", status


def record_loaded(
    folder: Path,
    files: Mapping[str, str],
    statuses: Mapping[str, os.stat_result] | None = None,
) -> None:
    """Index the files a load has just put in ``folder``, by their verified sha256.

    Best effort: the index only saves reading the files again later.

    :param statuses: the ``lstat`` of files known unchanged (a delta's files
        left in place, checked as the load swapped), not taken again.
    """
    index = MediaIndex(folder, read=False)  # what was there before is gone
    root = os.fspath(folder)
    known = statuses or {}
    for relative, sha256 in files.items():
        with contextlib.suppress(OSError):
            status = known.get(relative) or os.lstat(os.path.join(root, relative))
            if stat.S_ISREG(status.st_mode):
                index.record(relative, sha256, status)
    index.save()


def _read(path: Path, folder: str) -> dict[str, Known]:
    """The entries of an index file of ``folder``; none for a missing,
    damaged or foreign one (another format, another folder)."""
    content = _content(path)
    if content.get("format") != INDEX_FORMAT or content.get("folder") != folder:
        return {}
    files = content.get("files")
    return {
        name: Known(*entry)
        for name, entry in (files if isinstance(files, dict) else {}).items()
        if type(entry) is list
        and len(entry) == 5
        and type(entry[0]) is type(entry[2]) is type(entry[3]) is type(entry[4]) is int
        and type(entry[1]) is str
    }
