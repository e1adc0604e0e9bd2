"""Every model kind comes back exactly, batched (the default) and through loaddata, on the suite's database.

The sandbox's ``shop`` app holds what real projects have: multi-table
inheritance three levels deep and a proxy, django-polymorphic models,
generic relations, a self-referencing tree, a cycle of foreign keys (whose
natural keys refer forward), UUID, string and one-to-one primary keys, a
many-to-many through a model of its own, and JSON, binary, decimal,
duration and time values that must not change by a digit. The source is a
seeded copy; the target a freshly migrated one whose content types are
numbered otherwise, as they are between two real databases. The demo
fingerprint digests every object of both apps (``demo_fingerprint``).
"""

from __future__ import annotations

import json

import pytest

from tests.databases import ON_SERVER, server_settings_body
from tests.projects import SandboxCopy

pytestmark = pytest.mark.subprocess

ARCHIVE = "var/diskette_data_storages.tar.gz"

#: Renumbers the content types (and so the permissions) of a migrated,
#: empty project: ids from 1000 on, in reverse order of the model labels.
RENUMBER = """
from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

with transaction.atomic():
    ContentType.objects.all().delete()
    ContentType.objects.clear_cache()
    labels = sorted({(m._meta.app_label, m._meta.model_name) for m in apps.get_models()})
    for number, (app_label, model) in enumerate(reversed(labels)):
        ContentType.objects.create(id=1000 + number, app_label=app_label, model=model)
    for config in apps.get_app_configs():
        create_permissions(config, verbosity=0)
"""

#: Prints ``{"app.model": content type id}`` for the shop's models.
CONTENT_TYPES = """
import json
from django.contrib.contenttypes.models import ContentType
print(json.dumps({f"{c.app_label}.{c.model}": c.id for c in ContentType.objects.filter(app_label="shop")}))
"""

#: Rows per shop table, counted without any manager (proxies have none).
ROWS = """
import json
from django.apps import apps
from django.db import connection
counts = {}
with connection.cursor() as cursor:
    for model in apps.get_app_config("shop").get_models():
        if model._meta.proxy or model._meta.swapped:
            continue
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(model._meta.db_table)}")
        counts[model._meta.label_lower] = cursor.fetchone()[0]
print(json.dumps(counts))
"""


def _shell(copy: SandboxCopy, code: str) -> str:
    """The last line ``code`` prints (Django 5.2's shell may say more before it)."""
    lines = copy.manage("shell", "--verbosity", "0", "-c", code).stdout.splitlines()
    return lines[-1] if lines else ""


def _renumbered_target(seeded, root) -> SandboxCopy:
    target = seeded.copy(root, books=None)
    _shell(target, RENUMBER)
    return target


@pytest.fixture(scope="module")
def dumped(seeded, tmp_path_factory):
    """A seeded project's fingerprint, rows per shop table, content types and archive."""
    source = seeded.copy(tmp_path_factory.mktemp("kinds") / "source", books=6)
    source.manage("diskette_dump")
    rows = json.loads(_shell(source, ROWS))
    assert all(rows.values()), f"the seed left shop tables empty: {rows}"
    return (
        source.fingerprint(),
        rows,
        json.loads(_shell(source, CONTENT_TYPES)),
        source.root / ARCHIVE,
    )


@pytest.mark.parametrize("loaddata", [True, False], ids=["loaddata", "batched"])
def test_every_model_kind_comes_back_exactly(dumped, seeded, tmp_path, loaddata):
    fingerprint, rows, content_types, archive = dumped
    target = _renumbered_target(seeded, tmp_path / "target")
    renumbered = json.loads(_shell(target, CONTENT_TYPES))
    assert renumbered.keys() == content_types.keys()
    assert all(renumbered[label] != content_types[label] for label in content_types)

    loaded = target.manage(
        "diskette_load",
        str(archive),
        "--keep",
        "--verbosity",
        "2",
        *(["--loaddata"] if loaddata else []),
    )

    assert target.fingerprint() == fingerprint
    assert json.loads(_shell(target, ROWS)) == rows
    if not loaddata:  # what it cannot batch it loads as loaddata does, and says so
        for label in ("shop.Restaurant", "shop.Pizzeria", "shop.Circle"):
            assert (
                f"{label}: multi-table inheritance (a child row is saved on its own): "
                "loaded one object at a time"
            ) in loaded.stdout


def test_polymorphic_rows_are_dumped_as_themselves(dumped, tmp_path):
    """Each table's rows as that model's objects, ``polymorphic_ctype`` by natural key."""
    *_, archive = dumped
    import tarfile

    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("shop.jsonl"))
        extracted = tar.extractfile(member)
        assert extracted is not None
        objects = [json.loads(line) for line in extracted.read().splitlines() if line]
    shapes = [o for o in objects if o["model"] == "shop.shape"]
    circles = [o for o in objects if o["model"] == "shop.circle"]
    assert shapes and circles
    assert {o["pk"] for o in circles} <= {o["pk"] for o in shapes}
    assert all(isinstance(o["fields"]["polymorphic_ctype"], list) for o in shapes)
    notes = [o for o in objects if o["model"] == "shop.note"]
    assert notes and all(o["fields"]["content_type"][0] == "shop" for o in notes)


#: Every shape as the class django-polymorphic gives back, by name.
SHAPES = """
import json
from shop.models import Shape
print(json.dumps(sorted([s.name, type(s).__name__] for s in Shape.objects.all())))
"""


def test_the_peers_polymorphic_dump_command_works_unchanged(dumped, seeded, tmp_path):
    """diskette 0.6's documented ``"dump_command": "polymorphic_dumpdata"``.

    Every row comes back, each shape as its own class. Not every value:
    the command is ``dumpdata``, whose JSON encoder cuts microseconds (as
    docs/definitions.md says; diskette's own dump keeps them).
    """
    _, rows, _, _ = dumped
    source = seeded.copy(tmp_path / "source", books=6)
    source.use_settings(
        source.write_settings(
            "settings_peer",
            source.database
            + "for name, options in DISKETTE_APPS:\n"
            + "    if name == 'shop':\n"
            + "        options['dump_command'] = 'polymorphic_dumpdata'\n",
        )
    )
    assert "no issues" in source.manage("check").stdout
    source.manage("diskette_dump")
    target = _renumbered_target(seeded, tmp_path / "target")

    target.manage("diskette_load", str(source.root / ARCHIVE))

    assert json.loads(_shell(target, ROWS)) == rows
    assert json.loads(_shell(target, SHAPES)) == json.loads(_shell(source, SHAPES))


CUSTOM_USER = """
AUTH_USER_MODEL = "shop.Shopper"
for name, options in DISKETTE_APPS:
    if name == "django.contrib.auth":
        options["models"] = ["auth.Group", "shop.Shopper"]
    if name == "shop":
        options["excludes"] = ["shop.Shopper"]
"""


def _custom_user_project(root) -> SandboxCopy:
    copy = SandboxCopy.create(root)
    copy.database = server_settings_body() if ON_SERVER else ""
    copy.use_settings(copy.write_settings("settings_shopper", copy.database + CUSTOM_USER))
    copy.manage("diskette_reset", "--noinput")
    return copy


@pytest.mark.parametrize("loaddata", [True, False], ids=["loaddata", "batched"])
def test_a_custom_user_model_comes_back(tmp_path, loaddata):
    source = _custom_user_project(tmp_path / "source")
    source.manage("demo_seed", "--books", "4")
    assert "shop.shopper" in _shell(
        source, "from django.contrib.auth import get_user_model; print(get_user_model()._meta.label_lower)"
    )
    fingerprint = source.fingerprint()
    source.manage("diskette_dump")
    target = _custom_user_project(tmp_path / "target")

    target.manage("diskette_load", str(source.root / ARCHIVE), *(["--loaddata"] if loaddata else []))

    assert target.fingerprint() == fingerprint
