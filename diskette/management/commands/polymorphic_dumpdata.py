"""``manage.py polymorphic_dumpdata``: ``dumpdata`` for django-polymorphic models.

diskette 0.6 documents ``"dump_command": "polymorphic_dumpdata"`` for
definitions holding django-polymorphic models, so a project configured that
way finds the command here. It is ``dumpdata`` itself, with every option:
django-polymorphic gives ``dumpdata``'s code plain rows (a shape as a shape,
not as the circle it also is) by recognising that code on the call stack,
and this command runs that very code. Before dumping it checks that the
installed django-polymorphic does so, and refuses otherwise: a dump missing
the parent tables' rows would not load.

diskette's own dump needs none of this (:func:`diskette.data.own_rows`): a
definition may drop its ``dump_command``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import CommandError
from django.core.management.commands import dumpdata

#: The module django-polymorphic recognises on the stack.
DUMPDATA_MODULE = dumpdata.__name__


class Command(dumpdata.Command):
    help = (
        "dumpdata for projects with django-polymorphic models: parent tables' rows "
        "are dumped as themselves, so the output loads. Same options as dumpdata."
    )

    def handle(self, *app_labels: str, **options: Any) -> None:
        unguarded = [m._meta.label for m in _polymorphic_models() if not _guarded(m)]
        if unguarded:
            raise CommandError(
                f"the installed django-polymorphic would dump {unguarded[0]} rows as "
                "their subclasses: upgrade django-polymorphic, or remove "
                "'dump_command' from the definition (diskette's own dump handles them)"
            )
        super().handle(*app_labels, **options)


def _polymorphic_models() -> list[Any]:
    return [m for m in apps.get_models() if hasattr(m, "polymorphic_ctype")]


def _guarded(model: Any) -> bool:
    """Whether ``dumpdata``'s code gets plain rows of ``model``.

    The manager is read from a frame whose module is ``dumpdata``'s, which
    is what django-polymorphic looks at.
    """
    manager = eval("model._default_manager", {"__name__": DUMPDATA_MODULE}, {"model": model})
    if not hasattr(manager, "non_polymorphic"):
        return True  # a plain manager: plain rows
    return getattr(manager, "polymorphic_disabled", False) is True
