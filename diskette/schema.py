"""Migration state: which migrations a database has applied.

A dump records it in the manifest; a load compares it with the local
database's, because fixtures written under one schema may not fit another.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from .definitions import OWN_APP_LABEL


def applied_migrations(using: str) -> dict[str, list[str]]:
    """Applied migration names per app label, as recorded in ``using``."""
    recorder = MigrationRecorder(connections[using])
    if not recorder.has_table():
        return {}
    applied: dict[str, list[str]] = {}
    for app_label, name in sorted(recorder.applied_migrations()):
        applied.setdefault(app_label, []).append(name)
    return applied


#: Held while the migration files are read: a spare database migrating on a
#: thread (:class:`diskette.reset.Spare`) and a load comparing migrations
#: would otherwise read them at once, and Django's loader reloads the
#: migration packages it finds imported.
READING_MIGRATIONS = threading.Lock()


def migrations_after_reset() -> dict[str, list[str]]:
    """What :func:`applied_migrations` will say once a reset has migrated an
    empty database: every migration of the project, as ``migrate`` records
    them (a squashed one with those it replaces). Read from the files, so a
    load can compare before it drops anything.
    """
    with READING_MIGRATIONS:
        graph = MigrationLoader(None, ignore_no_migrations=True).graph
    applied: dict[str, list[str]] = {}
    for app_label, name in sorted(recorded_by_migrate(graph)):
        applied.setdefault(app_label, []).append(name)
    return applied


def recorded_by_migrate(graph: Any) -> set[tuple[str, str]]:
    """The migrations ``migrate`` records in an empty database, from the
    graph of a loader that read no database: each node, and the migrations
    a squashed one replaces."""
    names: set[tuple[str, str]] = set()
    for key, migration in graph.nodes.items():
        names.add(key)
        names.update(migration.replaces)
    return names


def migration_differences(
    recorded: Any, using: str, local: dict[str, list[str]] | None = None
) -> list[str]:
    """App labels whose applied migrations differ between ``recorded`` and ``using``.

    Archives from diskette 0.6 record nothing: there is nothing to compare.
    diskette's own migrations are left out: its table never travels in an
    archive (and diskette 0.6 used the same app label for other tables).

    :param local: what to compare with instead of the database's
        (:func:`migrations_after_reset`).
    """
    if not isinstance(recorded, dict):
        return []
    local = applied_migrations(using) if local is None else local
    return sorted(
        str(label)
        for label in (set(recorded) | set(local)) - {OWN_APP_LABEL}
        if _names(recorded.get(label)) != local.get(label, [])
    )


def _names(recorded: Any) -> list[str]:
    """Migration names as an archive records them: a list of strings, or not."""
    if not isinstance(recorded, list):
        return [] if recorded is None else ["(unreadable)"]
    return sorted(str(name) for name in recorded)
