"""Rows written in batches, with the database's fastest plain statement.

The loader hands this module rows that are ready for the database (values
through ``get_db_prep_save``, in column order): no model instance and no
``QuerySet`` on the way, since building those per row is what made loads
run at a few thousand rows a second. PostgreSQL receives new rows through
``COPY`` (psycopg 3's copy support), SQLite and MySQL through one
``executemany`` of an ``INSERT`` per batch: SQLite runs it as one prepared
statement, mysqlclient rewrites it into multi-row inserts. Rows whose
primary key exists already are updated, as ``loaddata``'s ``save()`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import DatabaseError, IntegrityError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.constants import OnConflict

from .rows import in_list_size

#: How long PostgreSQL waits for the lock that dropping a foreign key takes.
LOCK_TIMEOUT = "5s"


def insert_rows(
    connection: BaseDatabaseWrapper,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """Insert ``rows`` into ``table``; with ``ignore_conflicts``, rows that
    would break a unique constraint are skipped (many-to-many links)."""
    if not rows:
        return
    if can_copy(connection):
        if not ignore_conflicts:
            _copy(connection, table, columns, rows)
            return
        # COPY cannot skip a row: try it, and insert row by row if it fails.
        savepoint = connection.savepoint()
        try:
            _copy(connection, table, columns, rows)
        except (IntegrityError, connection.Database.IntegrityError):
            # COPY reaches psycopg without Django's wrapper: its own error.
            connection.savepoint_rollback(savepoint)
        else:
            connection.savepoint_commit(savepoint)
            return
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    ops = connection.ops
    names = ", ".join(ops.quote_name(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    suffix = ops.on_conflict_suffix_sql([], on_conflict, None, None) if on_conflict else ""
    sql = (
        f"{ops.insert_statement(on_conflict=on_conflict)} {ops.quote_name(table)} "
        f"({names}) VALUES ({marks}) {suffix}"
    ).rstrip()
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def update_rows(
    connection: BaseDatabaseWrapper,
    table: str,
    columns: Sequence[str],
    key: str,
    rows: Iterable[Sequence[Any]],
) -> None:
    """Update each row by its key: ``rows`` hold the ``columns``' values, then the key.

    A table of a key alone has nothing to update: the row exists, as wanted.
    """
    if not columns:
        return
    qn = connection.ops.quote_name
    assignments = ", ".join(f"{qn(c)} = %s" for c in columns)
    sql = f"UPDATE {qn(table)} SET {assignments} WHERE {qn(key)} = %s"
    with connection.cursor() as cursor:
        cursor.executemany(sql, list(rows))


def existing_keys(
    connection: BaseDatabaseWrapper, table: str, key: str, values: Sequence[Any]
) -> list[Any]:
    """The values of ``values`` that column ``key`` of ``table`` holds already."""
    qn = connection.ops.quote_name
    select = f"SELECT {qn(key)} FROM {qn(table)} WHERE {qn(key)}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # one array, not a parameter a key
            cursor.execute(f"{select} = ANY(%s)", [list(values)])
            return [row[0] for row in cursor.fetchall()]
        found: list[Any] = []
        size = in_list_size(connection)  # the dump's bound on an IN list
        for start in range(0, len(values), size):
            chunk = values[start : start + size]
            cursor.execute(f"{select} IN ({', '.join(['%s'] * len(chunk))})", chunk)
            found += [row[0] for row in cursor.fetchall()]
    return found


def can_copy(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``connection`` is PostgreSQL through psycopg 3, which has ``COPY``."""
    if connection.vendor != "postgresql":
        return False
    # Importable only where a PostgreSQL driver is installed, as here.
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


def _copy(
    connection: BaseDatabaseWrapper,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    qn = connection.ops.quote_name
    names = ", ".join(qn(c) for c in columns)
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {qn(table)} ({names}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


class LateForeignKeys:
    """PostgreSQL's foreign keys on the tables a load fills, dropped before
    their first row and added back once every row is in, as ``pg_restore``
    orders it.

    Each row's check would otherwise run at the end as a trigger of its own,
    one query a row: longer than writing the rows. Adding the constraint
    back checks the whole table in one scan, inside the load's transaction,
    so a missing target still fails the load and nothing stays. Where the
    user may not alter a table (not its owner), the table has checks
    pending from earlier in the transaction, or another session holds a
    lock on it for more than :data:`LOCK_TIMEOUT`, its keys stay as they are.
    """

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.enabled = connection.vendor == "postgresql"
        #: (table, constraint name, definition), in the order they were dropped.
        self.dropped: list[tuple[str, str, str]] = []
        self.seen: set[str] = set()

    def drop(self, table: str) -> None:
        if not self.enabled or table in self.seen:
            return
        self.seen.add(table)
        qn = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' AND conrelid = %s::regclass ORDER BY conname",
                [qn(table)],
            )
            keys = cursor.fetchall()
            if not keys:
                return
            savepoint = self.connection.savepoint()
            try:
                # Dropping a key locks its table and the one it refers to
                # until COMMIT: a session idle in a transaction on either
                # (a runserver, a worker) must not stall the load behind it.
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                for name, _ in keys:
                    cursor.execute(f"ALTER TABLE {qn(table)} DROP CONSTRAINT {qn(name)}")
                cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
            except DatabaseError:
                self.connection.savepoint_rollback(savepoint)
                return
            self.connection.savepoint_commit(savepoint)
        self.dropped += [(table, name, definition) for name, definition in keys]

    def restore(self) -> None:
        """Add every dropped key back: each checks its table's rows now.

        :raises IntegrityError: a row refers to one that does not exist.
        """
        qn = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            for table, name, definition in self.dropped:
                cursor.execute(
                    f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} {definition}"
                )
        self.dropped.clear()
