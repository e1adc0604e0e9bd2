"""One meaning per short flag, in every diskette task: ``-y`` is ``--yes``, ``-f`` ``--force``.

Invoke gives each task argument the first letter of its name that is still
free, task by task. So ``-y`` was ``--yes`` in ``pull-snapshot`` but
``--python`` in ``remote-dump``, ``--fast`` had a different letter in each
task, and ``--no-data``, whose ``n`` and ``o`` were taken, got the dash of
its name: ``fab --help`` listed an option spelled ``--``. Here a task gets
no automatic short flag; the few that people type every day get the same
letter everywhere, and the rest are long only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import invoke

#: The short flags of diskette's Invoke and Fabric tasks, by argument name.
SHORT_FLAGS = {"yes": "y", "force": "f"}


class ShortFlags:
    """Mixin for an Invoke ``Task`` class: only :data:`SHORT_FLAGS` get a letter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False
        super().__init__(*args, **kwargs)

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)  # type: ignore[misc]
        if name in SHORT_FLAGS:
            opts["names"] = [*opts["names"], SHORT_FLAGS[name]]
        return opts


class Task(ShortFlags, invoke.Task):
    """An Invoke task with diskette's short flags."""


def task(*args: Any, **kwargs: Any) -> Callable[..., Any] | Task:
    """Invoke's ``@task``, making a :class:`Task`."""
    kwargs.setdefault("klass", Task)
    return invoke.task(*args, **kwargs)
