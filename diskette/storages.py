"""Storages: media directories archived at their path below a base directory.

A storage is recorded in the archive relative to the *base path*
(``DISKETTE_BASE_DIR``, by default the project's ``BASE_DIR``), so the same
archive restores into another checkout of the project, whatever directory the
command runs from. Exclude patterns are ``fnmatch`` patterns matched
against paths relative to each storage, as diskette 0.6 did.

Links are never followed out of a storage: a symlink whose target resolves
inside its storage is archived as a (relative) symlink, anything else that is
not a plain file or directory is skipped and reported.

A ``DISKETTE_STORAGES`` entry may also name a storage of Django's
``STORAGES`` (``{"storage": "default"}``). It is archived below
``diskette-storages/<alias>``, whatever the storage is on either side: S3
in production and a folder on a laptop name the same files. When the storage
has local folders (``FileSystemStorage``) it is walked as a folder, links and
all; otherwise (:class:`StorageFiles`) it is listed and read through the
storage API (:mod:`diskette.objectstorage`).
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from .archive import DATA_DIR, MANIFEST_NAME
from .conf import StorageAlias
from .exceptions import StorageError
from .journal import is_work_folder
from .objectstorage import StoredFile, get_storage, list_files, local_folder, translated

#: Where the files of storages named by ``STORAGES`` alias are archived.
ALIASES_DIR = "diskette-storages"
#: Top-level archive names that belong to diskette itself.
RESERVED = (DATA_DIR, MANIFEST_NAME, ALIASES_DIR)


@dataclass(frozen=True)
class Storage:
    """A storage directory and its path inside the archive.

    :param path: absolute, normalized path of the directory.
    :param relpath: its path relative to the base path, POSIX style.
    """

    path: Path
    relpath: PurePosixPath
    #: Patterns of this storage alone (a ``STORAGES`` entry's ``excludes``).
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorageFiles:
    """The files of a Django storage without local folders (S3), by its API.

    :param entry: the ``DISKETTE_STORAGES`` entry.
    :param storage: ``STORAGES[entry.alias]``.
    :param relpath: its path inside the archive (:func:`alias_relpath`).
    """

    entry: StorageAlias
    storage: Any
    relpath: PurePosixPath

    @property
    def excludes(self) -> tuple[str, ...]:
        return self.entry.excludes


@dataclass(frozen=True)
class StoredEntry:
    """One file of a :class:`StorageFiles`, and its name in the archive."""

    stored: StoredFile
    arcname: str

    @property
    def size(self) -> int:
        return self.stored.size


#: What a dump archives: a folder, or the files of a storage read by its API.
AnyStorage = Storage | StorageFiles


class Entry(NamedTuple):
    """One thing to archive from a storage. (A named tuple, its path text: a
    walk makes one per media file, and a media folder may hold tens of
    thousands.)

    :param kind: ``"file"``, ``"directory"`` or ``"symlink"``.
    :param target: for a symlink, its target relative to the link's folder.
    :param status: for a file, its ``lstat`` as the walk saw it.
    """

    path: str
    arcname: str
    kind: str
    size: int = 0
    target: str = ""
    status: os.stat_result | None = None


@dataclass(frozen=True)
class Skipped:
    """Something in a storage that cannot be archived safely, and why."""

    path: Path
    reason: str


def resolve_storages(paths: Iterable[str | Path], basepath: Path) -> list[Storage]:
    """Check storage directories and place them below ``basepath``.

    Relative storage paths are taken relative to ``basepath``.

    :raises StorageError: for a storage that does not exist, is not a
        directory, lies outside ``basepath`` (or is ``basepath`` itself),
        overlaps another storage or collides with a reserved archive name.
    """
    base = Path(os.path.abspath(basepath))
    storages: list[Storage] = []
    for raw in paths:
        path = check_directory(base / raw, name=raw)
        if path == base:
            raise StorageError(
                f"storage {str(raw)!r} is the base directory '{base}' itself: it would "
                "archive the whole project, its database included; list the media "
                "folders below it instead (MEDIA_ROOT, say)"
            )
        if not path.is_relative_to(base):
            raise StorageError(
                f"storage {str(raw)!r} is not below the storages base path '{base}': "
                "set DISKETTE_BASE_DIR (or pass --storages-basepath) to a folder "
                "that holds every storage"
            )
        relpath = PurePosixPath(path.relative_to(base).as_posix())
        if relpath.parts[0] in RESERVED:
            raise StorageError(
                f"storage {str(raw)!r} would be archived as {str(relpath)!r}, "
                f"which collides with diskette's own {relpath.parts[0]!r}"
            )
        for other in storages:
            if path.is_relative_to(other.path) or other.path.is_relative_to(path):
                raise StorageError(
                    f"storage {str(raw)!r} overlaps storage '{other.path}': list each "
                    "folder once, and none inside another"
                )
        storages.append(Storage(path=path, relpath=relpath))
    return storages


def alias_relpath(entry: StorageAlias) -> PurePosixPath:
    """Where a ``STORAGES`` entry's files go in an archive, the same on every side."""
    return PurePosixPath(
        ALIASES_DIR, entry.alias, *entry.prefix.split("/") if entry.prefix else ()
    )


def resolve_aliases(
    entries: Iterable[StorageAlias], base: Path, folders: Iterable[AnyStorage] = ()
) -> list[AnyStorage]:
    """The storages of ``STORAGES`` entries, as a dump reads them.

    A ``FileSystemStorage`` becomes a folder :class:`Storage` (walked with
    its links checked, locked against a load); any other storage is read by
    its API.

    :param base: the project's base folder, which a storage's folder must
        not hold (``MEDIA_ROOT = ""`` would archive the whole project).
    :param folders: the folder storages of the same dump, which a storage's
        folder must not overlap.
    :raises StorageError: an alias a ``STORAGES`` lacks, a folder that does
        not exist, holds the project, or overlaps.
    :raises ConfigurationError: a storage backend that cannot be created.
    """
    taken = [folder for folder in folders if isinstance(folder, Storage)]
    resolved: list[AnyStorage] = []
    seen: dict[PurePosixPath, StorageAlias] = {}
    for entry in entries:
        relpath = alias_relpath(entry)
        for named, earlier in seen.items():
            if relpath.is_relative_to(named) or named.is_relative_to(relpath):
                raise StorageError(
                    f"DISKETTE_STORAGES names storage {entry.alias!r} twice with "
                    f"overlapping prefixes ({earlier.prefix!r}, {entry.prefix!r}): "
                    "list each folder once"
                )
        seen[relpath] = entry
        storage = get_storage(entry.alias, "DISKETTE_STORAGES")
        folder = local_folder(storage)
        if folder is None:
            resolved.append(StorageFiles(entry, storage, relpath))
            continue
        path = check_directory(
            Path(folder, entry.prefix), name=f"{entry.alias}:{entry.prefix or '/'}"
        )
        if Path(os.path.abspath(base)).is_relative_to(path):
            raise StorageError(
                f"storage {entry.alias!r} keeps its files in '{path}', which holds the "
                "project itself: set its location (MEDIA_ROOT) to a media folder"
            )
        for other in taken:
            if path.is_relative_to(other.path) or other.path.is_relative_to(path):
                raise StorageError(
                    f"storage {entry.alias!r} keeps its files in '{path}', which overlaps "
                    f"storage '{other.path}': list that folder once"
                )
        folder_storage = Storage(path=path, relpath=relpath, excludes=entry.excludes)
        taken.append(folder_storage)
        resolved.append(folder_storage)
    return resolved


#: The longest name a folder holds (bytes, most file systems) and path Linux opens.
NAME_MAX = 255
PATH_MAX = 4000


def walk_files(
    source: StorageFiles, excludes: Iterable[str] = ()
) -> Iterator[StoredEntry | Skipped]:
    """The files of a storage read by its API, with their archive names.

    An object store holds names no folder can: ``..`` or empty parts, a
    backslash, a part longer than a file name may be, or a file ``x`` beside
    files below ``x/``. Those are skipped and reported, so that every archive
    a dump writes can be loaded into folders.
    """
    excluded = exclusion((*excludes, *source.excludes))
    prefix = source.entry.prefix
    # Keys that start with a key come right after it in a listing's order:
    # the chain of files that are the start of the current one is enough to
    # find a file that is also a folder, whatever the bucket's size.
    chain: list[str] = []
    with translated(source.entry.alias, "list its files"):
        for stored in list_files(source.storage, prefix):
            relative = stored.name[len(prefix) + 1 :] if prefix else stored.name
            if excluded(relative):
                continue
            arcname = f"{source.relpath}/{relative}"
            reason = _unholdable(relative, arcname)
            while chain and not relative.startswith(chain[-1]):
                chain.pop()
            if reason is None and chain and relative.startswith(f"{chain[-1]}/"):
                reason = f"is below '{chain[-1]}', which is a file"
            if reason is not None:
                yield Skipped(Path(stored.name), reason)
                continue
            chain.append(relative)
            yield StoredEntry(stored, arcname)


def _unholdable(relative: str, arcname: str) -> str | None:
    """Why no folder can hold the file ``relative``, if none can."""
    parts = relative.split("/")
    if "\\" in relative or "\0" in relative or any(p in ("", ".", "..") for p in parts):
        return "has a name no folder can hold"
    if any(len(p.encode()) > NAME_MAX for p in parts) or len(arcname.encode()) > PATH_MAX:
        return "has a name too long for a folder"
    return None


def missing_storages(
    paths: Iterable[str | Path], basepath: Path
) -> tuple[list[str | Path], list[str | Path]]:
    """Split storage paths into those that exist and those that do not.

    For a whole-project snapshot (``diskette_dump --everything``): a storage
    folder a fresh checkout has not made yet holds no media to keep, so it is
    left out of the archive rather than refused, and a load of that archive
    leaves the folder alone.
    """
    present: list[str | Path] = []
    missing: list[str | Path] = []
    for raw in paths:
        (present if os.path.lexists(Path(basepath) / raw) else missing).append(raw)
    return present, missing


def check_directory(path: str | Path, name: str | Path | None = None) -> Path:
    """Return ``path`` made absolute if it is an existing directory.

    :param name: how to call the storage in the error, ``path`` by default.
    :raises StorageError: if it does not exist or is not a directory.
    """
    absolute = Path(os.path.abspath(path))
    shown = str(path if name is None else name)
    try:
        absolute.stat()
    except FileNotFoundError:
        raise StorageError(f"storage {shown!r} does not exist") from None
    except OSError as exc:  # a name too long, a folder we may not enter
        raise StorageError(f"storage {shown!r} cannot be read: {exc.strerror}") from None
    if not absolute.is_dir():
        raise StorageError(f"storage {shown!r} is not a directory")
    return absolute


def exclusion(patterns: Iterable[str]) -> Callable[[str], bool]:
    """Whether a path relative to its storage matches one of the exclude
    ``patterns`` (``fnmatch``'s), as a test made once for a whole walk: one
    regular expression per file rather than one call per file and pattern."""
    translated = [fnmatch.translate(pattern) for pattern in patterns]
    if not translated:
        return lambda relative: False
    match = re.compile("|".join(f"(?:{t})" for t in translated)).match
    return lambda relative: match(relative) is not None


def walk_storage(
    storage: Storage, excludes: Iterable[str] = ()
) -> Iterator[Entry | Skipped]:
    """Yield what to archive from ``storage``, depth first in name order.

    The order is stable so two dumps of the same media list the same members.
    Excluded directories are not descended into. Symlinks are yielded as
    symlinks when their target stays inside the storage, else skipped.
    """
    yield Entry(str(storage.path), str(storage.relpath), "directory")
    yield from _walk(
        storage,
        str(storage.path),
        exclusion((*excludes, *storage.excludes)),
        Path(os.path.realpath(storage.path)),
    )


def _walk(
    storage: Storage,
    folder: str,
    excluded: Callable[[str], bool],
    real_root: Path,
    prefix: str = "",
) -> Iterator[Entry | Skipped]:
    """:func:`walk_storage` below ``folder``, whose path in the storage is
    ``prefix`` (paths are text: a media folder may hold many thousands of
    files, and pathlib's joins and ``relative_to`` on each cost a third of
    the walk).
    """
    try:
        children = sorted(os.scandir(folder), key=lambda child: child.name)
    except OSError as exc:
        yield Skipped(Path(folder), f"cannot be read ({exc.strerror})")
        return
    for child in children:
        relative = f"{prefix}{child.name}"
        if excluded(relative) or (not prefix and is_work_folder(child.name)):
            continue  # excluded, or a load's work folder (never media)
        arcname = f"{storage.relpath}/{relative}"
        status = child.stat(follow_symlinks=False)
        if stat.S_ISLNK(status.st_mode):
            yield _symlink_entry(child.path, arcname, real_root)
        elif stat.S_ISDIR(status.st_mode):
            yield Entry(child.path, arcname, "directory")
            yield from _walk(storage, child.path, excluded, real_root, f"{relative}/")
        elif stat.S_ISREG(status.st_mode):
            yield Entry(child.path, arcname, "file", status.st_size, status=status)
        else:
            yield Skipped(Path(child.path), "is not a regular file, directory or symlink")


def _symlink_entry(path: str, arcname: str, real_root: Path) -> Entry | Skipped:
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(real_root):
        return Skipped(Path(path), "is a symlink pointing out of its storage")
    if not target.exists():
        return Skipped(Path(path), "is a dangling symlink")
    relative = os.path.relpath(target, os.path.realpath(os.path.dirname(path)))
    return Entry(path, arcname, "symlink", target=Path(relative).as_posix())
