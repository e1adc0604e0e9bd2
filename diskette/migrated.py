"""Empty databases as ``migrate`` makes them, kept to be copied rather than migrated again.

A load with ``--reset`` into SQLite migrates a spare database beside the
project's own (:class:`diskette.reset.Spare`). For the sandbox that is half
a second of CPU; for a project of a few hundred migrations, many seconds;
and it is the same every time until a migration changes. What ``migrate``
makes of an empty database depends on the migration files, the installed
apps, the routers, the ``pre_migrate`` and ``post_migrate`` receivers (the
rows of ``contenttypes``, ``auth`` and ``sites``), ``SITE_ID``, and the
versions of Django, SQLite and diskette. The first spare migrated is
copied into the user's cache folder under a hash of all of these
(:func:`_key`); a later spare with the same hash is a copy of it.

A copy is used only if it is sound: a private file (the cache folder and
the file this user's alone, not writable by others, no symbolic link) that
SQLite opens and whose ``django_migrations`` lists exactly the migrations
``migrate`` would record. Where a source file cannot be read, the hash
cannot stand for the result and nothing is kept.
``DISKETTE_MIGRATION_CACHE = False`` turns it off, for a project whose
receivers make rows from anything else (other settings, the environment).

The cache is never the truth: it is written whole under a temporary name
then renamed, any failure to read or write it means migrating as before,
and only the few copies last used are kept (one per branch a developer
switches between).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import shutil
import sqlite3
import stat
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.db import connections, router
from django.db.migrations.loader import MigrationLoader
from django.db.models.signals import post_migrate, pre_migrate

from . import __version__
from .conf import setting
from .files import fsync_folder, user_cache
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
        folder = _private_folder(user_cache() / "diskette" / "migrated")
        if folder is None:
            return None
        with READING_MIGRATIONS:
            loader = MigrationLoader(None, ignore_no_migrations=True)
        key = _key(using, loader)
        if key is None:
            return None
        return cls(folder / f"{key}{SUFFIX}", frozenset(recorded_by_migrate(loader.graph)))

    def copy_into(self, target: Path) -> bool:
        """Write the kept copy over ``target`` (an empty database file,
        opened by its owner); ``False``, ``target`` left empty, when there
        is none or it is not sound."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            with open(descriptor, "rb", closefd=False) as source:
                if not _private(os.fstat(descriptor)):
                    return False
                with open(target, "r+b") as copy:
                    shutil.copyfileobj(source, copy)
                    copy.truncate()
            if self._sound(target):
                with contextlib.suppress(OSError):
                    os.utime(descriptor)  # used: kept the longest
                return True
        except (OSError, sqlite3.Error):
            pass
        finally:
            os.close(descriptor)
        _empty(target)
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

    def keep(self, migrated: Path) -> None:
        """Keep a copy of ``migrated``, an empty database ``migrate`` just made
        (closed, with no companion file); best effort."""
        folder = self.path.parent
        partial = None
        try:
            descriptor, partial = tempfile.mkstemp(prefix=".", suffix=".part", dir=folder)
            with open(descriptor, "wb") as copy, open(migrated, "rb") as source:
                shutil.copyfileobj(source, copy)
                copy.flush()
                os.fsync(copy.fileno())
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


def _key(using: str, loader: MigrationLoader) -> str | None:
    """A hash of what ``migrate`` makes of an empty database ``using``
    depends on; ``None`` when a source file cannot be read.

    Apps without migrations are not looked at: ``migrate`` makes no table
    for them, and its ``post_migrate`` receivers are given the models of
    the migrations.
    """
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
        getattr(settings, "SITE_ID", None),
    ]
    code = [
        *(type(loader.disk_migrations[key]) for key in sorted(loader.disk_migrations)),
        *(type(each) for each in router.routers),
        *_receivers(pre_migrate),
        *_receivers(post_migrate),
    ]
    for each in code:
        source = _source_digest(each)
        if source is None:
            return None
        parts.append([each.__module__, getattr(each, "__qualname__", repr(each)), source])
    try:
        text = json.dumps(parts, default=repr, sort_keys=True)
    except (TypeError, ValueError):  # OPTIONS keyed by other than text, say
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:40]


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


def _private_folder(folder: Path) -> Path | None:
    """``folder``, made if need be, if it is this user's own and not
    writable by others; else ``None``."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = os.lstat(folder)
    except OSError:
        return None
    return folder if stat.S_ISDIR(status.st_mode) and _private(status) else None


def _private(status: os.stat_result) -> bool:
    return status.st_uid == os.geteuid() and not status.st_mode & 0o022


def _empty(database: Path) -> None:
    """Leave ``database`` an empty file, with no companion, for ``migrate``."""
    with contextlib.suppress(OSError):
        os.truncate(database, 0)
    for suffix in SQLITE_COMPANIONS:
        with contextlib.suppress(OSError):
            os.unlink(f"{database}{suffix}")


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
