"""Migration state: which migrations a database has applied.

A dump records it in the manifest; a load compares it with the local
database's, because fixtures written under one schema may not fit another.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
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


def migration_differences(recorded: Any, using: str) -> list[str]:
    """App labels whose applied migrations differ between ``recorded`` and ``using``.

    Archives from diskette 0.6 record nothing: there is nothing to compare.
    diskette's own migrations are left out: its table never travels in an
    archive (and diskette 0.6 used the same app label for other tables).
    """
    if not isinstance(recorded, dict):
        return []
    local = applied_migrations(using)
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
