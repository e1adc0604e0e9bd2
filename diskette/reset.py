"""Reset: drop a project's database, create it empty again, and migrate.

This lives in the Django app, not in the Invoke tasks, so that it runs the
same way on a laptop and, through Fabric, on a server: only ``manage.py`` is
needed there, with the project's own database settings and drivers.

- SQLite: the database file (and its ``-wal``, ``-shm``, ``-journal``
  companions) is deleted.
- PostgreSQL: other sessions on the database are terminated, the database is
  dropped and created again with the same owner, encoding and locale. When
  the role may not create databases, the ``public`` schema is dropped and
  created again instead, which removes every table, sequence and view in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from .exceptions import ConfigurationError, ResetError


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


def reset(using: str = DEFAULT_DB_ALIAS, verbosity: int = 0) -> str:
    """Empty the database ``using`` and apply every migration.

    :returns: how it was emptied, for the person who asked.
    :raises ConfigurationError: for a database diskette cannot reset.
    :raises ResetError: when the database refuses.
    """
    connection = connections[using]
    resetters = {"sqlite": _reset_sqlite, "postgresql": _reset_postgresql}
    if connection.vendor not in resetters:
        raise ConfigurationError(
            f"diskette_reset handles SQLite and PostgreSQL, not {connection.vendor}: "
            "drop and create the database yourself, then run migrate"
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
