"""Crash-safe storage swaps: an on-disk journal, and the recovery that reads it.

A load replaces what a storage folder *holds*, never the folder itself: the
folder may be a mount point (which cannot be renamed) or a symlink's target,
and renaming entries inside it is instant and atomic, since they never leave
its file system. While a load runs, each storage folder ``D`` holds a work
folder of diskette's own::

    D/.diskette-load-<id>/journal.json   the phase, and what moves where
    D/.diskette-load-<id>/new/           the archive's files, extracted here
    D/.diskette-load-<id>/old/           D's previous entries, once set aside

The phases of one storage:

1. ``staging``: the archive is extracted into ``new/``; nothing of ``D`` has
   moved, so an interrupted load only leaves files to remove.
2. ``swapping``: written (and synced) before the first rename, with the
   entries of ``D`` to set aside and those of ``new/`` to move in. The
   former move into ``old/``, the latter into ``D``. This happens inside the
   load's transaction, before its COMMIT.
3. Once the data committed, ``old/`` and the work folder are removed.

A whole archive replaces every entry at the top of ``D``. A delta keeps
most files where they are (:mod:`diskette.delta`): its swap goes down into
the folders both sides have and lists, by path, only what differs, so a
pull that changed a hundred files of sixteen thousand renames a hundred,
not the whole tree. Entries are listed whole at the highest level where
they differ (a folder that is new, or gone, moves as one), so no entry
listed lies inside another, and the same steps finish or undo either kind.

Whether the data committed is something only the database knows: the load
writes a :class:`diskette.models.Load` row, named by the journal's load id,
in the same transaction. After a ``kill -9`` at any instant, :func:`recover`
reads the journal and asks the database: row present, the swap is finished
(media new, like the data); row absent, it is undone (media old, like the
data). Each rename is checked against what is on disk before it is made, so
a recovery interrupted in turn is simply run again.

While a load works on ``D`` it holds an exclusive ``flock`` on ``D`` itself;
the kernel drops it when the process dies, so a recovery that cannot take
the lock knows a load is running rather than interrupted.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import BusyError, LoadError

#: Names of diskette's work folders inside a storage; never dumped, never
#: accepted from an archive.
WORK_PREFIX = ".diskette-load-"
JOURNAL_NAME = "journal.json"
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def is_work_folder(name: str) -> bool:
    """Whether a storage entry named ``name`` is one of diskette's work folders."""
    return name.startswith(WORK_PREFIX)


@contextlib.contextmanager
def locked(folders: Iterable[Path], *, shared: bool = False) -> Iterator[None]:
    """Hold a lock on each folder, or refuse at once if one is taken.

    A load (and a recovery) holds exclusive locks on the storages it
    replaces; a dump holds shared ones on those it archives, so it never
    reads media halfway through a swap, and dumps run side by side.

    :raises BusyError: another diskette command holds a conflicting lock.
    """
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    descriptors: list[int] = []
    try:
        for folder in folders:
            descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC)
            descriptors.append(descriptor)
            try:
                fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                doing = "a load is writing into" if shared else "a load or a dump is using"
                raise BusyError(
                    f"another diskette command ({doing} '{folder}') is running: wait "
                    "for it to finish, then try again"
                ) from None
        yield
    finally:
        for descriptor in descriptors:
            os.close(descriptor)  # closing releases the lock


@dataclass(frozen=True)
class StorageSwap:
    """The replacement of one storage folder's contents by a load."""

    folder: Path
    load_id: str
    database: str
    #: A delta's files that stay where they are, by path in the folder, with
    #: their ``lstat`` when their sha256 was checked (:meth:`keep`).
    kept: dict[str, os.stat_result] = field(default_factory=dict, compare=False)

    # Cached: asked once per member of a load, tens of thousands of times.
    @functools.cached_property
    def work(self) -> Path:
        return self.folder / f"{WORK_PREFIX}{self.load_id}"

    @functools.cached_property
    def new(self) -> Path:
        """Where the archive's files for this storage are extracted."""
        return self.work / "new"

    @classmethod
    def start(cls, folder: Path, load_id: str, archive: str, database: str) -> StorageSwap:
        """Make the work folder and its journal, in phase ``staging``.

        The caller holds the folder's lock (:func:`locked`).

        :param database: the alias of the database the load writes to, which
            alone can tell a recovery whether the load committed.
        """
        swap = cls(folder, load_id, database)
        swap.work.mkdir(mode=0o700)
        swap.new.mkdir()
        _write_journal(swap.work, {**swap.header, "archive": archive, "state": "staging"})
        return swap

    @property
    def header(self) -> dict[str, str]:
        return {"load": self.load_id, "database": self.database}

    def keep(self, relative: str, status: os.stat_result) -> None:
        """Leave file ``relative`` where it is: the new contents hold it unchanged."""
        self.kept[relative] = status

    def swap(self) -> None:
        """Set the folder's entries aside and move the new ones in.

        The journal lists both sides before anything moves, so a crash at
        any point of this is finished or undone by :func:`recover`.

        :raises LoadError: a file kept in place changed since it was checked.
        """
        if self.kept:
            # The folders of kept files, in ``new/`` too: the walk goes down
            # into them rather than replacing them.
            for parent in {os.path.dirname(name) for name in self.kept} - {""}:
                os.makedirs(self.new / parent, exist_ok=True)
            old, new = _differences(self.folder, self.new, self.kept)
        else:
            old = sorted(n for n in os.listdir(self.folder) if not is_work_folder(n))
            new = sorted(os.listdir(self.new))
        _write_journal(
            self.work, {**self.header, "state": "swapping", "old": old, "new": new}
        )
        _forward(self.folder, self.work, old, new)

    def finish(self) -> None:
        """The data committed: drop the previous entries and the work folder."""
        _remove(self.work)

    def undo(self) -> None:
        """The data did not commit: put the previous entries back, drop the new."""
        journal = _read_journal(self.work)
        if journal.get("state") == "swapping":
            _backward(self.folder, self.work, journal["old"], journal["new"])
        _remove(self.work)


#: Whether the load of an id committed its data, asked of a database alias
#: (``None`` for a journal that names none); raises when it cannot tell.
Committed = Callable[[str, str | None], bool]


def recover(folders: Iterable[Path], committed: Committed) -> list[str]:
    """Finish or undo every load interrupted in ``folders``; say what was done.

    :param committed: asked for each interrupted load; when it raises, that
        load's journal stays as it is, for a later attempt.
    :returns: one line per interrupted load found.
    :raises BusyError: a load is running in one of the folders.
    """
    done = []
    for folder in folders:
        if not folder.is_dir():
            continue
        works = sorted(p for p in folder.iterdir() if is_work_folder(p.name))
        if not works:
            continue
        with locked([folder]):
            for work in works:
                done.append(_recover_one(folder, work, committed))
    return done


def _recover_one(folder: Path, work: Path, committed: Committed) -> str:
    # A load makes its work folder as the user it runs as: one of another
    # user's was planted (by whoever can write in the storage), or belongs
    # to a load whose user should settle it.
    if os.lstat(work).st_uid != os.geteuid():
        raise _unreadable(work, "it belongs to another user")
    journal = _read_journal(work)
    if journal.get("state") != "swapping":
        _remove(work)
        return (
            f"removed the files of a load interrupted before it changed anything "
            f"in '{folder}'"
        )
    database = journal.get("database")
    if committed(str(journal.get("load")), database if isinstance(database, str) else None):
        _forward(folder, work, journal["old"], journal["new"])
        _remove(work)
        return (
            f"finished a load interrupted after its data committed: '{folder}' now "
            "holds the media of that data"
        )
    _backward(folder, work, journal["old"], journal["new"])
    _remove(work)
    return (
        f"undid a load interrupted before its data committed: '{folder}' holds "
        "its media from before, like the database"
    )


def _differences(
    folder: Path, staged: Path, kept: Mapping[str, os.stat_result]
) -> tuple[list[str], list[str]]:
    """What a delta's swap sets aside and moves in: paths, each at the highest
    level where the folder and ``staged`` differ.

    The walk goes down only into folders both sides have (no link is
    followed); an entry of the folder that ``staged`` lacks is set aside,
    unless it is a kept file.

    :raises LoadError: a kept file is no longer the one checked (rewritten,
        replaced, moved behind a link), which would leave the wrong file in
        the new contents.
    """
    old: list[str] = []
    new: list[str] = []
    stayed = 0
    root = os.fspath(folder)  # joined as text: once per kept file
    pending = [""]
    while pending:
        prefix = pending.pop()
        here = _kinds(folder / prefix)
        there = _kinds(staged / prefix)
        for name, is_folder in here.items():
            path = f"{prefix}{name}"
            if not prefix and is_work_folder(name):
                continue
            if name in there:
                if is_folder and there[name]:
                    pending.append(f"{path}/")
                else:
                    old.append(path)
                    new.append(path)
            elif (
                path in kept
                and not is_folder
                and _unchanged(os.path.join(root, path), kept[path])
            ):
                stayed += 1
            else:
                old.append(path)
        new.extend(f"{prefix}{name}" for name in there.keys() - here.keys())
    if stayed != len(kept):
        raise LoadError(
            f"{len(kept) - stayed} of the media files this load keeps in '{folder}' "
            "changed while it was being loaded: load again once nothing writes to the media"
        )
    return sorted(old), sorted(new)


def _kinds(folder: Path) -> dict[str, bool]:
    """The entries of ``folder``, each with whether it is a folder (not a link to one)."""
    with os.scandir(folder) as entries:
        return {entry.name: entry.is_dir(follow_symlinks=False) for entry in entries}


def _unchanged(path: str, status: os.stat_result) -> bool:
    """Whether ``path`` is still the regular file ``status`` was taken of."""
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(now.st_mode) and (
        now.st_dev,
        now.st_ino,
        now.st_size,
        now.st_mtime_ns,
    ) == (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _forward(folder: Path, work: Path, old: list[str], new: list[str]) -> None:
    """Entries of ``old`` out of the folder, entries of ``new`` in; idempotent.

    An entry in the folder whose path is in both lists is the old one as long
    as its new namesake still waits in ``new/``.
    """
    incoming = set(new)
    with _roots(folder, work) as (here, waiting, aside):
        for name in old:
            if name in incoming and not _exists(waiting, name):
                continue  # already replaced by the new entry
            if _exists(here, name) and not _exists(aside, name):
                _move(here, aside, name, make_parents=True)
        for name in new:
            if _exists(waiting, name):
                _move(waiting, here, name)


def _backward(folder: Path, work: Path, old: list[str], new: list[str]) -> None:
    """Undo :func:`_forward`, from wherever it stopped; idempotent."""
    outgoing = set(old)
    with _roots(folder, work) as (here, waiting, aside):
        for name in new:
            if _exists(here, name) and not _exists(waiting, name):
                if name in outgoing and not _exists(aside, name):
                    continue  # the old entry, never moved
                _move(here, waiting, name, make_parents=True)
        for name in old:
            if _exists(aside, name) and not _exists(here, name):
                _move(aside, here, name)


@contextlib.contextmanager
def _roots(folder: Path, work: Path) -> Iterator[tuple[int, int, int]]:
    """Descriptors of the storage folder and of the work folder's ``new/``
    and ``old/`` (made if missing), opened once: below the storage folder,
    each is reached through no link, so a work folder swapped for a link
    after its journal was read leads nowhere."""
    opened: list[int] = []
    try:
        opened.append(os.open(folder, os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC))
        opened.append(_open_child(opened[0], work.name))
        for part in ("new", "old"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=opened[1])
            opened.append(_open_child(opened[1], part))
        yield opened[0], opened[2], opened[3]
    finally:
        for descriptor in opened:
            os.close(descriptor)


def _open_child(folder: int, name: str) -> int:
    """A descriptor of the folder ``name`` in ``folder``, not through a link."""
    return os.open(
        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | O_CLOEXEC, dir_fd=folder
    )


def _exists(root: int, name: str) -> bool:
    """Whether entry ``name`` (a path) of folder ``root`` exists, link or not."""
    try:
        os.lstat(name, dir_fd=root)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _move(source: int, target: int, name: str, *, make_parents: bool = False) -> None:
    """Rename entry ``name`` (a path) of folder ``source`` to the same path in
    folder ``target`` (descriptors, from :func:`_roots`).

    Each folder on the way is opened without following a link, so a folder
    swapped for a link after the journal was read (by someone who can write
    in the storage) cannot lead the rename outside.

    :param make_parents: make the folders above it in ``target`` (private
        ones, in the work folder).
    """
    parent, entry = os.path.split(name)
    source_folder = _open_folder(source, parent)
    try:
        target_folder = _open_folder(target, parent, make=make_parents)
        try:
            os.rename(entry, entry, src_dir_fd=source_folder, dst_dir_fd=target_folder)
        finally:
            os.close(target_folder)
    finally:
        os.close(source_folder)


def _open_folder(root: int, relative: str, *, make: bool = False) -> int:
    """A new descriptor of folder ``relative`` of ``root``, reached through no link."""
    descriptor = os.dup(root)
    for part in relative.split("/") if relative else ():
        try:
            if make:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=descriptor)
            inner = _open_child(descriptor, part)
        finally:
            os.close(descriptor)
        descriptor = inner
    return descriptor


def _write_journal(work: Path, content: dict[str, Any]) -> None:
    """Replace the journal atomically and durably: never half written."""
    temporary = work / f"{JOURNAL_NAME}.tmp"
    with open(temporary, "w", encoding="utf-8") as output:
        json.dump(content, output)
        output.flush()
        os.fsync(output.fileno())
    os.replace(temporary, work / JOURNAL_NAME)
    descriptor = os.open(work, os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_journal(work: Path) -> dict[str, Any]:
    """The journal, or ``{}`` when the crash came before it was written.

    The journal is replaced atomically, so it is either whole or absent; a
    ``swapping`` journal is written before anything moves.

    Anyone who can write into a storage (a web server's user) could plant a
    work folder: its parts must be real folders, and its lists paths inside
    the storage through no link, or nothing is moved (and a recovery reads
    only this user's, :func:`_recover_one`).
    """
    if not os.path.lexists(work):
        return {}
    for part in (work, work / "new", work / "old"):
        if os.path.lexists(part) and not stat.S_ISDIR(os.lstat(part).st_mode):
            raise _unreadable(work, f"'{part.name}' is not a folder")
    try:
        content = json.loads((work / JOURNAL_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise _unreadable(work, str(exc)) from exc
    if not isinstance(content, dict):
        raise _unreadable(work, "not a JSON object")
    if content.get("state") == "swapping":
        for key in ("old", "new"):
            names = content.get(key)
            # Paths inside the folder only: a journal planted by someone else
            # must not move anything from outside the storage folder.
            if not isinstance(names, list) or not all(map(_is_entry_path, names)):
                raise _unreadable(work, f"'{key}' is not a list of entry paths")
        linked = _through_link(
            (work.parent, work / "new", work / "old"), [*content["old"], *content["new"]]
        )
        if linked is not None:
            raise _unreadable(work, f"'{linked}' is a symbolic link")
    return content


def _is_entry_path(name: object) -> bool:
    """Whether ``name`` is a relative path, with no ``..``, to something other
    than diskette's own work folders."""
    if not isinstance(name, str):
        return False
    parts = name.split("/")
    return all(part not in ("", ".", "..") for part in parts) and not is_work_folder(
        parts[0]
    )


def _through_link(roots: Iterable[Path], names: Iterable[str]) -> Path | None:
    """The first folder above one of ``names``, in one of ``roots``, that is a
    symbolic link: moving an entry through it would reach outside."""
    parents = {os.path.dirname(name) for name in names} - {""}
    above = {p for parent in parents for p in _and_above(parent)}
    for root in roots:
        for parent in sorted(above):
            if os.path.islink(root / parent):
                return root / parent
    return None


def _and_above(path: str) -> Iterator[str]:
    while path:
        yield path
        path = os.path.dirname(path)


def _unreadable(work: Path, reason: str) -> LoadError:
    return LoadError(
        f"the journal of an interrupted load, '{work / JOURNAL_NAME}', cannot be "
        f"used ({reason}): compare that folder with '{work.parent}' by hand, "
        "then remove it"
    )


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


#: Prefix of the private folders data files are extracted into.
STAGING_PREFIX = "diskette-data-"
#: Prefix of such a folder being made, until its load has locked it.
BORN_PREFIX = "diskette-born-"
#: A folder being made that is older than this (seconds) was left by a load
#: killed while making it, between two system calls.
BORN_GRACE = 60


@contextlib.contextmanager
def staging_folder() -> Iterator[Path]:
    """A private folder for a load's data files, locked while in use, then removed.

    It lives in the system's temporary folder (``TMPDIR``); a process killed
    while using it leaves it behind, unlocked, for :func:`sweep_staging`.
    It is made under another name and takes its own only once locked: a
    command starting beside the load (a pull's safety snapshot) sweeps the
    unlocked ones, and would otherwise remove it between the two steps.
    """
    try:
        born = Path(tempfile.mkdtemp(prefix=BORN_PREFIX))
    except OSError as exc:
        raise LoadError(
            f"no folder for the data files can be made in the temporary folder ({exc}): "
            "point TMPDIR at a folder with room"
        ) from exc
    folder = born.with_name(f"{STAGING_PREFIX}{born.name.removeprefix(BORN_PREFIX)}")
    made = born
    try:
        with contextlib.ExitStack() as lock:
            try:
                lock.enter_context(locked([born]))
                os.rename(born, folder)  # the lock is the folder's, whatever its name
            except OSError as exc:  # another user's doing, in a shared TMPDIR
                raise LoadError(
                    f"the folder for the data files '{folder}' cannot be made ({exc}): "
                    "point TMPDIR at a folder of your own"
                ) from exc
            made = folder
            yield folder
    finally:
        _remove(made)


def sweep_staging() -> list[str]:
    """Remove the data folders that killed loads of this user left behind:
    unlocked ones, and those being made (:func:`staging_folder`) for longer
    than :data:`BORN_GRACE`."""
    now = time.time()
    swept: list[str] = []
    try:
        root = Path(tempfile.gettempdir())
    except OSError:
        return swept  # no usable temporary folder: nothing was left in one
    for folder in [*root.glob(f"{STAGING_PREFIX}*"), *root.glob(f"{BORN_PREFIX}*")]:
        try:
            status = folder.lstat()
            if (
                status.st_uid != os.getuid()
                or not stat.S_ISDIR(status.st_mode)
                or (
                    folder.name.startswith(BORN_PREFIX)
                    and now - status.st_mtime < BORN_GRACE
                )
            ):
                continue
            with locked([folder]):
                _remove(folder)
        except (BusyError, OSError):
            continue  # in use by a running load, or not ours to remove
        swept.append(f"removed '{folder}', left by an interrupted load")
    return swept
