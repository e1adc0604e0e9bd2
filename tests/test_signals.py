"""The default load sends the signals ``loaddata`` sends, in the same order.

Receivers of ``pre_save``, ``post_save`` and ``m2m_changed`` record every
call; the same archive is loaded with ``--loaddata`` and without it, and the
two records must be equal: same senders, instances, ``raw``, ``created``,
actions and order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.contrib.sites.models import Site
from django.db.models import signals

from demo.models import Author, Book, Review, Tag
from tests.conftest import run_command
from tests.test_load_command import wipe_database

pytestmark = pytest.mark.django_db


@contextmanager
def recorded() -> Iterator[list[tuple]]:
    """Every save and many-to-many signal for the demo's models, in order.

    Tags have a ``pre_save`` receiver only, authors a ``post_save`` one,
    reviews and sites both (Django connects one to sites' ``pre_save``
    itself), books' tags an ``m2m_changed`` one.
    """
    log: list[tuple] = []

    def saving(sender, instance, raw, using, update_fields, **kwargs):
        log.append(("pre_save", sender._meta.label, instance.pk, raw, update_fields))

    def saved(sender, instance, created, raw, using, update_fields, **kwargs):
        values = (instance.pk, str(instance), raw, created, update_fields)
        log.append(("post_save", sender._meta.label, *values))

    def linked(sender, instance, action, reverse, model, pk_set, using, **kwargs):
        pks = sorted(pk_set) if pk_set is not None else None
        log.append(("m2m_changed", action, instance.pk, reverse, model._meta.label, pks))

    receivers = [
        (signals.pre_save, saving, Tag),
        (signals.post_save, saved, Author),
        (signals.pre_save, saving, Review),
        (signals.post_save, saved, Review),
        (signals.post_save, saved, Site),
        (signals.m2m_changed, linked, Book.tags.through),
    ]
    for signal, receiver, sender in receivers:
        signal.connect(receiver, sender=sender, weak=False)
    try:
        yield log
    finally:
        for signal, receiver, sender in receivers:
            signal.disconnect(receiver, sender=sender)


def dump(tmp_path):
    run_command("diskette_dump", "--no-storages", destination=tmp_path)
    return str(tmp_path / "diskette_data.tar.gz")


def test_a_load_sends_what_loaddata_sends(demo, tmp_path):
    archive = dump(tmp_path)
    wipe_database()
    with recorded() as expected:
        run_command("diskette_load", archive, "--keep", "--loaddata")
    wipe_database()
    with recorded() as sent:
        run_command("diskette_load", archive, "--keep")
    assert sent == expected
    kinds = {(entry[0], entry[1]) for entry in expected}
    assert {
        ("pre_save", "demo.Tag"),
        ("post_save", "demo.Author"),
        ("pre_save", "demo.Review"),
        ("post_save", "demo.Review"),
        ("post_save", "sites.Site"),
        ("m2m_changed", "pre_add"),
        ("m2m_changed", "post_add"),
    } <= kinds
    # Every author is new; the site migrate made is updated, not created.
    assert {e[5] for e in expected if e[:2] == ("post_save", "demo.Author")} == {True}
    assert {e[5] for e in expected if e[:2] == ("post_save", "sites.Site")} == {False}


def test_a_load_over_existing_rows_says_they_were_not_created(demo, tmp_path):
    """``--overwrite`` onto the same rows: ``created`` is False for each, as
    ``save()`` reports an update, and unchanged links send nothing."""
    archive = dump(tmp_path)
    with recorded() as expected:
        run_command("diskette_load", archive, "--keep", "--loaddata", "--overwrite")
    with recorded() as sent:
        run_command("diskette_load", archive, "--keep", "--overwrite")
    assert sent == expected
    authors = [e for e in expected if e[:2] == ("post_save", "demo.Author")]
    assert authors and {e[5] for e in authors} == {False}


def test_a_pre_save_receiver_changes_what_is_written(demo, tmp_path):
    """As with ``loaddata``, what a ``pre_save`` receiver sets on the instance
    is saved, here on reviews, batched since they have no other receiver."""
    archive = dump(tmp_path)
    ratings = set(Review.objects.values_list("rating", flat=True))
    wipe_database()

    def rate(sender, instance, raw, **kwargs):
        instance.rating = 5

    signals.pre_save.connect(rate, sender=Review, weak=False)
    try:
        run_command("diskette_load", archive, "--keep")
    finally:
        signals.pre_save.disconnect(rate, sender=Review)
    assert ratings - {5}  # so the receiver's work shows
    assert set(Review.objects.values_list("rating", flat=True)) == {5}
