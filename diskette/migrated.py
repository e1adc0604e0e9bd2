"""Empty databases as ``migrate`` makes them, kept to be copied rather than migrated again.

A load with ``--reset`` into SQLite migrates a spare database beside the
project's own (:class:`diskette.reset.Spare`). For the sandbox that is half
a second of CPU; for a project of a few hundred migrations, many seconds;
and it is the same every time until a migration changes. So the first
spare migrated is copied into the user's cache folder
(``$XDG_CACHE_HOME/diskette/migrated/``, else ``~/.cache/...``), named by a
hash of what ``migrate`` makes of an empty database depends on
(:func:`_key`): each migration file and its operations as loaded (a
setting read as it was imported is in them), the swappable models'
settings (``AUTH_USER_MODEL``), the installed apps, the source files of
the ``pre_migrate`` and ``post_migrate`` receivers (the rows of
``contenttypes``, ``auth``, ``sites``), ``SITE_ID``, ``LANGUAGE_CODE`` and
``LANGUAGES``, the database's alias, engine and options, and the versions
of Django, SQLite and diskette. A later spare with the same hash is a
copy of it.

None is kept where a hash cannot stand for the result: with database
routers (their answers follow settings and hints), an app with models but
no migrations, a source file that cannot be read. What the hash does not
see: other settings read as data migrations or receivers run, code they
call in other modules, data files, the environment, values drawn at random.
``DISKETTE_MIGRATION_CACHE = False`` turns it off for a project where
those change what ``migrate`` makes.

A copy is used only if it is sound: a regular file of this user's, not
writable by others, in folders of this user's below the cache folder (its
own made private where a umask of 002 left them writable by the group),
none of them a symbolic link; one that SQLite opens and whose
``django_migrations`` lists exactly the migrations ``migrate`` would
record. It is written through the spare's open descriptor, never by name.
The cache is never the truth: a copy is written whole under a temporary
name then renamed, any failure to read or write it means migrating as
before, and only the few copies last used are kept (one per branch a
developer switches between).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import sqlite3
import stat
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.db import connections, router
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.writer import MigrationWriter
from django.db.models.signals import post_migrate, pre_migrate
from django.utils.module_loading import module_has_submodule

from . import __version__
from .conf import setting
from .files import BLOCK_SIZE, fsync_folder, user_cache
from .schema import READING_MIGRATIONS, recorded_by_migrate

#: Bumped when what a key covers changes: copies kept under another are not found.
KEY_FORMAT = 1
#: Copies kept, the most recently used: one per branch switched between.
KEPT = 4
#: A temporary file older than this (seconds) was left by a killed process.
STALE = 60
#: The end of a kept copy's name, after its key.
SUFFIX = ".sqlite3"
#: What SQLite writes beside a database file.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def has_companions(database: Path) -> bool:
    """Whether SQLite left files beside ``database``: it is not whole alone."""
    return any(Path(f"{database}{s}").exists() for s in SQLITE_COMPANIONS)


@dataclass(frozen=True)
class Migrated:
    """The copy of an empty migrated database for one database's migrations.

    :param path: where it is kept (or will be).
    :param recorded: the migrations ``migrate`` records in an empty database:
        what a sound copy's ``django_migrations`` lists.
    """

    path: Path
    recorded: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, using: str) -> Migrated | None:
        """The copy for database ``using``, kept or to keep; ``None`` when
        turned off, when the cache folder is not private, or when a copy
        cannot stand for ``migrate`` in this project."""
        if not setting("DISKETTE_MIGRATION_CACHE"):
            return None
        folder = _private_folder(user_cache(), Path("diskette", "migrated"))
        if folder is None:
            return None
        try:
            _import_management_modules()  # their receivers, as migrate has them
            with READING_MIGRATIONS:
                loader = MigrationLoader(None, ignore_no_migrations=True)
            key = _key(using, loader)
            recorded = recorded_by_migrate(loader.graph)
        except Exception:  # noqa: BLE001 - a copy is a shortcut: migrate says what is wrong
            return None
        return None if key is None else cls(folder / f"{key}{SUFFIX}", frozenset(recorded))

    def copy_into(self, target: int, name: Path) -> bool:
        """Write the kept copy into the empty database file open as
        ``target`` (its name ``name``); ``False``, the file left empty,
        when there is none or it is not sound."""
        try:
            source = os.open(
                self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )
        except OSError:
            return False
        try:
            status = os.fstat(source)
            if not (stat.S_ISREG(status.st_mode) and _private(status)):
                return False
            _copy(source, target, sync=False)
            if self._sound(name):
                with contextlib.suppress(OSError):
                    os.utime(source)  # used: kept the longest
                return True
        except (OSError, sqlite3.Error):
            pass
        finally:
            os.close(source)
        _empty(target, name)
        return False

    def _sound(self, database: Path) -> bool:
        """Whether SQLite opens ``database`` and it records the migrations
        ``migrate`` would, leaving no companion file."""
        connection = sqlite3.connect(database)
        try:
            recorded = set(connection.execute("SELECT app, name FROM django_migrations"))
        finally:
            connection.close()
        return recorded == self.recorded and not has_companions(database)

    def keep(self, migrated: int) -> None:
        """Keep a copy of the database open as ``migrated``, which ``migrate``
        just made (closed, with no companion file); best effort."""
        folder = self.path.parent
        partial = None
        try:
            descriptor, partial = tempfile.mkstemp(prefix=".", suffix=".part", dir=folder)
            try:
                _copy(migrated, descriptor, sync=True)
            finally:
                os.close(descriptor)
            os.replace(partial, self.path)
            partial = None
            fsync_folder(folder)
        except OSError:
            return
        finally:
            if partial is not None:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
        _prune(folder)


def _copy(source: int, target: int, *, sync: bool) -> None:
    """Copy the whole file open as ``source`` over the one open as
    ``target``: descriptors, not names, which another may swap.

    :param sync: flush it to disk before returning (a copy kept for later;
        a spare is flushed by SQLite as the load commits into it).
    """
    os.lseek(source, 0, os.SEEK_SET)
    os.lseek(target, 0, os.SEEK_SET)
    while block := os.read(source, BLOCK_SIZE):
        view = memoryview(block)
        while view:
            view = view[os.write(target, view) :]
    os.ftruncate(target, os.lseek(target, 0, os.SEEK_CUR))
    if sync:
        os.fsync(target)


def _import_management_modules() -> None:
    """Import each app's ``management`` package, as ``migrate`` does first:
    receivers connected there are the ``migrate``'s too."""
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "management"):
            import_module(".management", config.name)


def _key(using: str, loader: MigrationLoader) -> str | None:
    """A hash of what ``migrate`` makes of an empty database ``using``
    depends on; ``None`` when it cannot be told.

    It cannot where routers decide what goes in which database (their
    answers follow settings and hints, not code alone), where an app has
    models but no migrations (its content types and permissions follow its
    models), or where a source file cannot be read.
    """
    if router.routers:
        return None
    for label in loader.unmigrated_apps:
        if any(apps.get_app_config(label).get_models(include_auto_created=True)):
            return None
    connection = connections[using]
    parts: list[Any] = [
        KEY_FORMAT,
        django.get_version(),
        __version__,
        sqlite3.sqlite_version,
        using,
        connection.settings_dict["ENGINE"],
        connection.settings_dict.get("OPTIONS", {}),
        [config.name for config in apps.get_app_configs()],
        # Read by the receivers and data migrations of common apps.
        [
            getattr(settings, name, None)
            for name in ("SITE_ID", "LANGUAGE_CODE", "LANGUAGES")
        ],
        # Swappable models (AUTH_USER_MODEL): the migrations name the setting.
        sorted(
            (model._meta.swappable, str(getattr(settings, model._meta.swappable, "")))
            for model in apps.get_models(include_swapped=True)
            if model._meta.swappable
        ),
    ]
    sources: list[str | None] = []
    for key in sorted(loader.disk_migrations):
        migration = loader.disk_migrations[key]
        # The file, and its operations as loaded: a value read from the
        # settings as it was imported is written out.
        operations = [_serialized(o) for o in migration.operations]
        sources.append(_source_digest(type(migration)))
        parts.append([key, sources[-1], operations])
    for code in (*_receivers(pre_migrate), *_receivers(post_migrate)):
        sources.append(_source_digest(code))
        parts.append([code.__module__, code.__qualname__, sources[-1]])
    if None in sources:
        return None
    try:
        text = json.dumps(parts, default=repr, sort_keys=True)
    except (TypeError, ValueError):  # OPTIONS keyed by other than text, say
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _serialized(operation: Any) -> str:
    """An operation as a migration file writes it; one that cannot be
    written (a ``RunPython`` of a lambda) as its class and the arguments
    that can, the file's own hash standing for the others."""
    try:
        return MigrationWriter.serialize(operation)[0]
    except ValueError:
        pass
    name, args, kwargs = operation.deconstruct()
    values = [*args, *(kwargs[k] for k in sorted(kwargs))]
    written = []
    for value in values:
        try:
            written.append(MigrationWriter.serialize(value)[0])
        except ValueError:
            written.append("?")
    return f"{name}({', '.join(written)}; {sorted(kwargs)})"


def _receivers(signal: Any) -> Iterable[Any]:
    """The code of the receivers connected to ``signal`` (dead references left
    out): a bound method's function, a partial's, a callable object's class."""
    for entry in signal.receivers:
        receiver = entry[1]
        if isinstance(receiver, weakref.ReferenceType):
            receiver = receiver()
        while isinstance(receiver, functools.partial):
            receiver = receiver.func
        receiver = getattr(receiver, "__func__", receiver)
        if receiver is None:
            continue
        yield receiver if inspect.isfunction(receiver) else type(receiver)


def _source_digest(code: Any) -> str | None:
    """The sha256 of the file that defines ``code``; ``None`` if unreadable."""
    module = sys.modules.get(getattr(code, "__module__", None) or "")
    try:
        path = inspect.getsourcefile(module) if module is not None else None
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except (OSError, TypeError, ValueError):
        return None


def _private_folder(cache: Path, below: Path) -> Path | None:
    """``cache / below``, its folders made if need be; ``None`` unless the
    cache folder is this user's (or root's) and not writable by all, and
    each folder below is this user's, none a symbolic link.

    A folder below that the group or others may write in is this user's
    own (made under a umask of 002, by the media index say): it is made
    private rather than refused.
    """
    folder = cache
    try:
        if not cache.is_absolute():
            return None  # no home: not a folder below the current one
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = os.lstat(cache)
        if not stat.S_ISDIR(status.st_mode) or status.st_mode & 0o002:
            return None
        if status.st_uid not in (os.geteuid(), 0):
            return None
        for part in below.parts:
            folder = folder / part
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
            status = os.lstat(folder)
            if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
                return None
            if status.st_mode & 0o022:
                os.chmod(folder, stat.S_IMODE(status.st_mode) & ~0o022)
    except OSError:
        return None
    return folder


def _private(status: os.stat_result) -> bool:
    return status.st_uid == os.geteuid() and not status.st_mode & 0o022


def _empty(database: int, name: Path) -> None:
    """Leave the database open as ``database`` an empty file, with no
    companion, for ``migrate``."""
    with contextlib.suppress(OSError):
        os.ftruncate(database, 0)
    for suffix in SQLITE_COMPANIONS:
        with contextlib.suppress(OSError):
            os.unlink(f"{name}{suffix}")


def _prune(folder: Path) -> None:
    """Remove all but the :data:`KEPT` copies last used, and the temporary
    files of killed processes."""
    now = time.time()
    kept: list[tuple[float, Path]] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            status = entry.stat(follow_symlinks=False)
            if entry.name.endswith(SUFFIX):
                kept.append((status.st_mtime, Path(entry.path)))
            elif entry.name.endswith(".part") and now - status.st_mtime > STALE:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    for _, path in sorted(kept, reverse=True)[KEPT:]:
        with contextlib.suppress(OSError):
            path.unlink()
