"""Anonymization on dump: the rules, the fakes, the checks, in the dump's process.

The end-to-end guarantees (no original value anywhere in the archive, two
dumps alike, loads on every database, the laptop's refusal, the pull over
SSH) are in ``test_anonymize_project.py``; these hold the pieces to what
they promise on the sandbox's own models.
"""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.hashers import check_password, is_password_usable
from django.contrib.auth.models import User
from django.core.management import call_command

from diskette import anonymize
from diskette.anonymize import fakes
from diskette.anonymize.rules import RuleSet, unique_fields
from diskette.checks import check_settings
from diskette.data import write_data
from diskette.definitions import load_definitions
from diskette.exceptions import ConfigurationError, DumpError
from shop.models import Customer

SECRET = "test-secret-of-some-length"
RULES = {
    "auth.User": {
        "email": "email",
        "first_name": "first_name",
        "last_name": "last_name",
        "username": "user_name",
        "password": "password",
    },
    "shop.Customer": {
        "handle": "first_name",
        "email": "email",
        "phone": "phone_number",
        "ip": "ipv4",
        "address": "address",
        "notes": "empty",
        "profile": {"address.city": "city", "phones.*": "phone_number"},
        "id_scan": "drop",
    },
}


@pytest.fixture
def rules(settings):
    settings.DISKETTE_ANONYMIZE = RULES
    settings.DISKETTE_ANONYMIZE_SECRET = SECRET
    return settings


def function(anonymizer, model, name):
    return {f.name: fn for f, fn in anonymizer.functions(model)}[name]


def test_a_fake_depends_on_the_value_and_the_secret_only(rules):
    first = function(anonymize.for_dump(), User, "last_name")
    again = function(anonymize.for_dump(), User, "last_name")
    rules.DISKETTE_ANONYMIZE_SECRET = "another-secret-as-long"
    other = function(anonymize.for_dump(), User, "last_name")

    names = [f"Family{i}" for i in range(200)]
    assert [first(n) for n in names] == [again(n) for n in names]
    assert [first(n) for n in names] != [other(n) for n in names]
    assert not {first(n) for n in names} & set(names)
    assert first("") == "" and first(None) is None


def test_the_same_value_gets_the_same_fake_in_every_table(rules):
    anonymizer = anonymize.for_dump()
    user_email = function(anonymizer, User, "email")
    customer_email = function(anonymizer, Customer, "email")
    emails = [f"given{i}.family@mail.invalid" for i in range(100)]
    assert [user_email(e) for e in emails] == [customer_email(e) for e in emails]
    # Identifiers are tagged wherever they are: no two people share an address.
    assert len({user_email(e) for e in emails}) == len(emails)
    assert all(
        e.endswith(("@example.com", "@example.net", "@example.org"))
        for e in map(user_email, emails)
    )


@pytest.mark.parametrize("tag_digits", [fakes.TAG_DIGITS, 1])
def test_a_unique_field_stays_unique_however_many_rows(rules, monkeypatch, tag_digits):
    # One hex digit of tag: tags meet all the time, and must grow apart.
    monkeypatch.setattr(fakes, "TAG_DIGITS", tag_digits)
    handle = function(anonymize.for_dump(), Customer, "handle")
    values = [f"Handle{i:05d}" for i in range(5000)] + [f"HANDLE{i:05d}" for i in range(50)]

    made = [handle(v) for v in values]

    assert len({m.casefold() for m in made}) == len(values)
    assert max(map(len, made)) <= Customer._meta.get_field("handle").max_length
    assert made == [handle(v) for v in values]  # asked again, the same


def test_unique_fields_include_constraints_and_natural_keys():
    from demo.models import Author, Book

    assert "username" in unique_fields(User)
    assert {"title", "author"} <= unique_fields(Book)
    assert "name" in unique_fields(Author)


def test_json_key_paths_replace_only_what_they_name(rules):
    profile = function(anonymize.for_dump(), Customer, "profile")
    value = {
        "address": {"street": "1 Harbour Road", "city": "Townsville"},
        "phones": ["+44 1", "+44 2"],
        "newsletter": True,
    }

    masked = profile(value)

    assert masked["address"]["street"] == "1 Harbour Road"  # no rule
    assert masked["address"]["city"] != "Townsville"
    assert "+44 1" not in masked["phones"] and len(masked["phones"]) == 2
    assert masked["newsletter"] is True
    assert value["address"]["city"] == "Townsville"  # the read value is left alone


def test_built_in_rules(settings):
    settings.DISKETTE_ANONYMIZE = {
        "shop.Customer": {
            "notes": "mask",
            "address": "hash",
            "ip": "null",
            "phone": "keep",
        },
        "auth.User": {"password": {"rule": "password", "password": "dev"}},
    }
    settings.DISKETTE_ANONYMIZE_SECRET = SECRET
    anonymizer = anonymize.for_dump()

    assert (
        function(anonymizer, Customer, "notes")("card 4111222233334444")
        == "*" * 17 + "4444"
    )
    assert len(function(anonymizer, Customer, "address")("12 Lane")) == fakes.HASH_DIGITS
    assert function(anonymizer, Customer, "ip")("198.18.0.1") is None
    assert "phone" not in {f.name for f, _ in anonymizer.functions(Customer)}
    hashed = function(anonymizer, User, "password")("pbkdf2_sha256$old")
    assert check_password("dev", hashed)
    assert hashed == function(anonymize.for_dump(), User, "password")("other")


def test_an_unusable_password_matches_nothing(rules):
    hashed = function(anonymize.for_dump(), User, "password")("pbkdf2_sha256$x$y$z")
    assert not is_password_usable(hashed)


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"shop.Nope": {"x": "email"}}, "'shop.Nope' is not an installed model"),
        ({"shop.Customer": {"mail": "email"}}, "has no field 'mail'"),
        ({"shop.Customer": {"email": "emial"}}, "'emial' is neither a built-in rule"),
        ({"shop.Customer": {"user": "null"}}, "is a relation"),
        ({"shop.Customer": {"id": "hash"}}, "is a primary key"),
        ({"shop.Customer": {"notes": "null"}}, "cannot be NULL"),
        ({"shop.Customer": {"handle": "empty"}}, "must stay unique"),
        ({"shop.Customer": {"email": {"a.b": "city"}}}, "rules by key path are for JSON"),
        ({"shop.Customer": {"email": {"rule": "email", "colour": 1}}}, "fails"),
        ({"shop.Customer": {"email": "x.nothing.here"}}, "cannot import"),
    ],
)
def test_a_wrong_rule_is_one_error_naming_it(settings, rules, message):
    settings.DISKETTE_ANONYMIZE = rules
    settings.DISKETTE_ANONYMIZE_SECRET = SECRET

    errors = [m for m in check_settings() if m.id == "diskette.E003"]

    assert len(errors) == 1 and message in errors[0].msg, errors
    assert "\n" not in errors[0].msg
    with pytest.raises(ConfigurationError, match="DISKETTE_ANONYMIZE"):
        anonymize.for_dump()


def test_rules_without_a_secret(rules):
    rules.DISKETTE_ANONYMIZE_SECRET = None
    rules.DEBUG = False
    assert "diskette.E004" in {m.id for m in check_settings()}
    rules.DEBUG = True  # a laptop sharing production's rules still starts
    assert "diskette.W006" in {m.id for m in check_settings()}
    with pytest.raises(ConfigurationError, match="SECRET is not set.*--no-anonymize"):
        anonymize.for_dump()
    assert anonymize.for_dump(requested=False) is None


def test_a_raw_dump_is_refused_where_the_settings_require_anonymization(rules):
    rules.DISKETTE_ANONYMIZE_REQUIRED = True
    with pytest.raises(ConfigurationError, match="--no-anonymize.*forbids raw dumps"):
        anonymize.for_dump(requested=False)
    rules.DISKETTE_ANONYMIZE = {}
    with pytest.raises(ConfigurationError, match="no rule is"):
        anonymize.for_dump()


def test_precedence_model_then_name_then_type(settings):
    settings.DISKETTE_ANONYMIZE = {"shop.Customer": {"email": "hash"}}
    settings.DISKETTE_ANONYMIZE_FIELDS = {"email": "email", "notes": "empty"}
    settings.DISKETTE_ANONYMIZE_TYPES = {"TextField": "mask", "CharField": "hash"}
    ruleset = RuleSet()

    def rule(model, name):
        found = ruleset.rule_of(model._meta.get_field(name))
        return found and found.rule.name

    assert rule(Customer, "email") == "hash"  # the model's own
    assert rule(User, "email") == "email"  # by name
    assert rule(Customer, "notes") == "empty"  # by name, before its type
    assert rule(Customer, "address") == "mask"  # TextField
    assert rule(Customer, "phone") == "hash"  # CharField, by class
    assert rule(Customer, "tier") is None  # choices: no personal data
    assert rule(Customer, "user") is None  # a relation
    assert (
        ruleset.rule_of(
            __import__(
                "django.contrib.contenttypes.models"
            ).contrib.contenttypes.models.ContentType._meta.get_field("model")
        )
        is None
    )  # migrate-made rows are never touched


def test_the_check_lists_uncovered_fields_and_strict_makes_them_errors(rules):
    warnings = {m.msg for m in check_settings() if m.id == "diskette.W007"}
    assert "shop.customer: no anonymization rule covers tier" not in warnings  # choices
    assert "demo.review: no anonymization rule covers body" in warnings
    assert not any(w.startswith("shop.customer:") for w in warnings)

    rules.DISKETTE_ANONYMIZE_STRICT = True
    assert "demo.review: no anonymization rule covers body" in {
        m.msg for m in check_settings() if m.id == "diskette.E005"
    }


def test_no_rules_no_anonymization_messages(settings):
    assert not [m for m in check_settings() if "anonymiz" in m.msg.lower()]
    assert anonymize.for_dump() is None


def test_rows_and_serializer_anonymize_alike(demo, rules):
    """The JSON Lines rows path and Django's serializer (other formats) write
    the same fakes, natural keys to anonymized users included."""
    call_command("shop_seed_customers", users=30, stdout=io.StringIO())
    definitions = load_definitions(rules.DISKETTE_APPS)
    anonymizer = anonymize.for_dump()

    def objects(fmt):
        found = []
        for definition in definitions:
            definition = type(definition)(**{**definition.__dict__, "format": fmt})
            out = io.BytesIO()
            write_data(definition, out, using="default", anonymizer=anonymizer)
            text = out.getvalue().decode()
            found += (
                json.loads(text)
                if fmt == "json"
                else [json.loads(line) for line in text.splitlines()]
            )
        return sorted(found, key=lambda o: json.dumps(o, sort_keys=True))

    by_rows, by_serializer = objects("jsonl"), objects("json")

    assert by_rows == by_serializer
    # A reference by username (to_field) holds the fake the user's row holds.
    referrers = {
        o["fields"]["referrer"][0]
        for o in by_rows
        if o["model"] == "shop.customer" and o["fields"]["referrer"]
    }
    users = {o["fields"]["username"] for o in by_rows if o["model"] == "auth.user"}
    referred = {o["fields"]["user"][0] for o in by_rows if o["model"] == "shop.customer"}
    assert referred and referred <= users
    assert referrers and referrers <= users
    assert not any(u.startswith("member") for u in users)


def test_without_natural_keys_a_username_column_gets_the_same_fake(demo, rules):
    call_command("shop_seed_customers", users=30, stdout=io.StringIO())
    anonymizer = anonymize.for_dump()
    found = []
    for definition in load_definitions(rules.DISKETTE_APPS):
        for fmt in ("jsonl", "json"):
            plain = type(definition)(
                **{**definition.__dict__, "format": fmt, "natural_foreign": False}
            )
            out = io.BytesIO()
            write_data(plain, out, using="default", anonymizer=anonymizer)
            text = out.getvalue().decode()
            assert "member0" not in text
            found += (
                json.loads(text) if fmt == "json" else map(json.loads, text.splitlines())
            )
    users = {o["fields"]["username"] for o in found if o["model"] == "auth.user"}
    referrers = {o["fields"]["referrer"] for o in found if o["model"] == "shop.customer"}
    assert None in referrers and referrers - {None} and referrers - {None} <= users


@pytest.mark.parametrize(
    "setting, rules, message",
    [
        ("DISKETTE_ANONYMIZE", {"shop.Profile": {"avatar": "empty"}}, "holds bytes"),
        ("DISKETTE_ANONYMIZE", {"shop.Customer": {"notes": ".x"}}, "cannot import"),
        ("DISKETTE_ANONYMIZE", {"shop.Shopper": {"email": "email"}}, "is swapped out"),
        (
            "DISKETTE_ANONYMIZE",
            {"contenttypes.ContentType": {"model": "hash"}},
            "made by migrate",
        ),
        ("DISKETTE_ANONYMIZE_FIELDS", {"phone_numer": "phone_number"}, "matches no field"),
        ("DISKETTE_ANONYMIZE_TYPES", {".Foo": "hash"}, "no field class"),
    ],
)
def test_more_wrong_rules_are_one_error_not_a_traceback(settings, setting, rules, message):
    setattr(settings, setting, rules)
    settings.DISKETTE_ANONYMIZE_SECRET = SECRET

    errors = [m.msg for m in check_settings() if m.id == "diskette.E003"]

    assert len(errors) == 1 and message in errors[0], errors


def test_options_may_hold_lists(settings):
    settings.DISKETTE_ANONYMIZE = {
        "shop.Customer": {"notes": {"rule": "random_element", "elements": ["a", "b"]}}
    }
    settings.DISKETTE_ANONYMIZE_SECRET = SECRET
    assert not [m for m in check_settings() if m.id == "diskette.E003"]
    assert function(anonymize.for_dump(), Customer, "notes")("x") in ("a", "b")


def test_a_failing_callable_is_one_dump_error_without_the_value(settings):
    settings.DISKETTE_ANONYMIZE = {"shop.Customer": {"notes": "json.loads"}}
    settings.DISKETTE_ANONYMIZE_SECRET = SECRET
    notes = function(anonymize.for_dump(), Customer, "notes")

    with pytest.raises(DumpError) as failed:
        notes("Called on behalf of Given00042")

    assert "shop.customer.notes" in str(failed.value)
    assert "Given00042" not in str(failed.value)


def test_a_natural_key_gets_what_it_reads_anonymized(demo, settings):
    """Book's key declares it reads its author (natural_key.dependencies);
    Dish's declares nothing, so every relation it has is followed."""
    from demo.models import Author, Book
    from shop.models import Chef, Dish

    settings.DISKETTE_ANONYMIZE = {
        "demo.Author": {"name": "name"},
        "shop.Chef": {"name": "name"},
    }
    settings.DISKETTE_ANONYMIZE_SECRET = SECRET
    anonymizer = anonymize.for_dump()
    book = Book.objects.select_related("author").first()
    author = book.author.name
    chef = Chef.objects.create(name="Auguste Escoffier")
    dish = Dish.objects.create(name="Pêche Melba", chef=chef, price=7)

    fresh = Book.objects.get(pk=book.pk)
    anonymizer.natural(fresh)
    assert fresh.natural_key()[-1] != author
    assert fresh.natural_key()[-1] == function(anonymizer, Author, "name")(author)
    assert anonymizer.reads_rules(Dish) and anonymizer.reads_rules(Book)
    anonymizer.natural(dish)
    assert dish.chef.name != "Auguste Escoffier"


def test_what_a_key_reads_through_a_one_to_one_is_anonymized(demo, rules):
    from shop.models import Profile

    anonymizer = anonymize.for_dump()
    profile = Profile.objects.first()
    username = profile.user.username
    profile = Profile.objects.get(pk=profile.pk)

    anonymizer.natural(profile)

    assert profile.user.username == function(anonymizer, User, "username")(username)
    assert profile.user.username != username
