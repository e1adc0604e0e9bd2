"""Reset: drop a project's database, create it empty again, and migrate.

This lives in the Django app, not in the Invoke tasks, so that it runs the
same way on a laptop and, through Fabric, on a server: only ``manage.py`` is
needed there, with the project's own database settings and drivers.

- SQLite: the database file (and its ``-wal``, ``-shm``, ``-journal``
  companions) is deleted. A load with ``--reset`` instead renames over it a
  spare database migrated while its archive came (:class:`Spare`).
- PostgreSQL: other sessions on the database are terminated, the database is
  dropped and created again with the same owner, encoding and locale. When
  the role may not create databases, the ``public`` schema is dropped and
  created again instead, which removes every table, sequence and view in it.
- MySQL/MariaDB: the other sessions on the database that the user may end
  are killed (its own; everyone's with the PROCESS privilege),
  the database is dropped and created again with the same default character
  set and collation. When the user may not create it (a ``CREATE DATABASE``
  privilege is checked before anything is dropped), every table, view and
  sequence in it is dropped instead, with foreign key checks off.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.utils import load_backend

from .exceptions import ConfigurationError, ResetError
from .migrated import SQLITE_COMPANIONS, Migrated, has_companions
from .schema import READING_MIGRATIONS


@dataclass(frozen=True)
class Target:
    """The database a reset would drop, described for a person."""

    alias: str
    vendor: str
    name: str
    where: str

    def __str__(self) -> str:
        return f"{self.vendor} database '{self.name}'{self.where}"


def describe(using: str = DEFAULT_DB_ALIAS) -> Target:
    """What :func:`reset` would drop."""
    connection = connections[using]
    settings = connection.settings_dict
    host = settings.get("HOST") or ""
    where = f" on {host}:{settings.get('PORT') or 'default port'}" if host else ""
    return Target(using, connection.vendor, str(settings["NAME"]), where)


def reset(
    using: str = DEFAULT_DB_ALIAS, verbosity: int = 0, spare: Spare | None = None
) -> str:
    """Empty the database ``using`` and apply every migration.

    :param spare: an SQLite database migrated beforehand (:class:`Spare`),
        put in place of this one if it was made; else the reset is done here.
    :returns: how it was emptied, for the person who asked.
    :raises ConfigurationError: for a database diskette cannot reset.
    :raises ResetError: when the database refuses.
    """
    if spare is not None and spare.put_in_place():
        return "replaced the database file by a new one"
    connection = connections[using]
    resetters = {
        "sqlite": _reset_sqlite,
        "postgresql": _reset_postgresql,
        "mysql": _reset_mysql,
    }
    if connection.vendor not in resetters:
        raise ConfigurationError(
            "diskette_reset handles SQLite, PostgreSQL and MySQL/MariaDB, not "
            f"{connection.vendor}: drop and create the database yourself, then run migrate"
        )
    try:
        how = resetters[connection.vendor](connection)
    except DatabaseError as exc:
        raise ResetError(f"{describe(using)} could not be reset: {exc}".strip()) from exc
    output = StringIO()
    call_command(
        "migrate", database=using, interactive=False, verbosity=verbosity, stdout=output
    )
    return how


def _reset_sqlite(connection: Any) -> str:
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or "mode=memory" in name:
        raise ConfigurationError("an in-memory SQLite database has nothing to reset")
    connection.close()
    existed = Path(name).exists()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{name}{suffix}").unlink(missing_ok=True)
    return "deleted the database file" if existed else "there was no database file yet"


#: Between an SQLite database's file name and the random end of its spare's.
SPARE_INFIX = ".diskette-spare-"
#: Seconds a dropped spare's thread is given to stop and remove its files.
STOP_WAIT = 10


class Spare:
    """A new SQLite database, migrated beside the project's own on a thread
    while a load receives and verifies its archive: the reset after the
    archive's last byte then swaps the files (:func:`reset`), rather than
    migrating then.

    Nothing of the project's database is touched before that swap: the spare
    is a file of its own, in the same folder (so the swap is a rename),
    migrated through a connection of its own on its own thread. It is made
    as a reset makes one: ``migrate`` on an empty file, with the same
    settings and alias, so routers and ``post_migrate`` receivers see what
    they always see; or, once those migrations were so migrated, a copy of
    the result kept in the user's cache (:class:`~diskette.migrated.Migrated`).
    If anything fails, it is dropped and the reset migrates as it always
    did. A load that stops first stops the migration at its next query, and
    the thread removes the spare's files; a sweep removes what a killed
    process left.

    SQLite only: on a server, a spare would be a second database to create,
    which the project's user may not be allowed to.
    """

    def __init__(self, using: str) -> None:
        settings = connections[using].settings_dict
        self.using = using
        self.target = Path(os.path.abspath(settings["NAME"]))
        sweep_spares(self.target)
        descriptor, path = tempfile.mkstemp(
            prefix=f"{self.target.name}{SPARE_INFIX}", dir=self.target.parent
        )
        self.path = Path(path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # a sweep leaves it alone while held
            os.fchmod(descriptor, _database_mode(self.target))
        except BaseException:
            os.close(descriptor)
            self.path.unlink(missing_ok=True)
            raise
        self.descriptor: int | None = descriptor
        self.lock = threading.Lock()
        self.migrated = self.finished = self.abandoned = False
        self.thread = threading.Thread(
            target=self._migrate, args=({**settings, "NAME": path}, descriptor), daemon=True
        )
        self.thread.start()

    @classmethod
    def beside(cls, using: str) -> Spare | None:
        """A spare for database ``using``, or ``None`` where none can be made
        (not SQLite, in memory, a folder that cannot be written)."""
        settings = connections[using].settings_dict
        name = str(settings["NAME"])
        if (
            connections[using].vendor != "sqlite"
            or ":memory:" in name
            or "mode=memory" in name
        ):
            return None
        try:
            return cls(using)
        except OSError:
            return None  # the reset migrates, and says what is wrong with the folder

    def _migrate(self, settings: dict[str, Any], descriptor: int) -> None:
        """:param descriptor: the spare's file, open until the thread ends."""
        try:
            # The project's copy of an empty migrated database, if kept:
            # the same for the same migrations, and a copy costs no CPU.
            kept = Migrated.of(self.using)
            if kept is not None and kept.copy_into(descriptor, self.path):
                self.migrated = True
                return
            connection = load_backend(settings["ENGINE"]).DatabaseWrapper(
                settings, self.using
            )
            connections[self.using] = connection  # in this thread only
            try:
                with READING_MIGRATIONS, connection.execute_wrapper(self._unless_dropped):
                    call_command(
                        "migrate",
                        database=self.using,
                        interactive=False,
                        verbosity=0,
                        stdout=StringIO(),
                    )
            finally:
                connection.close()
            # Not once dropped: its migration's queries failed, and a
            # receiver that swallowed that may have made fewer rows.
            if kept is not None and not self.abandoned and not has_companions(self.path):
                kept.keep(descriptor)
            self.migrated = True
        except BaseException:  # noqa: BLE001, S110 - not migrated: the reset migrates itself
            pass
        finally:
            with self.lock:
                self.finished = True
                if self.abandoned:
                    self._remove()

    def _unless_dropped(
        self, execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        """Each query of the migration, unless the spare was dropped meanwhile:
        then the migration stops at its next query."""
        if self.abandoned:
            raise DatabaseError("the spare database was dropped")
        return execute(sql, params, many, context)

    def put_in_place(self) -> bool:
        """Swap the spare in for the project's database, once migrated;
        ``False`` (the spare dropped) if it could not be made whole."""
        self.thread.join()
        if not self.migrated or self.descriptor is None or has_companions(self.path):
            self.drop()
            return False
        connections[self.using].close()
        for suffix in SQLITE_COMPANIONS:  # of the database that goes
            Path(f"{self.target}{suffix}").unlink(missing_ok=True)
        os.replace(self.path, self.target)
        os.close(self.descriptor)
        self.descriptor = None
        _forget_cached_rows()
        return True

    def drop(self) -> None:
        """Remove the spare unless it was put in place: its migration stops
        at its next query, and its thread removes the files it wrote."""
        with self.lock:
            if self.descriptor is None:
                return
            if self.finished:
                self._remove()
                return
            self.abandoned = True
        # Waited for a moment, not for long: a process killed first leaves
        # the files to the next sweep.
        self.thread.join(timeout=STOP_WAIT)

    def _remove(self) -> None:
        """Under the lock: the spare's files go, and what its migration cached."""
        _remove_database(self.path)
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None
        _forget_cached_rows()


def _database_mode(database: Path) -> int:
    """The mode the database file has, or the one SQLite gives a new file
    (not mkstemp's 0600): a web server reading it as another user still can."""
    try:
        return database.stat().st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o644 & ~mask


def sweep_spares(database: Path) -> None:
    """Remove the spares of ``database`` that killed loads left behind
    (unlocked: a running load holds a lock on its own), and the journals
    of spares already gone."""
    for path in database.parent.glob(f"{database.name}{SPARE_INFIX}*"):
        with contextlib.suppress(OSError):
            if path.name.endswith(SQLITE_COMPANIONS):
                main = Path(str(path).rsplit("-", 1)[0])
                if not main.exists():
                    path.unlink()
                continue
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _remove_database(path)
            finally:
                os.close(descriptor)


def _remove_database(path: Path) -> None:
    for suffix in ("", *SQLITE_COMPANIONS):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _forget_cached_rows() -> None:
    """Empty the caches Django keeps of rows by database alias: the spare's
    migration filled them from another file than the one now in place."""
    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes.models import ContentType

        ContentType.objects.clear_cache()
    if apps.is_installed("django.contrib.sites"):
        from django.contrib.sites.models import Site

        Site.objects.clear_cache()


def _reset_postgresql(connection: Any) -> str:
    name = connection.settings_dict["NAME"]
    quoted = connection.ops.quote_name(name)
    connection.close()
    # A database cannot be dropped from a session on it: work from the
    # maintenance database, which Django's own test runner also relies on.
    with connection._nodb_cursor() as cursor:
        cursor.execute(
            "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        (can_create,) = cursor.fetchone()
        cursor.execute(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, "
            "datctype FROM pg_database WHERE datname = %s",
            [name],
        )
        found = cursor.fetchone()
        if can_create or found is None:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            cursor.execute(f"DROP DATABASE IF EXISTS {quoted}")
            create = f"CREATE DATABASE {quoted}"
            if found is not None:
                owner, encoding, collate, ctype = found
                create += (
                    f" OWNER {connection.ops.quote_name(owner)} ENCODING '{encoding}'"
                    f" LC_COLLATE '{collate}' LC_CTYPE '{ctype}' TEMPLATE template0"
                )
            cursor.execute(create)
            return "dropped and created the database"
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS public CASCADE")
        cursor.execute("CREATE SCHEMA public")
    connection.close()
    return "dropped and created schema 'public' (the role may not create databases)"


#: MySQL's "access denied" errors: to a database (1044), to a table (1142), for
#: an operation needing a privilege the user lacks (1227).
_MYSQL_ACCESS_DENIED = {1044, 1142, 1227}
#: How each kind of object in ``information_schema.TABLES`` is dropped.
_MYSQL_DROP = {"BASE TABLE": "TABLE", "SYSTEM VERSIONED": "TABLE", "VIEW": "VIEW"}


def _reset_mysql(connection: Any) -> str:
    name = connection.settings_dict["NAME"]
    quoted = _mysql_identifier(name)
    connection.close()
    # A database is dropped and created from a connection with none selected.
    with connection._nodb_cursor() as cursor:
        cursor.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            [name],
        )
        found = cursor.fetchone()
        if found is None:
            cursor.execute(f"CREATE DATABASE {quoted}")  # the server's defaults
            return "created the database (there was none yet)"
        charset, collation = found
        try:
            # The privilege is checked before existence: a user who could drop
            # the database but not create it again is stopped here, with the
            # database still in place.
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quoted}")
            _kill_mysql_sessions(cursor, name)
            cursor.execute(f"DROP DATABASE {quoted}")
        except DatabaseError as exc:
            if _mysql_error_code(exc) not in _MYSQL_ACCESS_DENIED:
                raise
        else:
            cursor.execute(
                f"CREATE DATABASE {quoted} CHARACTER SET {charset} COLLATE {collation}"
            )
            return "dropped and created the database"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE()"
        )
        objects = cursor.fetchall()
        cursor.execute("SET SESSION foreign_key_checks = 0")
        try:
            for table, kind in objects:
                what = _MYSQL_DROP.get(kind, kind)  # "SEQUENCE" on MariaDB
                cursor.execute(f"DROP {what} IF EXISTS {_mysql_identifier(table)}")
        finally:
            cursor.execute("SET SESSION foreign_key_checks = 1")
    connection.close()
    return (
        "dropped every table and view in the database (the user may not create databases)"
    )


def _mysql_identifier(name: str) -> str:
    """``name`` quoted for MySQL, backticks in it doubled.

    Django's ``quote_name`` does not double them, and table names come from
    the database: one crafted to close the quote would run its own SQL.
    """
    return "`" + name.replace("`", "``") + "`"


def _kill_mysql_sessions(cursor: Any, name: str) -> None:
    """End the other sessions on database ``name`` that this user may see and
    end: its own, and other users' too when it holds the PROCESS and
    CONNECTION ADMIN (or SUPER) privileges, as PostgreSQL's reset ends every
    session on the database. One in a transaction would make ``DROP
    DATABASE`` wait on its locks."""
    cursor.execute(
        "SELECT ID FROM information_schema.PROCESSLIST "
        "WHERE DB = %s AND ID <> CONNECTION_ID()",
        [name],
    )
    for (session,) in cursor.fetchall():
        with contextlib.suppress(DatabaseError):  # gone meanwhile, or not ours to end
            cursor.execute(f"KILL CONNECTION {int(session)}")


def _mysql_error_code(exc: DatabaseError) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None
