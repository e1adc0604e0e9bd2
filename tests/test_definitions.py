import re

import pytest

from diskette.definitions import default_stem, load_definitions, resolve_definitions
from diskette.exceptions import DefinitionError

#: The definitions of the user guide's basic sample, verbatim.
SEED_APPS = [
    [
        "django.contrib.auth",
        {
            "comments": "django.contrib.auth: user and groups, no perms",
            "natural_foreign": True,
            "models": ["auth.Group", "auth.User"],
        },
    ],
    [
        "django.contrib.sites",
        {"comments": "django.contrib.sites", "natural_foreign": True, "models": "sites"},
    ],
]


def refused(raw, message):
    """Assert that ``raw`` is refused with ``message`` (a literal substring)."""
    with pytest.raises(DefinitionError, match=re.escape(message)):
        load_definitions(raw)


def test_seed_definitions_resolve_to_their_models():
    auth, sites = load_definitions(SEED_APPS)
    assert auth.labels == ["auth.Group", "auth.User"]
    assert sites.labels == ["sites.Site"]
    assert (auth.stem, sites.stem) == ("djangocontribauth", "djangocontribsites")
    assert auth.natural_foreign and not auth.natural_primary
    assert auth.filename() == "djangocontribauth.jsonl"
    assert auth.filename("json") == "djangocontribauth.json"


@pytest.mark.parametrize(
    ("name", "stem"),
    [("django.contrib.auth", "djangocontribauth"), ("My app_data-2", "myappdata2")],
)
def test_default_stem_is_the_slugified_name_without_separators(name, stem):
    assert default_stem(name) == stem


def test_an_app_label_stands_for_its_concrete_models():
    (demo,) = load_definitions([["demo", {"models": "demo"}]])
    assert demo.labels == ["demo.Author", "demo.Tag", "demo.Book", "demo.Review"]


def test_models_default_to_the_app_the_name_designates():
    (auth,) = load_definitions([["django.contrib.auth", {}]])
    assert auth.labels == ["auth.Permission", "auth.Group", "auth.User"]


def test_auto_created_m2m_tables_are_accepted_and_dumped_with_their_model():
    (auth,) = load_definitions(
        [["auth", {"models": ["auth.Group_permissions", "auth.User_groups", "auth.User"]}]]
    )
    assert auth.labels == ["auth.User"]


def test_excludes_remove_models():
    (demo,) = load_definitions([["demo", {"models": "demo", "excludes": "demo.Review"}]])
    assert "demo.Review" not in demo.labels


def test_natural_foreign_orders_models_by_natural_key_dependencies():
    (plain,) = load_definitions([["x", {"models": ["demo.Book", "demo.Author"]}]])
    (natural,) = load_definitions(
        [["x", {"models": ["demo.Book", "demo.Author"], "natural_foreign": True}]]
    )
    assert plain.labels == ["demo.Book", "demo.Author"]
    assert natural.labels == ["demo.Author", "demo.Book"]


@pytest.mark.parametrize(
    ("filename", "stem", "archive_name"),
    [
        ("custom.json", "custom", "custom.json"),
        ("custom", "custom", "custom.jsonl"),
        ("custom.jsonl", "custom", "custom.jsonl"),
    ],
)
def test_filename_option_sets_stem_and_format(filename, stem, archive_name):
    (definition,) = load_definitions([["x", {"models": "sites", "filename": filename}]])
    assert definition.stem == stem
    assert definition.filename() == archive_name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"auth": {}}, "DISKETTE_APPS must be a list, not dict"),
        ([["auth"]], "DISKETTE_APPS[0] must be a [name, {options}] pair"),
        ([["auth", ["models"]]], "DISKETTE_APPS[0] must be a [name, {options}] pair"),
        ([["", {"models": "auth"}]], "DISKETTE_APPS[0]: name must be a non-empty string"),
        (
            [["auth", {"natral_foreign": True}]],
            "DISKETTE_APPS[0] 'auth': unknown option 'natral_foreign' (valid: comments,",
        ),
        (
            [["auth", {"natural_foreign": "yes"}]],
            "DISKETTE_APPS[0] 'auth': option 'natural_foreign' must be True or False, not 'yes'",
        ),
        (
            [["auth", {"models": ["auth.User", 3]}]],
            "option 'models' must be a label or a list of labels, not ['auth.User', 3]",
        ),
        (
            [["auth", {"models": "nope"}]],
            "DISKETTE_APPS[0] 'auth': models: unknown application label 'nope' in 'nope'",
        ),
        ([["auth", {"models": "auth.Nope"}]], "models: unknown model 'auth.Nope'"),
        (
            [["auth", {"models": "auth", "excludes": ["auth.Nope"]}]],
            "'auth': excludes: unknown model 'auth.Nope'",
        ),
        (
            [["auth", {"models": "auth.User", "excludes": "auth"}]],
            "'auth': 'models' resolves to no model to dump",
        ),
        (
            [["not an app", {}]],
            "'models' is required: 'not an app' is not an installed app",
        ),
        (
            [["x", {"models": "sites", "filename": "x.xml"}]],
            "option 'filename' 'x.xml' has an unsupported extension (use .jsonl or .json",
        ),
        (
            [["x", {"models": "sites", "filename": "../x.json"}]],
            "option 'filename' '../x.json' must be a plain file name",
        ),
        ([["x", {"models": "sites", "filename": ".json"}]], "must be a plain file name"),
        (
            [["x", {"models": "sites", "dump_command": "nodump"}]],
            "option 'dump_command': unknown management command 'nodump'",
        ),
        (
            [["a", {"models": "sites"}], ["a", {"models": "auth"}]],
            "DISKETTE_APPS[1] 'a': duplicate name",
        ),
        (
            [["a.b", {"models": "sites"}], ["ab", {"models": "auth"}]],
            "'ab': data file name 'ab' is already used by 'a.b'; set 'filename'",
        ),
        ([["---", {"models": "sites"}]], "name '---' gives an empty file name"),
        ([["rest", {"is_drain": True, "models": "auth"}]], "a drain takes no 'models'"),
        (
            [["r1", {"is_drain": True}], ["r2", {"is_drain": True}]],
            "DISKETTE_APPS[1] 'r2': only one definition may be a drain",
        ),
    ],
)
def test_bad_definitions_are_refused_naming_definition_and_key(raw, message):
    refused(raw, message)


def test_every_problem_is_reported_not_only_the_first():
    _, problems = resolve_definitions(
        [["a", {"models": "nope"}], ["b", {"bogus": 1}], ["c", {"models": "sites"}]]
    )
    assert [str(p).split(":")[0] for p in problems] == [
        "DISKETTE_APPS[1] 'b'",
        "DISKETTE_APPS[0] 'a'",
    ]


def test_source_prefixes_messages():
    with pytest.raises(DefinitionError, match=r"^apps\.json\[0\] 'x': unknown option"):
        load_definitions([["x", {"nope": 1}]], source="apps.json")


class TestDrain:
    def test_drain_collects_what_no_other_definition_covers(self):
        definitions = load_definitions(
            [["auth", {"models": "auth"}], ["rest", {"is_drain": True}]]
        )
        drain = definitions[-1]
        assert drain.is_drain
        assert not set(drain.labels) & {"auth.Permission", "auth.Group", "auth.User"}
        assert {"sites.Site", "demo.Book", "contenttypes.ContentType"} <= set(drain.labels)

    def test_excluded_models_stay_out_unless_the_definition_allows_drain(self):
        keep_out = load_definitions(
            [
                ["demo", {"models": "demo", "excludes": ["demo.Review"]}],
                ["rest", {"is_drain": True}],
            ]
        )[-1]
        let_in = load_definitions(
            [
                [
                    "demo",
                    {"models": "demo", "excludes": ["demo.Review"], "allow_drain": True},
                ],
                ["rest", {"is_drain": True}],
            ]
        )[-1]
        assert "demo.Review" not in keep_out.labels
        assert "demo.Review" in let_in.labels

    def test_drain_excludes_apply(self):
        (drain,) = load_definitions(
            [["rest", {"is_drain": True, "excludes": ["contenttypes", "demo.Tag"]}]]
        )
        assert "demo.Tag" not in drain.labels
        assert "contenttypes.ContentType" not in drain.labels
        assert "demo.Author" in drain.labels

    def test_drain_keeps_its_place_in_load_order(self):
        definitions = load_definitions(
            [
                ["auth", {"models": "auth"}],
                ["rest", {"is_drain": True}],
                ["demo", {"models": "demo"}],
            ]
        )
        assert [d.name for d in definitions] == ["auth", "rest", "demo"]
        assert not set(definitions[1].labels) & set(definitions[2].labels)


# Model order: dumpdata's, except where a cycle must be broken.


def _labels(models) -> list[str]:
    return [m._meta.label for m in models]


def test_without_a_cycle_models_are_ordered_as_dumpdata_orders_them():
    """Files stay byte for byte what ``dumpdata --natural-foreign`` writes."""
    import random

    from django.apps import apps
    from django.core import serializers

    from diskette.definitions import _natural_key_order, dumpable_models

    acyclic = [
        m
        for m in dumpable_models(apps.get_models())
        if m._meta.label not in ("shop.Chef", "shop.Dish", "shop.OrderLine")
    ]
    rng = random.Random(13)
    for _ in range(200):
        models = tuple(rng.sample(acyclic, rng.randrange(1, 12)))
        by_app: dict = {}
        for model in models:
            by_app.setdefault(model._meta.app_config, []).append(model)
        dumpdata = serializers.sort_dependencies(by_app.items(), allow_cycles=True)
        assert _labels(_natural_key_order(models)) == _labels(dumpdata)


def test_a_cycle_is_broken_where_loading_can_wait():
    """Chef.signature -> Dish and Dish.chef -> Chef may both be empty for a
    while; OrderLine.dish may not: dishes come before order lines, which
    Django's own order (the model it skipped last first) gets wrong."""
    from django.apps import apps

    from diskette.definitions import _natural_key_order, dumpable_models

    order = _labels(_natural_key_order(tuple(dumpable_models(apps.get_models()))))
    assert order.index("shop.Dish") < order.index("shop.OrderLine")
    assert order.index("demo.Author") < order.index("demo.Book")
