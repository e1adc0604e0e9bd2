"""What names the copy of an empty migrated database (``diskette.migrated``).

The copies themselves, made, used and refused by real loads, are tested
with the spare database in test_tasks.py.
"""

from __future__ import annotations

import functools
import stat
import types
from collections.abc import Iterator
from importlib import import_module
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


def test_an_edit_of_a_receiver_changes_the_key(connected, tmp_path, monkeypatch):
    """The receiver's source file is hashed, not only its name."""
    module = tmp_path / "diskette_test_edited.py"
    module.write_text("def made(**kwargs):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    connected.append(import_module("diskette_test_edited").made)
    post_migrate.connect(connected[-1], weak=False)
    before = key()

    module.write_text("def made(**kwargs):\n    print('another row')\n")

    assert key() not in (None, before)


def test_the_swapped_user_model_changes_the_key(settings):
    """The migrations name AUTH_USER_MODEL, not the model it is set to."""
    before = key()
    settings.AUTH_USER_MODEL = "shop.Shopper"
    assert key() not in (None, before)


def test_routers_keep_no_copy(settings):
    """What a router lets migrate follows its settings and hints, not its code."""
    assert key() is not None
    settings.DATABASE_ROUTERS = ["tests.test_migrated.Router"]
    assert key() is None


class Router:
    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True


@pytest.mark.parametrize("folder", ["diskette", "diskette/migrated"])
def test_a_cache_folder_reached_through_a_link_keeps_no_copy(tmp_path, monkeypatch, folder):
    """A copy becomes the project's database: none is taken from, or kept
    in, a folder another user could have put it in."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert key() is not None  # made, private
    made = tmp_path / "cache" / folder
    made.rename(tmp_path / "elsewhere")
    made.symlink_to(tmp_path / "elsewhere")

    assert key() is None


def test_a_cache_folder_all_may_write_in_keeps_no_copy(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))

    assert key() is None


def test_folders_of_its_own_made_under_a_umask_of_002_are_made_private(
    tmp_path, monkeypatch
):
    """Under a umask of 002 (a group of one's own) the media index makes
    ``diskette`` writable by the group: the copies' folder is still used."""
    (tmp_path / "cache" / "diskette").mkdir(parents=True)
    for folder in (tmp_path / "cache", tmp_path / "cache" / "diskette"):
        folder.chmod(0o775)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    assert key() is not None
    assert stat.S_IMODE((tmp_path / "cache" / "diskette").stat().st_mode) == 0o755
