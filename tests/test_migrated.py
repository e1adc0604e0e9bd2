"""What names the copy of an empty migrated database (``diskette.migrated``).

The copies themselves, made, used and refused by real loads, are tested
with the spare database in test_tasks.py.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models.signals import post_migrate

from diskette.migrated import Migrated


def key() -> str | None:
    kept = Migrated.of("default")
    return kept.path.name if kept is not None else None


@pytest.fixture
def connected() -> Iterator[list[Any]]:
    """Receivers to connect to ``post_migrate``, disconnected afterwards."""
    receivers: list[Any] = []
    yield receivers
    for receiver in receivers:
        post_migrate.disconnect(receiver)


def in_module(source: str, name: str) -> Any:
    """``name`` from a module made of ``source``, which has no file."""
    module = types.ModuleType("diskette_test_receivers")
    exec(compile(source, "<receivers>", "exec"), module.__dict__)  # noqa: S102
    return module.__dict__[name]


def receiver(**kwargs: Any) -> None:
    """A receiver of this file's."""


class Receiver:
    def __call__(self, **kwargs: Any) -> None:
        """A callable object, as a receiver."""


@pytest.mark.parametrize(
    "made", [lambda: receiver, lambda: functools.partial(receiver), Receiver]
)
def test_a_receiver_of_migrate_is_part_of_the_key(connected, made):
    """A new receiver may make rows: the copies kept before it are not used.
    A function, a partial or a callable object: the file defining it counts."""
    before = key()
    assert before is not None and key() == before  # the same for the same code

    connected.append(made())
    post_migrate.connect(connected[-1], weak=False)

    assert key() not in (None, before)


def test_code_whose_source_cannot_be_read_keeps_no_copy(connected):
    """A receiver defined where no file tells its code: nothing stands for it."""
    connected.append(in_module("def made(**kwargs): pass\n", "made"))
    post_migrate.connect(connected[-1], weak=False)

    assert key() is None


def test_the_setting_turns_it_off(settings):
    assert key() is not None
    settings.DISKETTE_MIGRATION_CACHE = False
    assert key() is None
