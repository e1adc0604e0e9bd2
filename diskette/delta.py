"""Deltas: archives that carry only the media the loading side lacks.

A daily pull moves the whole media tree although a percent of it changed.
Instead the loading side first says what it has (:func:`have`: per storage,
each file's path, size and sha256, from its :mod:`~diskette.mediaindex`),
and the dump leaves out every file it would send unchanged: the archive
lists it as *kept* (size and sha256) without its content, and becomes a
delta (:data:`~diskette.archive.format.DELTA_FORMAT`).

The load assembles each storage's new tree in its work folder as for a
whole archive (:mod:`diskette.journal`): the archive's files, plus each kept
file hard-linked (copied where links cannot be made) from the copy this
machine has, found by sha256 wherever it now lies in that storage. So the
swap stays one rename per entry, all or nothing, and a delta can never load
onto the wrong base: a kept file that is nowhere here with its sha256 stops
the load before anything changed, naming it.

A push works the other way round: its archive exists before anyone asked
the host, so :func:`thin` writes it again as a delta against the host's list.

The same mechanism makes the safety snapshot of a reset nearly free
(:func:`sidecar_of`): its media are hard-linked into a folder beside the
data-only archive, which lists them all as kept, instead of being
compressed into it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from .archive import ArchiveWriter, Unpacked, unpack
from .archive.format import is_sha256
from .archive.reader import Member, SpaceBudget
from .exceptions import ConfigurationError, DumpError, LoadError
from .files import file_sha256
from .mediaindex import Known, MediaIndex, regular_files
from .storages import Entry, Storage, walk_storage

#: The shape of a have-list, bumped when it changes.
HAVE_FORMAT = 1
#: A have-list larger than this is not one diskette wrote: some 150 bytes a
#: file, so about 400,000 files.
HAVE_LIMIT = 64 * 1024 * 1024
#: Suffix of the folder of hard links beside a safety snapshot.
SIDECAR_SUFFIX = ".media"
#: End of the name of a storage's index in a sidecar, beside that storage's folder.
INDEX_NAME = ".diskette-index.json"

#: What a side has, per storage (by its path in archives): per file, by its
#: path inside the storage, its size and sha256.
Base = dict[str, dict[str, tuple[int, str]]]


@dataclass(frozen=True)
class Delta:
    """How a dump leaves files out.

    :param base: what the loading side has; files found there unchanged are
        kept, not archived.
    :param sidecar: hard-link every file of the storage folders into the
        folder beside the archive (:func:`sidecar_of`) and keep them all.
    """

    base: Base = field(default_factory=dict)
    sidecar: bool = False


def have(
    storages: Mapping[str, Path],
    progress: Callable[[int], None] | None = None,
    *,
    save: bool = True,
) -> dict[str, Any]:
    """What the storage folders here hold, for a dump elsewhere to send the rest.

    Files the index knows unchanged are not read (:mod:`diskette.mediaindex`).

    :param storages: each declared storage's folder, by its path in archives.
    :param save: keep the sha256 read in the index, for the next time;
        ``False`` for a dry run, which writes nothing.
    """
    listed: dict[str, dict[str, list[Any]]] = {}
    for name, folder in storages.items():
        if not folder.is_dir():
            continue
        index = MediaIndex(folder)
        listed[name] = {
            relative: [known.size, known.sha256]
            for relative, known in sorted(index.scan(progress).items())
        }
        if save:
            index.save()
    return {"format": HAVE_FORMAT, "storages": listed}


@dataclass
class StorageDelta:
    """What a dump with a base would do with one storage folder's files:
    archive them (``added``, ``changed``), keep them (the other side has
    them), or leave the other side's copy out of the new tree (``removed``).
    """

    storage: str
    added: int = 0
    changed: int = 0
    kept: int = 0
    removed: int = 0
    bytes_sent: int = 0
    bytes_kept: int = 0
    bytes_removed: int = 0


class Theirs:
    """What the loading side has of one storage, as a dump decides with it.

    A file is kept when the other side has its content: at its own path, or
    at another (a file moved or renamed), since the load looks for kept
    files by sha256 anywhere in the folder. Only a file whose size is one
    the other side has is read to learn its sha256.
    """

    def __init__(self, files: Mapping[str, tuple[int, str]]) -> None:
        self.files = files
        self.contents = set(files.values())
        self.sizes = {size for size, _ in self.contents}

    def has(self, size: int, digest: Callable[[], str]) -> bool:
        """Whether the other side has a file of ``size`` whose sha256 ``digest`` reads."""
        return size in self.sizes and (size, digest()) in self.contents


#: A file a dump leaves out or takes: its real path, or (a storage without
#: folders, S3) the storage's identity and its name there.
FileKey = Path | tuple[int, str]


def leaving(
    path: str, left_out: Collection[FileKey], only: Collection[FileKey] | None
) -> Literal["dropped", "unnamed"] | None:
    """Why a dump leaves the file or link at ``path`` out of its archive:
    ``"dropped"``, among the files ``left_out`` (those of the file fields an
    anonymization rule clears), or ``"unnamed"``, outside ``only`` (the files
    a subset's rows name); ``None``: it archives it. One rule for the dump
    and for its plan against a list (:func:`compare`)."""
    if not left_out and only is None:
        return None
    real = Path(os.path.realpath(path))
    if real in left_out:
        return "dropped"
    if only is not None and real not in only:
        return "unnamed"
    return None


def compare(
    storage: Storage,
    excludes: Sequence[str],
    base: Base,
    *,
    left_out: Collection[FileKey] = (),
    only: Collection[FileKey] | None = None,
) -> StorageDelta:
    """What :class:`DeltaWriter` would archive of ``storage`` against ``base``,
    decided as it decides (:class:`Theirs`), without writing anything (the
    index included). A file that cannot be read counts as sent: the dump
    would fail on it, naming it.

    :param left_out: real paths of files the dump leaves out (those of the
        file fields an anonymization rule clears).
    :param only: real paths of the only files it archives (a subset's).
        Either way such a file is neither sent nor kept: the loading side
        that has it removes it.
    """
    change = StorageDelta(str(storage.relpath))
    theirs = Theirs(base.get(change.storage, {}))
    gone = dict(theirs.files)
    index = MediaIndex(storage.path)
    prefix = f"{storage.relpath}/"
    for entry in walk_storage(storage, excludes):
        if not isinstance(entry, Entry) or entry.kind != "file":
            continue
        if leaving(entry.path, left_out, only) is not None:
            continue
        relative = entry.arcname.removeprefix(prefix)
        ours = gone.pop(relative, None)
        try:
            kept = theirs.has(entry.size, lambda: index.sha256(relative))  # noqa: B023
        except OSError:
            kept = False
        if kept:
            change.kept += 1
            change.bytes_kept += entry.size
            continue
        if ours is None:
            change.added += 1
        else:
            change.changed += 1
        change.bytes_sent += entry.size
    change.removed = len(gone)
    change.bytes_removed = sum(size for size, _ in gone.values())
    return change


def read_base(source: IO[bytes], name: str) -> Base:
    """A have-list, checked: the dump trusts it only to leave files out.

    A lying list costs its sender the files it claimed; nothing else.

    :param name: how errors name it (a file, or the standard input).
    :raises ConfigurationError: naming ``name`` and what is wrong.
    """
    content = source.read(HAVE_LIMIT + 1)
    if len(content) > HAVE_LIMIT:
        raise ConfigurationError(f"{name} is larger than a list of media diskette writes")
    try:
        listed = json.loads(content)
    except (ValueError, RecursionError) as exc:
        raise ConfigurationError(f"{name} is not a list of media (JSON): {exc}") from None
    return checked_base(listed, name)


def checked_base(listed: Any, name: str) -> Base:
    """A have-list already read from JSON, checked as :func:`read_base` does.

    :raises ConfigurationError: naming ``name`` and what is wrong.
    """
    if not isinstance(listed, dict) or listed.get("format") != HAVE_FORMAT:
        raise ConfigurationError(
            f"{name} is not a list of media of format {HAVE_FORMAT}: make it with "
            "manage.py diskette_index of the same diskette version"
        )
    storages = listed.get("storages")
    if not isinstance(storages, dict):
        raise ConfigurationError(f"{name}: 'storages' must map storages to their files")
    base: Base = {}
    for storage, files in storages.items():
        if not isinstance(files, dict):
            raise ConfigurationError(f"{name}: storage '{storage}' must map paths to files")
        entries = base[str(storage)] = {}
        for relative, entry in files.items():
            if (
                not isinstance(entry, list)
                or len(entry) != 2
                or type(entry[0]) is not int
                or entry[0] < 0
                or not is_sha256(entry[1])
            ):
                raise ConfigurationError(
                    f"{name}: '{storage}/{relative}' must be [size, sha256]"
                )
            entries[relative] = (entry[0], entry[1])
    return base


def read_base_file(path: str) -> Base:
    """The have-list an option names (``-`` for the standard input), checked
    by :func:`read_base`.

    :raises ConfigurationError: naming the option's file and what is wrong.
    """
    if path == "-":
        return read_base(sys.stdin.buffer, "the list of media on the standard input")
    try:
        with open(path, "rb") as source:
            return read_base(source, f"--base '{path}'")
    except OSError as exc:
        raise ConfigurationError(
            f"--base '{path}' cannot be read: {exc.strerror or exc}"
        ) from exc


def base_digest(base: Base) -> str:
    """A fingerprint of a have-list, which the delta's manifest records."""
    canonical = json.dumps(base, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def sidecar_of(archive: Path) -> Path:
    """The folder of hard-linked media beside a safety snapshot ``archive``."""
    stem = archive.name.removesuffix(".tar.gz").removesuffix(".tgz")
    return archive.with_name(f"{stem}{SIDECAR_SUFFIX}")


def sidecar_index(sidecar: Path, storage: str) -> Path:
    """The index of one storage's files in a sidecar: inside it, so that it
    goes when the snapshot is pruned (a cache folder would keep it forever)."""
    return sidecar / f"{storage.replace('/', '_')}{INDEX_NAME}"


class DeltaWriter(ArchiveWriter):
    """An archive writer that keeps, rather than archives, the files of
    storage folders that the loading side has (or that a sidecar holds).

    Only storage folders are concerned: files read through a storage's API
    (S3) are archived whole, as their sha256 would take reading them.
    """

    def __init__(
        self,
        path: Path,
        *,
        permissions: int,
        checksums: bool = True,
        storages: Sequence[Any] = (),
        delta: Delta,
        stream: IO[bytes] | None = None,
    ) -> None:
        self.delta = delta
        # Longest first: a file belongs to the most specific storage.
        self.folders = sorted(
            (s for s in storages if isinstance(s, Storage)),
            key=lambda s: -len(str(s.relpath)),
        )
        self.indexes: dict[str, MediaIndex] = {}
        self.sidecar = sidecar_of(path) if delta.sidecar else None
        self.sidecar_text = os.fspath(self.sidecar or "")
        self.made: set[str] = set()  # folders made in the sidecar (make_parent)
        if self.sidecar is not None:
            try:
                self.sidecar.mkdir(mode=0o700)
            except OSError as exc:
                raise DumpError(
                    f"cannot make the media folder '{self.sidecar}': {exc.strerror or exc}"
                ) from exc
        try:
            super().__init__(
                path, permissions=permissions, checksums=checksums, stream=stream
            )
        except BaseException:
            self._remove_sidecar()
            raise
        self.theirs: dict[str, Theirs] = {}
        self.budget = SpaceBudget()

    def add_file(
        self,
        path: str | Path,
        arcname: str,
        progress: Any = None,
        *,
        status: os.stat_result | None = None,
    ) -> None:
        """Keep the file if the loading side has it; else archive it."""
        found = self._storage_of(arcname)
        if found is None:
            return super().add_file(path, arcname, progress)
        storage, relative = found
        index = self._index(storage)
        try:
            status = status or os.stat(path, follow_symlinks=False)
            if self.sidecar is not None:
                digest = index.sha256(relative, status)
                self._link(path, arcname, storage, relative, digest, status)
            else:
                theirs = self._theirs(storage)
                if not theirs.has(status.st_size, lambda: index.sha256(relative, status)):
                    return self._archive(path, arcname, progress, index, relative, status)
                digest = index.sha256(relative, status)  # known by now: not read again
        except OSError as exc:
            raise DumpError(f"cannot read '{path}': {exc.strerror or exc}") from exc
        self.add_kept(arcname, status.st_size, digest)
        if progress is not None:
            progress(status.st_size)

    def close(self, manifest: dict[str, Any]) -> Any:
        for index in self.indexes.values():
            index.save()
        delta: dict[str, Any] = {"sidecar": self.sidecar is not None}
        if not self.delta.sidecar:
            delta["base"] = base_digest(self.delta.base)
        return super().close({**manifest, "delta": delta})

    def abort(self) -> None:
        finished = self._finished
        super().abort()
        if not finished:
            self._remove_sidecar()

    def _remove_sidecar(self) -> None:
        if self.sidecar is not None:
            shutil.rmtree(self.sidecar, ignore_errors=True)

    def _archive(
        self,
        path: str | Path,
        arcname: str,
        progress: Any,
        index: MediaIndex,
        relative: str,
        status: os.stat_result,
    ) -> None:
        """Archive a file, and index the sha256 that archiving it computed."""
        super().add_file(path, arcname, progress)
        digest = self.members[arcname].get("sha256")
        if digest and self.members[arcname]["size"] == status.st_size:
            index.record(relative, digest, status)

    def _link(
        self,
        path: str | Path,
        arcname: str,
        storage: Storage,
        relative: str,
        digest: str,
        status: os.stat_result,
    ) -> None:
        """Hard-link (else copy, counted against the free space) a file into
        the sidecar, and index it there: putting it back reads nothing.

        :param status: the file's ``lstat``, which a link shares.
        """
        assert self.sidecar is not None
        target = f"{self.sidecar_text}/{arcname}"  # text: once per media file
        try:
            make_parent(target, self.made)
            linked = link_or_copy(path, target, self.budget)
        except OSError as exc:
            raise DumpError(
                f"cannot keep '{path}' in '{self.sidecar}': {exc.strerror or exc}; "
                "free some space there or choose another backup folder"
            ) from exc
        key = f"sidecar:{storage.relpath}"
        if key not in self.indexes:
            folder = self.sidecar / str(storage.relpath)
            self.indexes[key] = MediaIndex(
                folder, sidecar_index(self.sidecar, str(storage.relpath))
            )
        self.indexes[key].record(relative, digest, status if linked else os.stat(target))

    def _theirs(self, storage: Storage) -> Theirs:
        key = str(storage.relpath)
        if key not in self.theirs:
            self.theirs[key] = Theirs(self.delta.base.get(key, {}))
        return self.theirs[key]

    def _storage_of(self, arcname: str) -> tuple[Storage, str] | None:
        for storage in self.folders:
            prefix = f"{storage.relpath}/"
            if arcname.startswith(prefix):
                return storage, arcname[len(prefix) :]
        return None

    def _index(self, storage: Storage) -> MediaIndex:
        key = str(storage.relpath)
        if key not in self.indexes:
            self.indexes[key] = MediaIndex(storage.path)
        return self.indexes[key]


def open_writer(
    path: Path,
    *,
    permissions: int,
    checksums: bool,
    storages: Sequence[Any],
    delta: Delta | None,
    stream: IO[bytes] | None = None,
) -> ArchiveWriter:
    """The writer of a dump: a :class:`DeltaWriter` when there is a ``delta``;
    ``stream``: see :class:`~diskette.archive.ArchiveWriter`."""
    if delta is None:
        return ArchiveWriter(
            path, permissions=permissions, checksums=checksums, stream=stream
        )
    return DeltaWriter(
        path,
        permissions=permissions,
        checksums=checksums,
        storages=storages,
        delta=delta,
        stream=stream,
    )


def make_parent(target: str | Path, made: set[str]) -> None:
    """Make ``target``'s folder unless ``made`` (the folders made so far,
    which it joins) has it: a folder of many files is made once."""
    parent = os.path.dirname(target)
    if parent not in made:
        os.makedirs(parent, exist_ok=True)
        made.add(parent)


def link_or_copy(
    source: str | Path, target: str | Path, budget: SpaceBudget | None = None
) -> bool:
    """Hard-link ``source`` as ``target``; copy it where the disk cannot link.

    :param budget: the free space a copy is counted against, if any.
    :returns: whether it was linked.
    """
    try:
        os.link(source, target, follow_symlinks=False)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    if budget is not None:
        budget.claim(Path(target), os.stat(source).st_size, os.path.basename(target))
    shutil.copy2(source, target, follow_symlinks=False)
    return False


class Source(NamedTuple):
    """Where this machine has a kept file, as it was when its sha256 was
    checked. (A named tuple: a delta may keep tens of thousands.)"""

    path: str  # text, not a Path: joined once per kept file
    status: os.stat_result
    sha256: str


class Survey:
    """The regular files of some folders and their ``lstat``, taken on a
    thread of their own while a streamed archive arrives.

    A load waits for the bytes of a pull; surveyed meanwhile, the tens of
    thousands of files a delta keeps are then found (:func:`kept_sources`)
    without a system call each after the last byte. A file that changes
    after the survey is caught where the load keeps it, as one changing
    after :func:`kept_sources` is: its status is compared again there.
    """

    def __init__(self, folders: Iterable[Path]) -> None:
        self._found: dict[str, dict[str, os.stat_result]] = {}
        self._thread = threading.Thread(
            target=self._walk, args=(list(folders),), daemon=True
        )
        self._thread.start()

    def _walk(self, folders: list[Path]) -> None:
        for folder in folders:
            self._found[os.fspath(folder)] = dict(regular_files(folder))

    def of(self, folder: Path) -> Mapping[str, os.stat_result]:
        """The files found below ``folder`` (relative, POSIX), once surveyed."""
        self._thread.join()
        return self._found.get(os.fspath(folder), {})


def kept_sources(
    unpacked: Unpacked,
    folders: Mapping[str, Path],
    sidecar: Path | None,
    *,
    save: bool = True,
    survey: Survey | None = None,
) -> dict[str, Source]:
    """Where this machine has each kept file of a delta, verified by sha256.

    A file is looked for at its own path in its storage's folder, then
    anywhere in that folder (a file moved or renamed), then, for a safety
    snapshot (its manifest says ``sidecar``), in the folder beside it. Only
    regular files inside the folder count: a name that reaches through a
    symbolic link elsewhere on this machine is not followed.

    :param folders: the real folder of each storage to restore, by archive path.
    :param save: keep the sha256 read in the index (not for a plan or a check,
        which write nothing).
    :param survey: those folders' files, surveyed already: what it found is
        not looked at again.
    :raises LoadError: naming the first kept file found nowhere.
    """
    delta = unpacked.manifest.get("delta")
    if not (isinstance(delta, dict) and delta.get("sidecar") is True):
        sidecar = None
    sources: dict[str, Source] = {}
    for storage, folder in folders.items():
        kept = {
            relative: member
            for relative, member in unpacked.files(storage).items()
            if member.name in unpacked.kept
        }
        if not kept:
            continue
        places = [(folder, MediaIndex(folder))]
        if sidecar is not None and (sidecar / storage).is_dir():
            place = sidecar / storage
            places.append((place, MediaIndex(place, sidecar_index(sidecar, storage))))
        for place, index in places:
            surveyed = survey.of(place) if survey is not None and place is folder else {}
            try:
                _find(place, index, kept, sources, surveyed)
            finally:
                if save:
                    index.save()
            if not kept:
                break
        if kept:
            relative, member = next(iter(kept.items()))
            elsewhere = f" nor in '{places[-1][0]}'" if len(places) > 1 else ""
            raise LoadError(
                f"'{unpacked.path.name}' is a delta that needs '{member.name}' "
                f"(sha256 {member.sha256[:12]}…), which is not in '{folder}'{elsewhere} "
                f"({len(kept)} such files): load a whole archive instead (pull with --full)"
            )
    return sources


def _find(
    folder: Path,
    index: MediaIndex,
    kept: dict[str, Any],
    sources: dict[str, Source],
    surveyed: Mapping[str, os.stat_result],
) -> None:
    """Move the kept files found in ``folder`` from ``kept`` to ``sources``,
    taking the status of those ``surveyed`` from there."""
    inside = f"{os.path.realpath(folder)}{os.sep}"
    root = os.fspath(folder).rstrip(os.sep)
    # A regular file is where its folder really is: one realpath per folder,
    # not per file (a media folder may hold tens of thousands); paths are
    # joined as text, by the names' own separator.
    real_parents: dict[str, str] = {}
    for relative, member in list(kept.items()):
        path = f"{root}/{relative}"
        with contextlib.suppress(OSError, ValueError):
            status = surveyed.get(relative) or os.lstat(path)
            parent = relative.rpartition("/")[0]
            if parent not in real_parents:
                real_parents[parent] = f"{os.path.realpath(f'{root}/{parent}')}{os.sep}"
            if (
                stat.S_ISREG(status.st_mode)
                and status.st_size == member.size
                and real_parents[parent].startswith(inside)
                and index.sha256(relative, status) == member.sha256
            ):
                sources[member.name] = Source(path, status, member.sha256)
                del kept[relative]
    if not kept:
        return
    by_digest: dict[tuple[int, str], tuple[str, Known]] = {}
    for relative, known in index.scan().items():  # regular files inside, no link followed
        by_digest.setdefault(_key(known), (relative, known))
    for relative, member in list(kept.items()):
        found = by_digest.get((member.size, member.sha256))
        if found is not None:
            moved = os.path.join(root, found[0])
            with contextlib.suppress(OSError):
                sources[member.name] = Source(moved, os.lstat(moved), member.sha256)
                del kept[relative]


def _key(known: Known) -> tuple[int, str]:
    return known.size, known.sha256


def place_kept(sources: Mapping[str, Source], place: Callable[[str], Path | None]) -> None:
    """Link each kept file from where it is here into its place in the new tree.

    A link must reach the very file whose sha256 was checked (same inode,
    size and modification time: not one that changed since); a copy, where
    links cannot be made, is hashed again.

    :raises LoadError: naming the file that could not be placed, or that changed.
    """
    budget = SpaceBudget()
    made: set[str] = set()
    for name, source in sources.items():
        target = place(name)
        if target is None:
            continue
        try:
            make_parent(target, made)
            link_or_copy(source.path, target, budget)
            now = os.lstat(target)
            linked = (now.st_dev, now.st_ino) == (
                source.status.st_dev,
                source.status.st_ino,
            )
            same = (
                (now.st_size, now.st_mtime_ns)
                == (source.status.st_size, source.status.st_mtime_ns)
                if linked
                else file_sha256(target) == source.sha256
            )
        except OSError as exc:
            raise LoadError(
                f"cannot put '{source.path}' in place as '{name}': {exc.strerror or exc}"
            ) from exc
        if not same:
            raise LoadError(
                f"'{source.path}' changed while it was being loaded: load again once "
                "nothing writes to the media"
            )


@dataclass(frozen=True)
class Thinned:
    """An archive made a delta by :func:`thin`: where, and what it left out."""

    path: Path
    kept: int
    kept_bytes: int


def thin(archive: Path, base: Base, output: Path) -> Thinned | None:
    """Write ``archive`` again as a delta against ``base``, at ``output``.

    For a push: the archive is whole, made before anyone knew what the host
    has. It is read twice, never trusted: once to verify it and learn each
    member's sha256, which decides what the host has (:class:`Theirs`),
    then to take out only the members still to send, into a folder beside
    ``output`` that goes when the new archive is written. Data, folders and
    links are written again as they were.

    :returns: ``None`` when there is nothing to leave out (or the archive is
        a delta already, which loads only where it was made for): send it as is.
    :raises ArchiveError: the archive does not verify.
    :raises DumpError: the new one cannot be written.
    """
    first = unpack(archive)
    if first.kept:
        return None
    kept: dict[str, Member] = {}
    for storage in first.storages:
        theirs = Theirs(base.get(storage, {}))
        for member in first.files(storage).values():
            if (member.size, member.sha256) in theirs.contents:
                kept[member.name] = member
    if not kept:
        return None
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".diskette-thin-") as work:
        root = Path(work)
        unpack(archive, place=lambda name: None if name in kept else root / name)
        writer = ArchiveWriter(output, permissions=0o600)
        with writer:
            for name, member in first.members.items():
                if name in kept:
                    writer.add_kept(name, member.size, member.sha256)
                elif member.kind == "file":
                    writer.add_file(root / name, name)
                elif member.kind == "directory":
                    writer.add_directory(root / name, name)
                else:
                    writer.add_symlink(name, member.target)
            manifest = {k: v for k, v in first.manifest.items() if k != "members"}
            writer.close(
                {**manifest, "delta": {"sidecar": False, "base": base_digest(base)}}
            )
    return Thinned(output, len(kept), sum(m.size for m in kept.values()))
