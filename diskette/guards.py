"""Guards: what a destructive command refuses unless told, one flag per guard.

- ``DEBUG = False`` marks a database that may be production: ``diskette_load``
  and ``diskette_reset`` refuse it unless ``--force``.
- ``DISKETTE_PROTECTED = True`` is a project protecting itself, typically a
  production host: loads and resets are refused whatever a push passes
  (``--force`` included); only someone on that host may override it, with
  ``--override-protection``, which no task ever sends.
- A database already holding data in the models a load writes would be
  merged into, rows overwritten by primary key: ``diskette_load`` refuses it
  unless ``--overwrite``. Rows that ``migrate`` itself creates do not count.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Model, Q

from .conf import setting
from .definitions import dumpable_models
from .exceptions import GuardError

#: Rows ``migrate`` creates (post-migrate handlers), by model label: ``None``
#: for every row, else the field values of the one row it makes, whose
#: primary key is ``SITE_ID`` (the sites framework's default site, the one
#: such row among Django's own apps).
MIGRATE_CREATES: dict[str, dict[str, str] | None] = {
    "contenttypes.contenttype": None,
    "auth.permission": None,
    "sites.site": {"domain": "example.com", "name": "example.com"},
}


def refuse_production(action: str, *, force: bool, override_protection: bool) -> None:
    """Refuse ``action`` on a project that is or may be production.

    :param action: what is refused, for the message ("load into", "reset").
    :raises GuardError: naming the guard and the one flag that passes it.
    """
    if setting("DISKETTE_PROTECTED", settings) and not override_protection:
        raise GuardError(
            f"this project sets DISKETTE_PROTECTED, so diskette will not {action} its "
            "database, whatever a push asks; on this host, --override-protection "
            "passes the guard"
        )
    if not settings.DEBUG and not force:
        raise GuardError(
            f"DEBUG is False, so this database may be production: refusing to {action} "
            "it (add --force if you mean it)"
        )


def models_holding_data(labels: Iterable[str], using: str) -> list[str]:
    """The models among ``labels`` whose tables hold rows ``migrate`` did not create."""
    holding = []
    for label in sorted(set(labels)):
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue
        if _holds_data(model, using):
            holding.append(model._meta.label)
    return holding


def database_holds_data(using: str) -> bool:
    """Whether any model's table holds rows ``migrate`` did not create."""
    return any(_holds_data(m, using) for m in dumpable_models(apps.get_models()))


def refuse_populated(labels: Iterable[str], using: str, *, overwrite: bool) -> None:
    """Refuse to load into tables that hold data already, unless ``overwrite``.

    :raises GuardError: naming the models holding data and the flag.
    """
    if overwrite:
        return
    holding = models_holding_data(labels, using)
    if holding:
        shown = ", ".join(holding[:5]) + (", ..." if len(holding) > 5 else "")
        raise GuardError(
            f"the database already holds {shown} data, which this load would overwrite "
            "or merge with: reset it first (diskette_reset, or inv reset-and-load), or "
            "add --overwrite if you mean it"
        )


def _holds_data(model: type[Model], using: str) -> bool:
    label = model._meta.label_lower
    if label in MIGRATE_CREATES and MIGRATE_CREATES[label] is None:
        return False
    rows = model._base_manager.db_manager(using).all()
    made = MIGRATE_CREATES.get(label)
    if made is not None:
        rows = rows.exclude(Q(pk=getattr(settings, "SITE_ID", 1)) & Q(**made))
    try:
        # A savepoint: a missing table must not break a transaction around us.
        with transaction.atomic(using=using):
            return rows.exists()
    except DatabaseError:
        return False  # no table: nothing in it to lose
