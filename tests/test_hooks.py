"""After-load hooks and ``post_load``: run in the load's transaction, rolled back with it.

The demo project is dumped and loaded into its wiped database; the hooks are
``DISKETTE_AFTER_LOAD`` entries (the ready-made ones, and this module's own
functions by their dotted path), and receivers of the signal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.contrib.sites.models import Site
from django.core.management.base import CommandError

from demo.state import data_state
from diskette.hooks import Loaded
from diskette.signals import post_load
from tests.conftest import run_command, tree_state
from tests.test_load_command import dumped, wipe_database  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)

#: What this module's hooks saw, in order.
CALLS: list[tuple[str, object]] = []


def record(loaded: Loaded, label: str = "record") -> None:
    """A hook that notes it ran, and what it was told."""
    CALLS.append((label, loaded))
    CALLS.append(("books then", data_state()["books"] != []))


def explode(loaded: Loaded) -> None:
    Site.objects.using(loaded.using).update(domain="changed.by.a.hook")
    raise RuntimeError("the mail server\nis down")


@pytest.fixture(autouse=True)
def _forget_calls():
    CALLS.clear()
    yield
    CALLS.clear()


def test_hooks_run_in_order_on_the_loaded_data(dumped, demo, settings):  # noqa: F811
    users = [u.username for u in User.objects.all()]
    settings.DISKETTE_AFTER_LOAD = [
        "tests.test_hooks.record",
        ["diskette.hooks.set_site_domain", {"domain": "localhost:8000", "name": "dev"}],
        ["diskette.hooks.set_passwords", {"password": "dev-pass"}],
        ["tests.test_hooks.record", {"label": "last"}],
    ]
    wipe_database()
    result = run_command("diskette_load", str(dumped))
    assert "Running after-load hook 'diskette.hooks.set_site_domain'" in result.stdout
    assert [label for label, _ in CALLS] == ["record", "books then", "last", "books then"]
    loaded = CALLS[0][1]
    assert isinstance(loaded, Loaded)
    assert loaded.archive == dumped.name and loaded.using == "default"
    assert loaded.storages == ["var/media"] and "datas" in loaded.manifest
    assert CALLS[1][1] is True  # the data was there when the hooks ran
    site = Site.objects.get(pk=settings.SITE_ID)
    assert (site.domain, site.name) == ("localhost:8000", "dev")
    assert (
        users
        and [u for u in users if authenticate(username=u, password="dev-pass")] == users
    )


@pytest.mark.parametrize("how", ["hook", "receiver"])
def test_a_failing_hook_or_receiver_rolls_the_whole_load_back(
    dumped,  # noqa: F811
    demo,
    settings,
    how,
):
    media = demo / "var" / "media"
    (media / "local-only.txt").write_text("not in the archive")
    wipe_database()
    before_data, before_media = data_state(), tree_state(media)

    def receiver(sender, loaded: Loaded, **kwargs) -> None:
        raise ValueError("no")

    if how == "hook":
        settings.DISKETTE_AFTER_LOAD = ["tests.test_hooks.explode"]
        expected = (
            "after-load hook 'tests.test_hooks.explode' failed (RuntimeError: the mail "
            "server is down); nothing was loaded: fix the hook, or take it out of "
            "DISKETTE_AFTER_LOAD"
        )
    else:
        post_load.connect(receiver, weak=False)
        expected = (
            "post_load receiver 'tests.test_hooks.test_a_failing_hook_or_receiver_rolls_"
            "the_whole_load_back.<locals>.receiver' failed (ValueError: no); nothing "
            "was loaded"
        )
    try:
        with pytest.raises(CommandError) as failure:
            run_command("diskette_load", str(dumped))
    finally:
        post_load.disconnect(receiver)
    assert str(failure.value) == expected
    assert data_state() == before_data
    assert tree_state(media) == before_media  # the media swap was undone too
    assert not Site.objects.filter(domain="changed.by.a.hook").exists()


def test_a_receiver_gets_the_load(dumped, demo):  # noqa: F811
    seen: list[Loaded] = []

    def receiver(sender, loaded: Loaded, **kwargs) -> None:
        seen.append(loaded)

    post_load.connect(receiver, weak=False)
    try:
        wipe_database()
        run_command("diskette_load", str(dumped))
    finally:
        post_load.disconnect(receiver)
    assert [loaded.archive for loaded in seen] == [dumped.name]


def test_set_passwords_refuses_where_debug_is_off_and_nothing_loads(
    dumped,  # noqa: F811
    demo,
    settings,
):
    settings.DISKETTE_AFTER_LOAD = ["diskette.hooks.set_passwords"]
    wipe_database()
    settings.DEBUG = False
    with pytest.raises(CommandError) as failure:
        run_command("diskette_load", str(dumped), "--force")
    assert str(failure.value) == (
        "after-load hook 'diskette.hooks.set_passwords' refused: set_passwords runs "
        "only where DEBUG is True; nothing was loaded"
    )
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            ["tests.test_hooks.missing"],
            "DISKETTE_AFTER_LOAD: cannot import 'tests.test_hooks.missing'",
        ),
        (["tests.test_hooks.CALLS"], "'tests.test_hooks.CALLS' is not a function"),
        (
            [["tests.test_hooks.record"]],
            "DISKETTE_AFTER_LOAD[0] must be a dotted path or a pair",
        ),
        ("tests.test_hooks.record", "DISKETTE_AFTER_LOAD must be a list"),
    ],
)
def test_a_wrong_entry_is_refused_before_anything_is_read(
    dumped,  # noqa: F811
    demo,
    settings,
    entries,
    message,
):
    settings.DISKETTE_AFTER_LOAD = entries
    data = data_state()
    with pytest.raises(CommandError) as failure:
        run_command("diskette_load", str(dumped), "--overwrite")
    assert message in str(failure.value)
    assert data_state() == data
    assert Path(dumped).exists()  # refused before it was opened: kept


def test_a_check_runs_no_hook(dumped, demo, settings):  # noqa: F811
    settings.DISKETTE_AFTER_LOAD = ["tests.test_hooks.record"]
    run_command("diskette_load", str(dumped), "--check")
    assert CALLS == []
