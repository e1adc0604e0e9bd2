"""System checks: ``manage.py check`` names a bad ``DISKETTE_*`` setting.

The messages are the very ones the commands raise (both come from
:mod:`diskette.conf`, :mod:`diskette.definitions` and
:mod:`diskette.storages`), so a problem reads the same wherever it shows.

A storage that does not exist is only a warning here: system checks run
before ``migrate`` and ``runserver`` too, and a fresh checkout with no media
folder yet must still start. ``diskette_dump`` refuses it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from .conf import settings_problems
from .definitions import resolve_definitions
from .exceptions import StorageError
from .storages import check_directory

HINT = "See the diskette documentation: docs/settings.md and docs/definitions.md."


@register("diskette")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report invalid settings (E001), definitions (E002) and storages (W001),
    and models that two definitions both dump (W002)."""
    messages: list[CheckMessage] = [
        Error(str(problem), hint=HINT, id="diskette.E001")
        for problem in settings_problems(settings)
    ]
    definitions, problems = resolve_definitions(getattr(settings, "DISKETTE_APPS", []))
    messages += [Error(str(p), hint=HINT, id="diskette.E002") for p in problems]
    owners: dict[str, str] = {}
    for definition in definitions:
        for label in definition.labels:
            if label in owners:
                messages.append(
                    Warning(
                        f"model {label} is dumped by both {owners[label]!r} and "
                        f"{definition.name!r}",
                        hint="Exclude it from one of them.",
                        id="diskette.W002",
                    )
                )
            owners.setdefault(label, definition.name)
    for path in getattr(settings, "DISKETTE_STORAGES", []):
        try:
            check_directory(path)
        except StorageError as exc:
            messages.append(Warning(str(exc), hint=HINT, id="diskette.W001"))
    return messages
