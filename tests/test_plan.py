"""``diskette_load --plan``: what a load would change, and nothing changed.

The demo project is dumped, then changed locally (a book added, a media
file removed, one rewritten at the same size, one added); the plan must
say exactly that, change nothing, and match what the load then does.
"""

from __future__ import annotations

import json

import pytest
from django.apps import apps

from demo.models import Book
from demo.state import data_state
from tests.conftest import run_command, tree_state
from tests.test_load_command import dumped, wipe_database  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_plan_says_what_the_load_then_does_and_changes_nothing(
    dumped,  # noqa: F811
    demo,
):
    media = demo / "var" / "media"
    files = sorted(p for p in media.rglob("*") if p.is_file())
    gone, rewritten = files[0], files[1]
    gone_size = gone.stat().st_size
    gone.unlink()
    content = rewritten.read_bytes()
    rewritten.write_bytes(bytes([content[0] ^ 1]) + content[1:])  # same size
    (media / "local-only.bin").write_bytes(b"x" * 1234)
    book = Book.objects.first()
    Book.objects.create(title="Written today", author=book.author, published=book.published)
    data, tree = data_state(), tree_state(media)

    answer = json.loads(
        run_command("diskette_load", str(dumped), "--plan", "--json").stdout
    )

    assert data_state() == data and tree_state(media) == tree  # nothing changed
    assert dumped.exists() and answer["removed"] is False  # a local archive stays
    rows = {m["model"]: (m["now"], m["after"]) for m in answer["plan"]["models"]}
    assert rows["demo.book"] == (Book.objects.count(), Book.objects.count() - 1)
    for label, (now, _) in rows.items():
        assert now == apps.get_model(label)._base_manager.count()
    (storage,) = answer["plan"]["storages"]
    assert storage["storage"] == "var/media" and storage["folder"] == str(media)
    assert (storage["added"], storage["changed"], storage["removed"]) == (1, 1, 1)
    assert storage["unchanged"] == len(files) - 2
    assert storage["bytes_written"] == gone_size + len(content)
    assert storage["bytes_removed"] == 1234

    wipe_database()
    run_command("diskette_load", str(dumped))
    assert {label: after for label, (_, after) in rows.items()} == {
        label: apps.get_model(label)._base_manager.count() for label in rows
    }
    assert gone.exists() and not (media / "local-only.bin").exists()
    assert rewritten.read_bytes() == content


def test_the_plan_reads_as_a_table(dumped, demo):  # noqa: F811
    result = run_command("diskette_load", str(dumped), "--plan")
    lines = result.stdout.splitlines()
    assert "Loading it into a reset database would change:" in lines
    header = next(line for line in lines if line.startswith("MODEL"))
    assert header.split() == ["MODEL", "NOW", "AFTER"]
    book = next(line for line in lines if line.startswith("demo.book "))
    count = Book.objects.count()
    assert book.split()[1:] == [f"{count:,}", f"{count:,}"]
    assert any(
        line.startswith("var/media (") and "0 added, 0 changed" in line for line in lines
    )
    assert lines[-1] == "Nothing was changed."
