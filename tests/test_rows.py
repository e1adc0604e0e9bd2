"""JSON Lines written from rows: line for line what Django's serializer writes.

``diskette.rows`` reads value tuples instead of model instances. These tests
hold it to Django's serializer (``serializer_class``: the ``jsonl`` one with
content types and permissions by natural key, and microseconds kept) on the
sandbox's every model kind, with and without natural keys, across batches,
through a cache that forgets, and on values the sandbox's rows do not hold.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import io
import itertools
import json
import uuid

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.core import serializers
from django.db import connection, models
from django.test.utils import CaptureQueriesContext, isolate_apps

from demo.models import Book, Review
from diskette import rows
from diskette.data import (
    ExactJSONEncoder,
    dumped_models,
    queryset,
    serializer_class,
    write_data,
)
from diskette.definitions import Definition, load_definitions
from diskette.exceptions import DumpError
from tests.databases import ON_MARIADB

pytestmark = pytest.mark.django_db


def sandbox_definitions() -> list[Definition]:
    return load_definitions(settings.DISKETTE_APPS)


def serialized(definition: Definition) -> str:
    """What Django's serializer writes for ``definition`` (diskette's old way)."""
    out = io.StringIO()
    objects = itertools.chain.from_iterable(
        queryset(definition, model, "default").iterator(chunk_size=2000)
        for model in dumped_models(definition, "default")
    )
    serializer_class("jsonl")().serialize(
        objects,
        stream=out,
        use_natural_foreign_keys=definition.natural_foreign,
        use_natural_primary_keys=definition.natural_primary,
        cls=ExactJSONEncoder,
    )
    return out.getvalue()


def written(definition: Definition) -> str:
    out = io.BytesIO()
    write_data(definition, out, using="default")
    return out.getvalue().decode()


def assert_writes_as_the_serializer(definition: Definition) -> None:
    expected = serialized(definition)
    assert expected  # rows to compare, or the comparison means nothing
    ours = written(definition)
    if ours != expected:  # the first line that differs, not two walls of text
        for mine, theirs in zip(ours.splitlines(), expected.splitlines(), strict=False):
            assert mine == theirs, definition.name
    assert ours == expected, definition.name


def grant_permissions_out_of_order() -> None:
    """Permissions on books and tags, added in the reverse order of their ids.

    ``Permission`` is ordered by content type, then codename: book before
    tag, where the ids have tag first (models.py declares it first). The
    serializer lists them in the model's order, neither the links' nor the ids'.
    """
    permissions = list(
        Permission.objects.filter(
            content_type__app_label="demo", content_type__model__in=["book", "tag"]
        ).order_by("-pk")
    )
    user = User.objects.order_by("pk").first()
    assert user is not None
    for permission in permissions:  # one at a time: the links come in this order
        user.user_permissions.add(permission)
    Group.objects.get(name="editors").permissions.add(*permissions[::-1])


@pytest.mark.parametrize(
    "natural_foreign, natural_primary",
    [(True, False), (False, False), (True, True), (False, True)],
    ids=["natural-foreign", "ids", "both-natural", "natural-primary"],
)
def test_every_definition_is_written_as_the_serializer_writes_it(
    demo, natural_foreign, natural_primary
):
    grant_permissions_out_of_order()
    for definition in sandbox_definitions():
        assert_writes_as_the_serializer(
            dataclasses.replace(
                definition, natural_foreign=natural_foreign, natural_primary=natural_primary
            )
        )


def test_many_to_many_values_come_in_the_related_models_ordering(demo):
    """``Meta.ordering`` of the related model, not the order of the links or ids."""
    grant_permissions_out_of_order()
    (auth,) = [d for d in sandbox_definitions() if d.name == "django.contrib.auth"]
    lines = [json.loads(line) for line in written(auth).splitlines()]
    user = User.objects.order_by("pk").first()
    assert user is not None
    (fields,) = [
        o["fields"] for o in lines if o["model"] == "auth.user" and o["pk"] == user.pk
    ]
    granted = user.user_permissions.all()
    expected = [list(p.natural_key()) for p in granted.order_by(*Permission._meta.ordering)]
    by_id = [list(p.natural_key()) for p in granted.order_by("pk")]
    links = [
        list(link.permission.natural_key())
        for link in User.user_permissions.through.objects.filter(user=user).order_by("pk")
    ]
    assert len(expected) == 8 and by_id != expected and links != expected
    assert fields["user_permissions"] == expected
    assert expected[0] == ["add_book", "demo", "book"]


def test_rows_are_read_by_keyset_pages_across_batches(demo, monkeypatch):
    """Three rows a batch: every primary key kind pages on, nothing is
    read twice or skipped, many-to-many values and natural keys follow."""
    monkeypatch.setattr(rows, "BATCH_ROWS", 3)
    grant_permissions_out_of_order()
    with CaptureQueriesContext(connection) as queries:
        for definition in sandbox_definitions():
            assert_writes_as_the_serializer(definition)
    pages = [q["sql"] for q in queries.captured_queries if " LIMIT 3" in q["sql"]]
    assert any(" > " in sql for sql in pages)  # the next page starts after the last key


def test_a_cache_that_forgets_still_writes_every_natural_key(demo, monkeypatch):
    monkeypatch.setattr(rows, "BATCH_ROWS", 4)
    monkeypatch.setattr(rows, "NATURAL_KEYS_CACHED", 5)
    for definition in sandbox_definitions():
        assert_writes_as_the_serializer(definition)


def test_the_natural_key_cache_stays_bounded(demo, monkeypatch):
    """Past the bound the largest table forgets its oldest keys; a small
    table read again and again (users here, content types in real dumps) stays."""
    monkeypatch.setattr(rows, "NATURAL_KEYS_CACHED", 6)
    naturals = rows.NaturalKeys("default")
    users = list(User.objects.order_by("pk").values_list("pk", flat=True)[:2])
    ids = list(Book.objects.order_by("pk").values_list("pk", flat=True))
    assert len(ids) == 12
    sizes = []
    for start in range(0, len(ids), 3):
        batch = ids[start : start + 3]
        naturals.start_batch()
        naturals.fetch(User, "id", users)
        naturals.fetch(Book, "id", batch)
        books = naturals.table(Book, "id")
        assert all(books[pk] == Book.objects.get(pk=pk).natural_key() for pk in batch)
        sizes.append(naturals.size)
    assert max(sizes) <= 6 + 3 + 2  # the bound, one batch, the None of each table
    assert ids[0] not in books  # the oldest books were forgotten
    assert set(naturals.table(User, "id")) == {None, *users}


def test_natural_keys_take_one_query_per_referenced_model_and_batch(demo):
    """Reviews refer to books (whose key reads the author) and users: two
    queries for their natural keys, whatever the number of reviews."""
    review_rows = rows.ModelRows(
        Review,
        Review.objects.all(),
        using="default",
        naturally=lambda field: True,
        natural_primary=False,
        naturals=rows.NaturalKeys("default"),
    )
    (batch,) = review_rows.batches()
    assert len(batch) > 12
    with CaptureQueriesContext(connection) as queries:
        review_rows.lines(batch, rows.line_encoder())
    assert len(queries.captured_queries) == 2


def test_a_manager_that_hides_rows_hides_their_links_too(demo):
    """Books some manager would not show, between those it shows: their
    tags stay out of the batch's many-to-many query."""
    shown = list(Book.objects.order_by("pk").values_list("pk", flat=True)[::2])
    book_rows = rows.ModelRows(
        Book,
        Book.objects.filter(pk__in=shown),
        using="default",
        naturally=lambda field: False,
        natural_primary=False,
        naturals=rows.NaturalKeys("default"),
    )
    assert not book_rows.whole
    lines = "".join(book_rows.lines(b, rows.line_encoder()) for b in book_rows.batches())
    out = io.StringIO()
    serializer_class("jsonl")().serialize(
        Book.objects.filter(pk__in=shown).order_by("pk"), stream=out, cls=ExactJSONEncoder
    )
    # Book.tags has no ordering: PostgreSQL may give one book's tags in
    # another order to each query (the serializer's and ours). Which links
    # are written is the point here; their order is compared where a model
    # defines it (test_many_to_many_values_come_in_the_related_models_ordering).
    assert _tags_sorted(lines) == _tags_sorted(out.getvalue())
    assert sum(len(json.loads(line)["fields"]["tags"]) for line in lines.splitlines())


def _tags_sorted(lines: str) -> list[dict]:
    objects = [json.loads(line) for line in lines.splitlines()]
    for obj in objects:
        obj["fields"]["tags"].sort()
    return objects


# MySQL checks foreign keys at once: there the check is switched off for the
# update, and the test is transactional (flushed after).
@pytest.mark.django_db(transaction=ON_MARIADB)
def test_a_reference_to_a_missing_row_names_the_definition(demo):
    review = Review.objects.order_by("pk").first()
    assert review is not None
    with connection.cursor() as cursor:
        if ON_MARIADB:
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
        try:
            Review.objects.filter(pk=review.pk).update(book_id=999_999)
        finally:
            if ON_MARIADB:
                cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
    (drain,) = [d for d in sandbox_definitions() if d.is_drain]
    try:
        with pytest.raises(
            DumpError,
            match=r"^'everything else': cannot serialize: demo\.book with id=999999 "
            r"is referred to but does not exist",
        ):
            write_data(drain, io.BytesIO(), using="default")
    finally:  # the test database checks its foreign keys when the test ends
        Review.objects.filter(pk=review.pk).update(book_id=review.book_id)


class Shouting(models.CharField):
    """A field of its own making: its ``value_to_string`` is its own."""

    def value_to_string(self, obj):
        return super().value_to_string(obj).upper()


class Stamped(models.DateTimeField):
    """A subclass that keeps Django's behaviour: no instance needed."""


@isolate_apps("shop")
def test_each_value_is_written_as_the_serializer_writes_it():
    """Values the sandbox's rows do not hold, through an unsaved instance:
    NULL files, aware and naive times, every converter, and a field class
    diskette does not know, which is given a real instance."""

    class Everything(models.Model):
        file = models.FileField(null=True, blank=True)
        image = models.ImageField(null=True, blank=True)
        binary = models.BinaryField(null=True)
        duration = models.DurationField(null=True)
        data = models.JSONField(null=True)
        key = models.UUIDField(null=True)
        amount = models.DecimalField(max_digits=30, decimal_places=10, null=True)
        moment = models.DateTimeField(null=True)
        day = models.DateField(null=True)
        clock = models.TimeField(null=True)
        flag = models.BooleanField(null=True)
        ratio = models.FloatField(null=True)
        text = models.TextField(null=True)
        address = models.GenericIPAddressField(null=True)
        shouting = Shouting(max_length=20, null=True)
        stamped = Stamped(null=True)
        plain = models.IntegerField(null=True, serialize=False)

        class Meta:
            app_label = "shop"

    converters = {
        f.name: rows.value_converter(Everything, f) for f in Everything._meta.local_fields
    }
    assert converters["shouting"] is rows._by_instance
    assert converters["stamped"] is not rows._by_instance
    assert converters["file"] is converters["image"] is rows._file

    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.timezone.utc)
    full = {
        "file": "covers/a.bin",
        "image": "",
        "binary": b"\x00\xff bytes",
        "duration": datetime.timedelta(days=-1, microseconds=7),
        "data": {"é": [1.5, None, True, "x"], "n": 1e300},
        "key": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "amount": decimal.Decimal("-12345678901234567890.0123456789"),
        "moment": moment,
        "day": datetime.date(1999, 12, 31),
        "clock": datetime.time(23, 59, 59, 999999),
        "flag": False,
        "ratio": 0.1,
        "text": 'quotes " and \\ and\nnewline, 🌶',
        "address": "2001:db8::1",
        "shouting": "quiet",
        "stamped": moment.astimezone(datetime.timezone(datetime.timedelta(hours=-3))),
        "plain": 3,
    }
    naive = dict(full, moment=datetime.datetime(2026, 1, 2, 3, 4, 5), data="text")
    empty = dict.fromkeys(full)

    rows_of = rows.ModelRows(
        Everything,
        Everything.objects.all(),
        using="default",
        naturally=lambda field: False,
        natural_primary=False,
        naturals=rows.NaturalKeys("default"),
    )
    encode = rows.line_encoder()
    for pk, values in enumerate([full, naive, empty], start=1):
        obj = Everything.from_db("default", ["id", *values], [pk, *values.values()])
        row = tuple(obj.__dict__[attname] for attname in rows_of.attnames)
        expected = serializers.serialize("jsonl", [obj], cls=ExactJSONEncoder)
        assert rows_of.lines([row], encode) == expected
    assert json.loads(expected)["fields"]["file"] == ""  # a NULL file is written as ""


@pytest.mark.skipif(
    not hasattr(models, "CompositePrimaryKey"), reason="Django 5.2 has composite keys"
)
@isolate_apps("shop")
def test_a_composite_primary_key_is_left_to_the_serializer():
    class Pair(models.Model):
        pk = models.CompositePrimaryKey("left", "right")
        left = models.IntegerField()
        right = models.IntegerField()

        class Meta:
            app_label = "shop"

    assert not rows.ModelRows.supports(Pair)
    assert rows.ModelRows.supports(Book) and rows.ModelRows.supports(Review)
