"""Subset dumps (``diskette.subset``): the closure, the dump, the load.

Against the sandbox's demo library and shop, seeded by ``demo_seed``: the
closure must hold exactly the rows a starting set needs, follow reverse and
many-to-many relations only when told, end on cycles, read one query per
model per level; the archive must hold only those rows and the files they
name, and load into an empty database with every reference whole.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from demo.models import Author, Book, Review, Tag
from diskette.archive import read_manifest
from diskette.checks import check_settings
from diskette.conf import get_settings
from diskette.definitions import load_definitions
from diskette.dump import dump
from diskette.exceptions import ConfigurationError, DumpError
from diskette.subset import closure, parse_subset, read_subset, sample
from shop.models import (
    Category,
    Chef,
    Circle,
    ColoredSquare,
    Coupon,
    Dish,
    Note,
    Order,
    OrderLine,
    Pizzeria,
    Place,
    Restaurant,
    Shape,
    Square,
)
from tests.conftest import archive_file, archive_members, run_command
from tests.test_load_command import wipe

pytestmark = pytest.mark.django_db

User = get_user_model()


def kept(subset: dict, name: str = "test") -> dict[type, set]:
    """The closure of ``subset``, without the models it keeps nothing of."""
    found = closure(parse_subset(subset, name))
    return {model: keys for model, keys in found.keys.items() if keys}


def keys(queryset) -> set:
    return set(queryset.values_list("pk", flat=True))


def data_lines(archive: Path, member: str) -> list[dict]:
    return [json.loads(line) for line in archive_file(archive, member).splitlines()]


def objects(archive: Path, member: str, label: str) -> dict:
    """The objects of ``label`` a data member holds, by primary key as written."""
    return {
        o["pk"]: o["fields"] for o in data_lines(archive, member) if o["model"] == label
    }


def a_book_with(**conditions) -> Book:
    """A demo book with tags, reviews and a user who added it (the seed has them)."""
    books = Book.objects.filter(added_by__isnull=False, **conditions).order_by("pk")
    for book in books:
        if book.tags.exists() and book.reviews.exists():
            return book
    pytest.fail("the demo seed holds no book with tags, reviews and a user")


# The closure ---------------------------------------------------------------------


def test_a_starting_row_brings_exactly_its_parents(demo):
    book = a_book_with()
    assert kept({"demo.Book": {"filter": {"pk": book.pk}}}) == {
        Book: {book.pk},
        Author: {book.author_id},
        User: {book.added_by_id},
    }


def test_reverse_relations_and_many_to_many_only_on_request(demo):
    book = a_book_with()
    plain = kept({"demo.Book": {"filter": {"pk": book.pk}}})
    assert Review not in plain and Tag not in plain and Group not in plain

    reviews = Review.objects.filter(book=book)
    followed = kept(
        {"demo.Book": {"filter": {"pk": book.pk}, "follow": ["reviews", "tags"]}}
    )
    assert followed == {
        Book: {book.pk},
        Author: {book.author_id},
        Review: keys(reviews),
        Tag: keys(book.tags.all()),
        # who added it, and each reviewer: parents of the rows followed
        User: {book.added_by_id, *reviews.values_list("reviewer_id", flat=True)},
    }
    # The other side of a many-to-many, and a reverse one named by accessor.
    tag = book.tags.order_by("pk").first()
    from_tag = kept({"demo.Tag": {"filter": {"pk": tag.pk}, "follow": ["books"]}})
    assert from_tag[Book] == keys(tag.books.all())
    by_accessor = kept(
        {"auth.User": {"filter": {"pk": book.added_by_id}, "follow": ["book_set"]}}
    )
    assert by_accessor[Book] == keys(Book.objects.filter(added_by=book.added_by_id))


def test_cycles_of_foreign_keys_end(demo):
    """Chef -> signature dish -> chef, a self-referencing tree whose moved
    branch hangs below its own descendant, and reverse relations followed
    back and forth: each row is read once, and the closure ends."""
    chef = Chef.objects.filter(signature__isnull=False).order_by("pk").first()
    subset = {
        "shop.Chef": {"filter": {"pk": chef.pk}, "follow": ["dishes"]},
        "shop.Category": {"follow": ["children", "dishes"]},
        "shop.Dish": {"follow": ["orders"]},
    }
    found = closure(parse_subset(subset, "cycle"))
    # What a walk in Python finds, following the same relations.
    chefs, dishes, categories, orders = {chef.pk}, set(), set(), set()
    while True:
        before = (len(chefs), len(dishes), len(categories), len(orders))
        dishes |= keys(Dish.objects.filter(chef__in=chefs))
        dishes |= set(
            Chef.objects.filter(pk__in=chefs, signature__isnull=False).values_list(
                "signature", flat=True
            )
        )
        chefs |= set(
            Dish.objects.filter(pk__in=dishes, chef__isnull=False).values_list(
                "chef", flat=True
            )
        )
        categories |= set(
            Dish.objects.filter(pk__in=dishes, category__isnull=False).values_list(
                "category", flat=True
            )
        )
        categories |= keys(Category.objects.filter(parent__in=categories))
        categories |= set(
            Category.objects.filter(pk__in=categories, parent__isnull=False).values_list(
                "parent", flat=True
            )
        )
        dishes |= keys(Dish.objects.filter(category__in=categories))
        orders |= set(
            OrderLine.objects.filter(dish__in=dishes).values_list("order", flat=True)
        )
        if (len(chefs), len(dishes), len(categories), len(orders)) == before:
            break
    lines = keys(OrderLine.objects.filter(dish__in=dishes))
    assert found.keys[Chef] == chefs
    assert found.keys[Dish] == dishes
    assert found.keys[Category] == keys(Category.objects.all()) == categories  # one tree
    assert found.keys[OrderLine] == lines
    assert found.keys[Order] == orders
    assert len(found.levels) < 20


def test_inheritance_parents_and_children_are_one_object(demo):
    pizzeria = Pizzeria.objects.order_by("pk").first()
    # A note on a pizzeria: its generic foreign key brings the pizzeria, and
    # the pizzeria its restaurant and place rows.
    note = Note.objects.filter(
        content_type=ContentType.objects.get_for_model(Pizzeria)
    ).first()
    assert kept({"shop.Note": {"filter": {"pk": note.pk}}}) == {
        Note: {note.pk},
        Pizzeria: {int(note.object_id)},
        Restaurant: {int(note.object_id)},
        Place: {int(note.object_id)},
    }
    # Starting from the root table: the child tables' rows of the same object.
    assert kept({"shop.Place": {"filter": {"pk": pizzeria.pk}}}) == {
        Place: {pizzeria.pk},
        Restaurant: {pizzeria.pk},
        Pizzeria: {pizzeria.pk},
    }
    napkin = ColoredSquare.objects.order_by("pk").first()
    assert kept({"shop.Shape": {"filter": {"name": napkin.name}}}) == {
        Shape: {napkin.pk},
        Square: {napkin.pk},
        ColoredSquare: {napkin.pk},
    }
    circle = Circle.objects.order_by("pk").first()
    assert Square not in kept({"shop.Shape": {"filter": {"pk": circle.pk}}})


def test_generic_relations_and_through_models_on_request(demo):
    order = Order.objects.filter(coupon__isnull=False, customer__isnull=False).first()
    assert kept({"shop.Order": {"filter": {"pk": order.pk}}}) == {
        Order: {order.pk},
        Coupon: {order.coupon_id},
        User: {order.customer_id},
    }
    found = kept({"shop.Order": {"filter": {"pk": order.pk}, "follow": ["notes", "items"]}})
    assert found[Note] == keys(Note.objects.filter(object_id=str(order.pk)))
    assert found[Note]  # the seed notes every order
    # items goes through OrderLine, a model of its own: its rows bring the dishes.
    assert found[OrderLine] == keys(order.lines.all())
    assert keys(order.items.all()) <= found[Dish]
    # A coupon's notes are not followed unless the coupon's rule says so.
    assert not keys(Note.objects.filter(object_id=order.coupon_id)) & found[Note]


def test_one_query_per_model_per_level(demo):
    """Every book starts: twelve books, yet one query reads their authors, one
    their users, one their reviews, whatever the number of rows."""
    ContentType.objects.get_for_models(*apps.get_models())  # Django's cache, warm
    subset = parse_subset(
        {
            "demo.Book": {"filter": {}, "follow": ["reviews", "tags"]},
            "shop.Order": {"filter": {}, "follow": ["notes", "lines"]},
            "shop.Note": {"filter": {}},
        },
        "all",
    )
    with CaptureQueriesContext(connection) as queries:
        found = closure(subset)
    assert len(queries) == sum(len(level) for level in found.levels)
    for level in found.levels:
        assert len(level) == len(set(level))
    assert found.levels[0] == ["demo.book", "shop.order", "shop.note"]
    assert {"demo.author", "demo.review", "demo.tag", "auth.user"} <= set(found.levels[1])
    assert found.keys[Book] == keys(Book.objects.all())
    assert found.keys[Review] == keys(Review.objects.all())


def test_one_query_per_level_holds_past_the_in_list_limit(demo, monkeypatch):
    """With a database that takes 3 values per IN list, a level of twelve
    books reads their authors in ceil(n / 3) queries, not one per book."""
    monkeypatch.setattr("diskette.subset.in_list_size", lambda connection: 3)
    with CaptureQueriesContext(connection) as queries:
        found = closure(parse_subset({"demo.Book": {"filter": {}}}, "all"))
    table = connection.ops.quote_name("demo_author")  # `demo_author` on MySQL
    authors = [q for q in queries if table in q["sql"]]
    assert len(authors) == -(-len(set(Book.objects.values_list("author", flat=True))) // 3)
    assert found.keys[Author] == set(Book.objects.values_list("author", flat=True))


def test_percent_takes_rows_evenly_in_primary_key_order(demo):
    assert list(sample(range(95), Fraction(10))) == list(range(0, 91, 10))
    assert list(sample(range(3), Fraction(10))) == [0]  # at least one row
    assert list(sample(range(5), Fraction(100))) == [0, 1, 2, 3, 4]
    books = list(Book.objects.order_by("pk").values_list("pk", flat=True))
    assert len(books) == 12
    assert kept({"demo.Book": {"percent": 25}})[Book] == {books[0], books[4], books[8]}
    # A filter first, then the share of what it selects.
    rated = list(
        Book.objects.filter(reviews__isnull=False)
        .distinct()
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    chosen = kept({"demo.Book": {"filter": {"reviews__isnull": False}, "percent": 50}})[
        Book
    ]
    assert chosen == set(rated[::2])


# Definitions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subset", "message"),
    [
        ([], "must be a dict of model labels to rules"),
        ({}, "must be a dict of model labels to rules"),
        ({"demo.Boook": {"filter": {}}}, "['demo.Boook']: unknown model 'demo.Boook'"),
        ({"demo": {"filter": {}}}, "name a model by its label, such as 'demo.Book'"),
        (
            {"demo.Book": {"filtre": {}}},
            "unknown key 'filtre' (valid: filter, percent, follow)",
        ),
        (
            {"demo.Book": {"filter": {"publishd__year": 2026}}},
            "'filter': Cannot resolve keyword 'publishd'",
        ),
        (
            {"demo.Book": {"filter": {"pk": "abc"}}},
            "'filter': Field 'id' expected a number but got 'abc'",
        ),
        ({"demo.Book": {"filter": []}}, "'filter' must be a dict of lookups"),
        (
            {"demo.Book": {"percent": 0}},
            "'percent' must be a number above 0 and at most 100",
        ),
        ({"demo.Book": {"percent": True}}, "'percent' must be a number above 0"),
        ({"demo.Book": {"follow": "reviews"}}, "'follow' must be a list of relation names"),
        ({"demo.Book": {"follow": ["reviews"]}}, "has no starting rows"),
        ({"demo.Book": {}}, "starts nothing and follows nothing"),
        (
            {"demo.Book": {"filter": {}, "follow": ["author"]}},
            "demo.Book.author refers forward, which is always followed",
        ),
        (
            {"demo.Book": {"filter": {}, "follow": ["comments"]}},
            "demo.Book has no relation 'comments' to follow (reverse relations and "
            "many-to-many fields: reviews, tags)",
        ),
        (
            {"shop.Landmark": {"filter": {}}},
            "is a proxy without rows of its own; name shop.Place",
        ),
        (
            {"contenttypes.ContentType": {"filter": {}}},
            "migrate makes contenttypes.ContentType's rows",
        ),
        (
            {"demo.Book": {"filter": {}}, "demo.book": {"filter": {}}},
            "demo.Book is named twice",
        ),
    ],
)
def test_a_bad_definition_is_named_with_its_fix(subset, message):
    with pytest.raises(ConfigurationError) as raised:
        parse_subset(subset, "recent")
    assert str(raised.value).startswith("DISKETTE_SUBSETS['recent']")
    assert message in str(raised.value)


def test_the_setting_is_checked(settings):
    settings.DISKETTE_SUBSETS = {
        "recent": {"demo.Book": {"filter": {"titel": "x"}}},
        "ok": {"demo.Book": {"percent": 5}},
    }
    errors = [m for m in check_settings() if m.id == "diskette.E006"]
    assert [str(e.msg) for e in errors] == [
        "DISKETTE_SUBSETS['recent']['demo.Book']: 'filter': Cannot resolve keyword 'titel' "
        "into field. Choices are: added_by, added_by_id, author, author_id, cover, id, "
        "published, reviews, tags, title"
    ]
    settings.DISKETTE_SUBSETS = [("recent", {})]
    with pytest.raises(
        ConfigurationError, match="DISKETTE_SUBSETS must be a dict of names"
    ):
        get_settings()
    assert [m.id for m in check_settings() if m.id.startswith("diskette.E")] == [
        "diskette.E001"
    ]


def test_subset_by_name_or_json_file(tmp_path):
    by_name = read_subset("recent", {"recent": {"demo.Book": {"percent": 5}}})
    assert by_name.name == "recent"
    path = tmp_path / "few-books.json"
    path.write_text(json.dumps({"demo.Book": {"filter": {"title__startswith": "The"}}}))
    from_file = read_subset(str(path), {})
    assert from_file.name == "few-books"
    assert from_file.rules[0].filter == {"title__startswith": "The"}
    with pytest.raises(
        ConfigurationError, match=r"--subset: no subset 'old' \(known: recent\)"
    ):
        read_subset("old", {"recent": {}})
    with pytest.raises(
        ConfigurationError, match="--subset '.*missing.json' cannot be read"
    ):
        read_subset(str(tmp_path / "missing.json"), {})
    path.write_text(json.dumps({"demo.Book": {"percent": 200}}))
    with pytest.raises(
        ConfigurationError, match=r"^--subset '.*few-books.json'\['demo.Book'\]: 'percent'"
    ):
        read_subset(str(path), {})


# The dump ---------------------------------------------------------------------------


def subset_dump(project: Path) -> Path:
    """``diskette_dump --subset chosen``: the archive it writes."""
    run_command("diskette_dump", "--subset", "chosen")
    return project / "var" / "diskette_data_storages.tar.gz"


@pytest.fixture
def chosen(settings):
    """Sets ``DISKETTE_SUBSETS['chosen']`` to what a test passes."""

    def choose(subset: dict) -> None:
        settings.DISKETTE_SUBSETS = {"chosen": subset}

    return choose


def test_the_archive_holds_only_the_kept_rows_and_their_files(demo, chosen):
    book = a_book_with()
    chosen({"demo.Book": {"filter": {"pk": book.pk}}})
    archive = subset_dump(demo)
    assert set(objects(archive, "data/demo.jsonl", "demo.book")) == {book.pk}
    assert set(objects(archive, "data/demo.jsonl", "demo.author")) == {book.author_id}
    assert objects(archive, "data/demo.jsonl", "demo.tag") == {}
    assert set(objects(archive, "data/djangocontribauth.jsonl", "auth.user")) == {
        book.added_by_id
    }
    assert objects(archive, "data/djangocontribauth.jsonl", "auth.group") == {}
    assert data_lines(archive, "data/shop.jsonl") == []
    assert data_lines(archive, "data/everythingelse.jsonl") == []  # no review
    # A many-to-many value whose row is not kept is left out: its tags, the
    # user's groups. Permissions come with migrate: kept (none in the seed).
    assert book.tags.exists()
    assert objects(archive, "data/demo.jsonl", "demo.book")[book.pk]["tags"] == []
    assert (
        objects(archive, "data/djangocontribauth.jsonl", "auth.user")[book.added_by_id][
            "groups"
        ]
        == []
    )
    # Media: the kept book's cover alone; folders stay.
    files = {
        n
        for n, m in archive_members(archive).items()
        if n.startswith("var/media/") and m.isfile()
    }
    assert files == {f"var/media/{book.cover.name}"}
    assert "var/media/covers" in archive_members(archive)
    manifest = read_manifest(archive)
    assert manifest["subset"] == {
        "name": "chosen",
        "definition": {"demo.Book": {"filter": {"pk": book.pk}}},
        "objects": {"auth.user": 1, "demo.author": 1, "demo.book": 1},
        "files": 1,
    }
    assert manifest["applications"][2]["objects"]["demo.book"] == 1


def test_followed_many_to_many_keeps_its_values(demo, chosen):
    book = a_book_with()
    chosen(
        {
            "demo.Book": {"filter": {"pk": book.pk}, "follow": ["tags"]},
            "auth.User": {"follow": ["groups"]},
        }
    )
    archive = subset_dump(demo)
    tags = sorted(book.tags.values_list("name", flat=True))
    dumped = objects(archive, "data/demo.jsonl", "demo.book")[book.pk]
    assert sorted(t[0] for t in dumped["tags"]) == tags  # natural keys, as ever
    assert (
        sorted(
            o["fields"]["name"]
            for o in data_lines(archive, "data/demo.jsonl")
            if o["model"] == "demo.tag"
        )
        == tags
    )
    user = objects(archive, "data/djangocontribauth.jsonl", "auth.user")[book.added_by_id]
    assert user["groups"] == [
        [g] for g in book.added_by.groups.values_list("name", flat=True)
    ]


def test_json_definitions_go_through_the_serializer_restricted_too(demo, chosen, settings):
    """A definition that writes .json goes through Django's serializer: the
    same rows, the same many-to-many values left out."""
    settings.DISKETTE_APPS = [
        [
            "django.contrib.auth",
            {"natural_foreign": True, "models": ["auth.Group", "auth.User"]},
        ],
        ["demo", {"natural_foreign": True, "models": "demo", "filename": "demo.json"}],
    ]
    book = a_book_with()
    chosen({"demo.Book": {"filter": {"pk": book.pk}, "follow": ["reviews"]}})
    archive = subset_dump(demo)
    written = json.loads(archive_file(archive, "data/demo.json"))
    assert {(o["model"], o["pk"]) for o in written} == {
        ("demo.author", book.author_id),
        ("demo.book", book.pk),
        *(("demo.review", pk) for pk in keys(book.reviews.all())),
    }
    assert next(o for o in written if o["model"] == "demo.book")["fields"]["tags"] == []


def test_a_needed_model_no_definition_dumps_is_refused(demo, chosen, settings):
    settings.DISKETTE_APPS = [["demo", {"natural_foreign": True, "models": "demo"}]]
    book = a_book_with()
    chosen({"demo.Book": {"filter": {"pk": book.pk}}})
    with pytest.raises(CommandError) as raised:
        run_command("diskette_dump", "--subset", "chosen")
    assert str(raised.value) == (
        "subset 'chosen' needs rows of auth.user (demo.book.added_by), which no "
        "definition dumps; add auth.User to a definition, or follow less"
    )
    assert not (demo / "var" / "diskette_data_storages.tar.gz").exists()


def test_dump_command_and_no_archive_are_refused(demo, chosen, settings):
    chosen({"demo.Book": {"percent": 10}})
    with pytest.raises(CommandError, match="drop --subset or --no-archive"):
        run_command("diskette_dump", "--subset", "chosen", "--no-archive")
    definitions = load_definitions(
        [["demo", {"models": "demo", "dump_command": "polymorphic_dumpdata"}]]
    )
    subset = parse_subset({"demo.Book": {"percent": 10}}, "few")
    with pytest.raises(
        DumpError,
        match="dump_command 'polymorphic_dumpdata' dumps every row, not subset 'few'",
    ):
        dump(definitions, [], demo / "var" / "x.tar.gz", subset=subset)


def test_check_counts_the_kept_rows(demo, chosen):
    chosen({"demo.Book": {"percent": 25}})
    output = run_command("diskette_dump", "--subset", "chosen", "--check", "--json")
    counts = json.loads(output.stdout)["objects"]
    assert counts["demo"]["demo.book"] == 3
    assert counts["demo"]["demo.tag"] == 0
    assert sum(counts["shop"].values()) == 0


def test_storages_only_archives_the_kept_rows_files(demo, chosen):
    book = a_book_with()
    chosen({"demo.Book": {"filter": {"pk": book.pk}}})
    run_command("diskette_dump", "--subset", "chosen", "--no-data")
    archive = demo / "var" / "diskette_storages.tar.gz"
    files = {n for n, m in archive_members(archive).items() if m.isfile()}
    assert files == {f"var/media/{book.cover.name}", "manifest.json"}


def test_a_plan_against_a_list_counts_the_files_the_subset_dump_then_keeps(
    demo, chosen, tmp_path
):
    """``--check --base`` (a pull's dry run) leaves out what the subset's dump
    leaves out: against a list of every file, the kept book's cover is kept,
    and every other file is removed there, neither sent nor kept."""
    book = a_book_with()
    chosen({"demo.Book": {"filter": {"pk": book.pk}}})
    have = tmp_path / "have.json"
    run_command("diskette_index", "--output", str(have))
    listed = len(json.loads(have.read_text())["storages"]["var/media"])
    dump = ("diskette_dump", "--subset", "chosen", "--base", str(have), "--json")

    planned = json.loads(run_command(*dump, "--check").stdout)
    done = json.loads(run_command(*dump).stdout)

    [media] = [change for change in planned["delta"] if change["storage"] == "var/media"]
    assert (media["added"], media["changed"], media["kept"]) == (0, 0, 1)
    assert media["removed"] == listed - 1 > 0
    assert done["kept"] == media["kept"]
    assert done["kept_bytes"] == media["bytes_kept"] == book.cover.size


def test_only_the_kept_rows_files_of_a_bucket_are_archived(project, settings, s3, bucket):
    """Media on S3: the kept customer's scan, no other object of the bucket;
    and its referrer, a user named by username (``to_field``), comes too."""
    from shop.models import Customer
    from tests.test_object_storage import fill, use_s3

    run_command("shop_seed_customers", users=3)
    customers = list(Customer.objects.order_by("pk"))
    fill(
        s3,
        bucket,
        {c.id_scan.name: b"Passport" for c in customers} | {"covers/a.jpg": b"x"},
    )
    use_s3(settings, s3, "default", bucket)
    settings.DISKETTE_STORAGES = [{"storage": "default"}]
    second = customers[1]
    assert second.referrer_id == customers[0].user.username
    settings.DISKETTE_SUBSETS = {"one": {"shop.Customer": {"filter": {"pk": second.pk}}}}
    answer = json.loads(run_command("diskette_dump", "--subset", "one", "--json").stdout)
    archive = Path(answer["archive"])
    files = {n for n, m in archive_members(archive).items() if m.isfile()}
    assert files - {"manifest.json"} == {
        f"diskette-storages/default/{second.id_scan.name}",
        *(
            f"data/{name}"
            for name in ("djangocontribauth.jsonl", "djangocontribsites.jsonl")
        ),
        *(f"data/{name}" for name in ("demo.jsonl", "shop.jsonl", "everythingelse.jsonl")),
    }
    users = objects(archive, "data/djangocontribauth.jsonl", "auth.user")
    assert set(users) == {second.user_id, customers[0].user_id}
    assert answer["subset"]["files"] == 1


# The load ----------------------------------------------------------------------------


def stored(models) -> dict[type, set]:
    return {model: keys(model._base_manager.all()) for model in models}


@pytest.mark.django_db(transaction=True)
def test_a_subset_of_the_sandbox_loads_into_an_empty_database(demo, chosen):
    """Books, orders and a customer's part of the shop, followed widely; then
    an empty, migrated database and no media; the load: exactly the kept
    rows, every reference whole, the kept rows' covers and no other file."""
    for excluded in ("cache/generated.txt", "public/thumbnails/generated.txt"):
        (demo / "var" / "media" / excluded).unlink()
    subset = {
        "demo.Book": {"percent": 25, "follow": ["reviews", "tags"]},
        "shop.Order": {"percent": 50, "follow": ["lines", "notes"]},
        "shop.Place": {"filter": {"name__startswith": "Pizzeria"}, "follow": ["notes"]},
        "shop.Customer": {"filter": {"user__username": "user1"}},
        "sites.Site": {"filter": {}},
    }
    chosen(subset)
    expected = kept(subset, "chosen")
    tags = {
        pk: set(Book.objects.get(pk=pk).tags.values_list("pk", flat=True))
        for pk in expected[Book]
    }
    covers = {Book.objects.get(pk=pk).cover.name for pk in expected[Book]}
    all_covers = set(Book.objects.values_list("cover", flat=True))
    assert (
        Review in expected
        and Tag in expected
        and OrderLine in expected
        and Pizzeria in expected
    )
    output = run_command("diskette_dump", "--subset", "chosen")
    assert any(line.startswith("Subset 'chosen': ") for line in output.lines)
    archive = demo / "var" / "diskette_data_storages.tar.gz"

    wipe(demo)
    assert not Book.objects.exists() and not Order.objects.exists()
    run_command("diskette_load", str(archive))

    dumped_models = {m for d in load_definitions(get_settings().apps) for m in d.models}
    assert stored(dumped_models) == {
        model: expected.get(model, set()) for model in dumped_models
    }
    with connection.cursor():
        connection.check_constraints()  # no reference to a row the archive lacked
    for book in Book.objects.all():
        assert set(book.tags.values_list("pk", flat=True)) == tags[book.pk] & expected[Tag]
    media = demo / "var" / "media"
    on_disk = {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()}
    assert on_disk == covers
    assert covers < all_covers
