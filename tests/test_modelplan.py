"""How a serialized object becomes a row (``diskette.modelplan``), without a database write."""

from __future__ import annotations

import datetime

import django
import pytest
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.test.utils import isolate_apps

from demo.models import Book, Review
from diskette.modelplan import ModelPlan, Unusual
from shop.models import LedgerEntry, Restaurant


def test_a_row_holds_what_a_raw_save_would_insert():
    """Each value through the field's own conversions, the rest defaults."""
    plan = ModelPlan.of(Book, connection)
    row = plan.row(
        "7",
        {"title": "Dune", "author": 3, "published": "1965-08-01", "tags": [1, 2]},
        ignorenonexistent=False,
    )
    values = dict(zip(plan.columns, row, strict=True))
    expected = Book(pk=7, title="Dune", author_id=3, published=datetime.date(1965, 8, 1))
    assert values == {
        f.column: f.get_db_prep_save(getattr(expected, f.attname), connection)
        for f in Book._meta.concrete_fields
    }


def test_exact_values_convert_as_the_deserializer_converts_them():
    plan = ModelPlan.of(LedgerEntry, connection)
    fields = {f.name: f for f in LedgerEntry._meta.concrete_fields}
    data = {
        "amount": "12345678901234567890.0123456789",
        "at": "2026-02-03T04:05:06.123456Z",
        "duration": "1 02:03:04.000005",
    }
    data = {name: value for name, value in data.items() if name in fields}
    assert data  # the ledger has these fields, so the comparison means something
    row = plan.row(1, data, ignorenonexistent=False)
    for name, value in data.items():
        field = fields[name]
        assert row[plan.index[name]] == field.get_db_prep_save(
            field.to_python(value), connection
        )


def test_a_natural_key_left_in_the_data_is_for_the_deserializer():
    plan = ModelPlan.of(Review, connection)
    with pytest.raises(Unusual):
        plan.row(1, {"book": ["Dune", "Frank Herbert"], "rating": 5}, False)
    with pytest.raises(Unusual):
        plan.row(1, {"no_such_field": 1}, False)
    plan.row(1, {"no_such_field": 1, "rating": 5, "book": 1, "reviewer": 1}, True)


def test_a_value_the_field_refuses_names_the_model_and_field():
    plan = ModelPlan.of(Review, connection)
    with pytest.raises(ValidationError, match=r"demo.Review.rating: .*'many'"):
        plan.row(1, {"rating": "many"}, False)


def test_multi_table_children_are_saved_one_by_one():
    assert ModelPlan.of(Restaurant, connection).one_by_one.startswith("multi-table")
    assert ModelPlan.of(Book, connection).one_by_one == ""


@pytest.mark.skipif(django.VERSION < (5, 0), reason="GeneratedField is Django 5.0's")
@isolate_apps("shop")  # a registry of its own: no other test sees the model
def test_a_generated_field_is_left_to_the_database():
    class Priced(models.Model):
        net = models.IntegerField()
        gross = models.GeneratedField(
            expression=models.F("net") * 2,
            output_field=models.IntegerField(),
            db_persist=True,
        )

        class Meta:
            app_label = "shop"

    plan = ModelPlan.of(Priced, connection)
    assert plan.columns == ["id", "net"]
    assert plan.row(1, {"net": 5, "gross": 10}, False) == [1, 5]


def test_rows_go_through_copy_on_postgresql_only():
    """psycopg 3 (the postgres extra) has COPY; other databases use executemany."""
    from diskette.inserts import can_copy

    assert can_copy(connection) == (connection.vendor == "postgresql")
