"""``diskette_dump`` in process, against the real test database."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from demo.models import Book, Review
from demo.state import data_state
from diskette.archive import read_manifest
from tests.conftest import archive_file, archive_members, run_command, tmpfs
from tests.databases import ON_MARIADB
from tests.projects import SandboxCopy

pytestmark = pytest.mark.django_db

SANDBOX_DATAS = [
    "data/djangocontribauth.jsonl",
    "data/djangocontribsites.jsonl",
    "data/demo.jsonl",
    "data/shop.jsonl",
    "data/everythingelse.jsonl",
]


def dump(*args: str, **options):
    return run_command("diskette_dump", *args, **options)


def test_dump_prints_the_steps_and_writes_the_archive(demo):
    output = dump()
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert output.lines[:7] == [
        "=== Starting dump ===",
        "Dumping data for application 'django.contrib.auth'",
        "Dumping data for application 'django.contrib.sites'",
        "Dumping data for application 'demo'",
        "Dumping data for application 'shop'",
        "Dumping data for application 'everything else'",
        "Appending data to the archive",
    ]
    assert output.lines[7] == "Appending storages to the archive"
    assert re.fullmatch(
        rf"Dump archive was created at: {re.escape(str(archive))} \(\d+\.\d KiB\)",
        output.lines[8],
    )
    assert output.lines[9] == f"Archive checksum (sha256): {digest}"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def test_archive_holds_data_storages_and_a_complete_manifest(demo):
    dump()
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    manifest = read_manifest(archive)
    members = archive_members(archive)
    assert manifest["datas"] == SANDBOX_DATAS
    assert manifest["storages"] == ["var/media"]
    assert manifest["format"] == 1 and manifest["version"]
    assert manifest["database"] == connection.vendor
    assert "0001_initial" in manifest["migrations"]["demo"]
    counts = {a["name"]: a["objects"] for a in manifest["applications"]}
    assert counts["everything else"] == {"demo.review": Review.objects.count()}
    assert counts["demo"]["demo.book"] == Book.objects.count() == 12
    assert counts["django.contrib.auth"]["auth.user"] == User.objects.count()
    for name, entry in manifest["members"].items():
        if "sha256" in entry:
            content = archive_file(archive, name)
            assert entry == {
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
    covers = [n for n in members if n.startswith("var/media/covers/")]
    assert len(covers) == 12
    for name in covers:
        assert archive_file(archive, name) == (demo / name).read_bytes()
    # The sandbox excludes cache/* and public/thumbnails/*.
    assert not [
        n
        for n in members
        if n.startswith(("var/media/cache/", "var/media/public/thumbnails/"))
    ]


def test_data_files_are_json_lines_that_loaddata_reads(demo, tmp_path):
    dump()
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    lines = archive_file(archive, "data/demo.jsonl").decode().splitlines()
    objects = [json.loads(line) for line in lines]
    book = next(o for o in objects if o["model"] == "demo.book")
    assert isinstance(book["fields"]["author"], list)  # natural foreign key
    assert all(isinstance(tag, list) for tag in book["fields"]["tags"])


#: Each data file of the sandbox and the models ``dumpdata`` is given for it.
SANDBOX_LABELS = {
    "data/djangocontribauth.jsonl": ["auth.Group", "auth.User"],
    "data/djangocontribsites.jsonl": ["sites.Site"],
    "data/demo.jsonl": ["demo.Author", "demo.Tag", "demo.Book"],
    "data/shop.jsonl": [
        "shop.Profile",
        "shop.Category",
        "shop.Place",
        "shop.Restaurant",
        "shop.Pizzeria",
        "shop.Shape",
        "shop.Circle",
        "shop.Square",
        "shop.ColoredSquare",
        "shop.Note",
        "shop.Coupon",
        "shop.Order",
        "shop.LedgerEntry",
        "shop.Customer",
        "shop.Chef",
        "shop.Dish",
        "shop.OrderLine",
    ],
    "data/everythingelse.jsonl": ["demo.Review"],
}


def grant_permissions() -> None:
    """Permissions on users, whose natural keys read their content type."""
    from django.contrib.auth.models import Permission

    for user, codename in zip(
        User.objects.order_by("pk")[:2], ("add_book", "change_tag"), strict=True
    ):
        user.user_permissions.add(Permission.objects.get(codename=codename))


def test_data_files_hold_what_dumpdata_writes(demo):
    """The joined and prefetched queries serialize exactly as dumpdata does,
    times aside: dumpdata cuts them to the millisecond, diskette keeps every
    microsecond (tests/test_exact_values.py)."""
    grant_permissions()
    dump()
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    milliseconds = re.compile(r'"([^"\s]*\d\d:\d\d:\d\d\.\d{3})\d{3}(Z|[+-]\d\d:\d\d)?"')
    for name, labels in SANDBOX_LABELS.items():
        out = io.StringIO()
        call_command("dumpdata", *labels, natural_foreign=True, format="jsonl", stdout=out)
        expected = [json.loads(line) for line in out.getvalue().splitlines()]
        ours = [
            json.loads(milliseconds.sub(r'"\1\2"', line))
            for line in archive_file(archive, name).decode().splitlines()
        ]
        assert ours == expected, name
        assert ours  # every file holds objects, so the comparison means something


def test_content_types_and_permissions_are_named_by_natural_key_always(demo, tmp_path):
    """Their ids come from migrate and differ between databases: a generic
    relation or a group's permissions must not point at another model."""
    from django.contrib.auth.models import Group, Permission

    Group.objects.get(name="editors").permissions.add(
        Permission.objects.get(codename="add_book")
    )
    appconf = tmp_path / "notes.json"
    appconf.write_text('[["notes", {"models": ["auth.Group", "shop.Note"]}]]')
    dump("--no-storages", destination=tmp_path, appconf=appconf)
    lines = archive_file(tmp_path / "diskette_data.tar.gz", "data/notes.jsonl").splitlines()
    objects = [json.loads(line) for line in lines]
    notes = [o["fields"] for o in objects if o["model"] == "shop.note"]
    (group,) = [o["fields"] for o in objects if o["model"] == "auth.group"]
    assert notes and all(note["content_type"][0] == "shop" for note in notes)
    assert group["permissions"] == [["add_book", "demo", "book"]]


def test_polymorphic_dumpdata_refuses_a_django_polymorphic_that_would_downcast(
    monkeypatch,
):
    """Without django-polymorphic's dumpdata guard, parent rows would be
    dumped as their subclasses and the output would not load."""
    import polymorphic.base

    monkeypatch.setattr(polymorphic.base, "check_dump", False)
    with pytest.raises(
        CommandError, match=r"would dump shop\.\w+ rows as their subclasses"
    ):
        call_command("polymorphic_dumpdata", "shop", stdout=io.StringIO())


def add_library(index: int) -> None:
    """One more author, tag, user and book with a review: a row of every kind."""
    from demo.models import Author, Tag

    user = User.objects.create_user(f"extra{index}")
    user.groups.set(User.objects.get(username="user0").groups.all())
    author = Author.objects.create(name=f"Extra Writer {index}")
    book = Book.objects.create(title=f"Extra {index}", author=author, added_by=user)
    book.tags.add(Tag.objects.create(name=f"extra-{index}"))
    Review.objects.create(book=book, reviewer=user, rating=3)


def test_dump_queries_do_not_grow_with_the_rows(demo):
    """No query per object: natural keys are joined, many-to-many prefetched."""
    from django.test.utils import CaptureQueriesContext

    grant_permissions()
    with CaptureQueriesContext(connection) as small:
        dump("--no-storages")
    for index in range(20):
        add_library(index)
    with CaptureQueriesContext(connection) as large:
        dump("--no-storages")
    assert Book.objects.count() == 32
    assert len(large.captured_queries) == len(small.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_round_trip_through_loaddata_restores_the_same_data(demo, tmp_path):
    """Read from a real snapshot transaction (not the test's), then restore."""
    before = data_state()
    dump()
    with tarfile.open(demo / "var" / "diskette_data_storages.tar.gz") as tar:
        tar.extractall(tmp_path / "out", filter="data")
    call_command("flush", interactive=False, verbosity=0)
    assert not Book.objects.exists()
    call_command(
        "loaddata", *[str(tmp_path / "out" / d) for d in SANDBOX_DATAS], verbosity=0
    )
    assert data_state() == before
    for cover in (demo / "var" / "media" / "covers").iterdir():
        restored = tmp_path / "out" / "var" / "media" / "covers" / cover.name
        assert restored.read_bytes() == cover.read_bytes()


def test_destination_option_creates_the_folder(demo, tmp_path):
    output = dump("--destination", str(tmp_path / "new" / "dumps"))
    archive = tmp_path / "new" / "dumps" / "diskette_data_storages.tar.gz"
    assert archive.exists()
    assert f"created at: {archive}" in output.stdout


def test_dump_path_defaults_to_the_current_directory(demo, settings):
    settings.DISKETTE_DUMP_PATH = None
    dump()
    assert (demo / "diskette_data_storages.tar.gz").exists()


def test_filename_option_fills_features_and_date(demo):
    dump("--filename", "snap{features}_{date}.tar.gz", "--no-storages")
    (archive,) = (demo / "var").glob("snap*")
    assert re.fullmatch(r"snap_data_\d{4}-\d\d-\d\dT\d{6}\.tar\.gz", archive.name)


def test_filename_setting_names_the_archive(demo, settings):
    settings.DISKETTE_DUMP_FILENAME = "nightly{features}.tar.gz"
    dump("--no-storages")
    assert (demo / "var" / "nightly_data.tar.gz").exists()


def test_natural_primary_leaves_primary_keys_out(demo, tmp_path):
    appconf = tmp_path / "apps.json"
    appconf.write_text(
        json.dumps(
            [
                ["keys", {"models": ["demo.Author"], "natural_primary": True}],
                ["ids", {"models": ["demo.Author"]}],
            ]
        )
    )
    dump("--appconf", str(appconf), "--no-storages")
    archive = demo / "var" / "diskette_data.tar.gz"
    keys = [json.loads(x) for x in archive_file(archive, "data/keys.jsonl").splitlines()]
    ids = [json.loads(x) for x in archive_file(archive, "data/ids.jsonl").splitlines()]
    assert len(keys) == len(ids) == 10
    assert all("pk" not in obj for obj in keys) and all("pk" in obj for obj in ids)


def test_filename_option_is_validated(demo):
    with pytest.raises(
        CommandError, match=r"^--filename: 'x\.zip' must end with '\.tar\.gz'$"
    ):
        dump("--filename", "x.zip")


def test_no_data_archives_storages_only(demo):
    dump("--no-data")
    archive = demo / "var" / "diskette_storages.tar.gz"
    manifest = read_manifest(archive)
    assert manifest["datas"] == [] and manifest["storages"] == ["var/media"]
    assert not [n for n in archive_members(archive) if n.startswith("data/")]


def test_no_storages_archives_data_only(demo):
    output = dump("--no-storages")
    archive = demo / "var" / "diskette_data.tar.gz"
    assert read_manifest(archive)["storages"] == []
    assert not [n for n in archive_members(archive) if n.startswith("var/")]
    assert "Appending storages to the archive" not in output.lines


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--no-data", "--no-storages"], "--no-storages"),
        (["--no-data", "--no-archive"], "--no-archive"),
    ],
)
def test_nothing_to_dump_is_refused(demo, options, message):
    with pytest.raises(
        CommandError, match=f"nothing to dump: --no-data leaves nothing for {message}"
    ):
        dump(*options)
    assert not list((demo / "var").glob("*.tar.gz*"))


def test_appconf_replaces_the_definitions(demo, tmp_path):
    appconf = tmp_path / "apps.json"
    appconf.write_text(json.dumps([["library", {"models": ["demo.Author", "demo.Book"]}]]))
    output = dump("--appconf", str(appconf), "--no-storages")
    assert "Dumping data for application 'library'" in output.lines
    assert read_manifest(demo / "var" / "diskette_data.tar.gz")["datas"] == [
        "data/library.jsonl"
    ]


def test_appconf_errors_name_the_file(demo, tmp_path):
    with pytest.raises(CommandError, match=r"^--appconf '.*missing\.json' cannot be read"):
        dump("--appconf", str(tmp_path / "missing.json"))
    appconf = tmp_path / "apps.json"
    appconf.write_text("[[")
    with pytest.raises(CommandError, match=r"apps\.json' cannot be read: Expecting value"):
        dump("--appconf", str(appconf))
    appconf.write_text(json.dumps([["x", {"model": "auth"}]]))
    with pytest.raises(
        CommandError, match=r"^--appconf '.*apps\.json'\[0\] 'x': unknown option 'model'"
    ):
        dump("--appconf", str(appconf))


def test_storage_option_replaces_the_setting_and_repeats(demo):
    for folder in ("uploads", "docs"):
        (demo / folder).mkdir()
        (demo / folder / "f.txt").write_text(folder)
    dump("--no-data", "--storage", "uploads", "--storage", str(demo / "docs"))
    archive = demo / "var" / "diskette_storages.tar.gz"
    assert read_manifest(archive)["storages"] == ["uploads", "docs"]
    assert archive_file(archive, "docs/f.txt") == b"docs"


def test_storages_basepath_sets_the_archived_paths(demo):
    dump("--no-data", "--storages-basepath", str(demo / "var"))
    assert read_manifest(demo / "var" / "diskette_storages.tar.gz")["storages"] == ["media"]


def test_storage_outside_the_basepath_is_refused(demo, tmp_path):
    with pytest.raises(CommandError, match="is not below the storages base path"):
        dump("--storages-basepath", str(demo / "var" / "media" / "covers"))
    assert not list((demo / "var").glob("*.tar.gz*"))


def test_missing_storage_is_refused(demo, settings):
    settings.DISKETTE_STORAGES = [demo / "nowhere"]
    with pytest.raises(CommandError, match=r"^storage '.*nowhere' does not exist$"):
        dump()


def test_storages_exclude_option_replaces_the_setting(demo):
    dump("--no-data", "--storages-exclude", "covers/*")
    members = archive_members(demo / "var" / "diskette_storages.tar.gz")
    assert not [n for n in members if n.startswith("var/media/covers/")]
    assert "var/media/cache/generated.txt" in members


def test_no_storages_excludes_keeps_every_file(demo):
    dump("--no-data", "--no-storages-excludes")
    members = archive_members(demo / "var" / "diskette_storages.tar.gz")
    assert "var/media/cache/generated.txt" in members
    assert "var/media/public/thumbnails/generated.txt" in members


def test_indent_applies_to_json_data_files(demo, tmp_path):
    appconf = tmp_path / "apps.json"
    appconf.write_text(
        json.dumps(
            [
                ["sites", {"models": "sites", "filename": "sites.json"}],
                ["tags", {"models": "demo.Tag"}],
            ]
        )
    )
    dump("--appconf", str(appconf), "--no-storages", "--indent", "2")
    archive = demo / "var" / "diskette_data.tar.gz"
    indented = archive_file(archive, "data/sites.json").decode()
    assert indented.startswith('[\n{\n  "model": "sites.site"')
    assert json.loads(indented)[0]["fields"]["domain"] == "example.com"
    lines = archive_file(archive, "data/tags.jsonl").decode().splitlines()
    assert len(lines) == 13 and all(json.loads(line) for line in lines)


def test_dump_command_option_runs_that_command(demo, tmp_path):
    appconf = tmp_path / "apps.json"
    appconf.write_text(
        json.dumps(
            [
                ["mine", {"models": "demo", "natural_foreign": True}],
                [
                    "theirs",
                    {"models": "demo", "natural_foreign": True, "dump_command": "dumpdata"},
                ],
            ]
        )
    )
    dump("--appconf", str(appconf), "--no-storages")
    archive = demo / "var" / "diskette_data.tar.gz"
    assert archive_file(archive, "data/theirs.jsonl") == archive_file(
        archive, "data/mine.jsonl"
    )
    counts = {a["name"]: a["objects"] for a in read_manifest(archive)["applications"]}
    assert counts["theirs"] == counts["mine"]


def test_no_archive_prints_dumpdata_lines_and_writes_no_archive(demo):
    output = dump("--no-archive")
    data = demo / "var" / "data"
    assert output.lines == [
        "# django.contrib.auth",
        f"dumpdata auth.Group auth.User --natural-foreign --output={data}/djangocontribauth.json",
        "# django.contrib.sites",
        f"dumpdata sites.Site --natural-foreign --output={data}/djangocontribsites.json",
        "# demo",
        f"dumpdata demo.Author demo.Tag demo.Book --natural-foreign --output={data}/demo.json",
        "# shop",
        f"dumpdata {' '.join(SANDBOX_LABELS['data/shop.jsonl'])} --natural-foreign "
        f"--output={data}/shop.json",
        "# everything else",
        f"dumpdata demo.Review --natural-foreign --output={data}/everythingelse.json",
    ]
    assert data.is_dir() and not list(data.iterdir())
    assert not list((demo / "var").glob("*.tar.gz*"))


def test_no_archive_lines_carry_every_option(demo, tmp_path):
    appconf = tmp_path / "apps.json"
    appconf.write_text(
        json.dumps(
            [
                [
                    "x",
                    {
                        "models": "sites",
                        "natural_primary": True,
                        "use_base_manager": True,
                        "filename": "x.jsonl",
                        "dump_command": "dumpdata",
                    },
                ],
            ]
        )
    )
    output = dump(
        "--appconf",
        str(appconf),
        "--no-archive",
        "--indent",
        "4",
        "--destination",
        str(tmp_path / "with space"),
    )
    assert output.lines[1] == (
        "dumpdata sites.Site --natural-primary --all --format=jsonl --indent=4 "
        f"'--output={tmp_path}/with space/data/x.jsonl'"
    )


def test_check_reports_the_plan_and_writes_nothing(demo):
    output = dump("--check")
    assert output.lines[0] == "=== Checking dump (nothing is written) ==="
    assert "Data for application 'demo' (data/demo.jsonl): 35 objects" in output.lines
    assert "  - demo.book: 12" in output.lines
    assert "Storage 'var/media': 12 files (48.0 KiB)" in output.lines  # 12 covers of 4 KiB
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    assert output.lines[-1] == f"Archive would be created at: {archive}"
    assert sorted(p.name for p in (demo / "var").iterdir()) == ["media"]


def test_check_refuses_a_bad_configuration(demo, settings):
    settings.DISKETTE_APPS = [["demo", {"models": "demo.Nope"}]]
    with pytest.raises(
        CommandError,
        match=r"^DISKETTE_APPS\[0\] 'demo': models: unknown model 'demo.Nope'$",
    ):
        dump("--check")


def test_no_checksum_skips_archive_and_member_digests(demo):
    output = dump("--no-checksum")
    assert not [line for line in output.lines if "sha256" in line]
    manifest = read_manifest(demo / "var" / "diskette_data_storages.tar.gz")
    assert all("sha256" not in entry for entry in manifest["members"].values())
    assert manifest["members"]["data/demo.jsonl"]["size"] > 0


def test_permissions_setting_applies_to_the_archive(demo, settings):
    settings.DISKETTE_DUMP_PERMISSIONS = 0o640
    dump()
    mode = (demo / "var" / "diskette_data_storages.tar.gz").stat().st_mode
    assert stat.S_IMODE(mode) == 0o640


def test_unknown_database_is_refused(demo):
    with pytest.raises(CommandError, match="^--database: unknown database alias 'other'$"):
        dump("--database", "other")


def test_skipped_links_are_reported_and_the_dump_goes_on(demo, tmp_path):
    (tmp_path / "outside.txt").write_text("secret")
    (demo / "var" / "media" / "leak.txt").symlink_to(tmp_path / "outside.txt")
    output = dump()
    assert re.search(
        r"Warning: skipped '.*leak\.txt': is a symlink pointing out", output.stderr
    )
    members = archive_members(demo / "var" / "diskette_data_storages.tar.gz")
    assert "var/media/leak.txt" not in members


# MySQL commits before DDL: the DROP cannot be rolled back with the test, so
# there the test is transactional (flushed after) and puts the table back.
@pytest.mark.django_db(transaction=ON_MARIADB)
def test_a_database_failure_names_the_definition_and_leaves_no_file(demo):
    previous = demo / "var" / "diskette_data_storages.tar.gz"
    previous.write_bytes(b"previous archive")
    with connection.cursor() as cursor:  # a real failure, mid-dump: a table is gone
        if connection.vendor == "postgresql":  # deferred FK checks would block the DROP
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(Review._meta.db_table)}")
    try:
        with pytest.raises(CommandError, match="^'everything else': cannot serialize: "):
            dump()
    finally:
        if ON_MARIADB:
            with connection.schema_editor() as editor:
                editor.create_model(Review)
    assert previous.read_bytes() == b"previous archive"
    assert sorted(p.name for p in (demo / "var").iterdir()) == [previous.name, "media"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_are_drawn_on_a_terminal_only(demo):
    terminal, plain = Terminal(), io.StringIO()
    call_command("diskette_dump", stdout=io.StringIO(), stderr=terminal)
    call_command("diskette_dump", stdout=io.StringIO(), stderr=plain)
    # One line per data file and one for the media, each redrawn in place.
    ended = [line.rsplit("\r", 1)[-1] for line in terminal.getvalue().split("\n")[:-1]]
    assert [line.split("  ")[0] for line in ended] == [
        "Dumping django.contrib.auth",
        "Dumping django.contrib.sites",
        "Dumping demo",
        "Dumping shop",
        "Dumping everything else",
        "Archiving storages",
    ]
    assert "Dumping demo  " in terminal.getvalue() and " objects  100%" in ended[2]
    assert plain.getvalue() == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux's /proc")
def test_a_destination_that_cannot_be_created_is_one_line(demo):
    with pytest.raises(
        CommandError,
        match=r"^cannot create the destination folder '/proc/x': No such file or "
        "directory; choose another destination$",
    ):
        dump("--destination", "/proc/x")


def test_a_destination_that_is_a_file_is_refused(demo):
    (demo / "var" / "taken").write_text("a file")
    with pytest.raises(
        CommandError, match=r"^destination '.*/var/taken' is not a folder; choose another"
    ):
        dump("--destination", str(demo / "var" / "taken"))


# Real manage.py processes: concurrency, a full disk, Ctrl-C.


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, seeded) -> SandboxCopy:
    """A seeded sandbox copy with 48 MiB of incompressible media.

    A dump of it takes a second or two: long enough for two dumps to overlap
    and for Ctrl-C to land in the middle, and its media outgrow the blocks
    the compressor holds, so the archive is written while media are read.
    """
    root = tmp_path_factory.mktemp("dumps") / "project"
    copy = seeded.copy(root, books=12, seed=1, server=False)  # migrated, seeded, SQLite
    copy.env["PYTHONUNBUFFERED"] = "1"  # lines arrive as printed: Ctrl-C lands mid-dump
    big = copy.root / "var" / "media" / "big"
    big.mkdir()
    for index in range(6):
        (big / f"{index}.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    return copy


def start_dump(
    copy: SandboxCopy,
    destination: Path,
    *options: str,
    preexec_fn: Callable[[], None] | None = None,
    runner: str | None = None,
) -> subprocess.Popen:
    """``manage.py diskette_dump`` in ``copy``, or ``runner`` (a ``python -c``
    script) given ``manage.py diskette_dump`` and the options as arguments."""

    def prepare() -> None:
        # A suite started in the background (`make test &`, CI runners)
        # ignores SIGINT, and so would the dump: Python then installs no
        # Ctrl-C handler. The child gets the default back, as on a terminal.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec_fn is not None:
            preexec_fn()

    python = [str(copy.python), *(["-c", runner] if runner else [])]
    return subprocess.Popen(
        [*python, "manage.py", "diskette_dump", "--destination", str(destination)]
        + list(options),
        cwd=copy.root,
        env=copy.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=prepare,
    )


@pytest.mark.subprocess
def test_two_dumps_to_one_name_both_succeed_and_leave_a_whole_archive(sandbox, tmp_path):
    dumps = [start_dump(sandbox, tmp_path) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in dumps]
    assert [process.returncode for process in dumps] == [0, 0], outputs
    claimed = [
        re.search(r"^Archive checksum \(sha256\): (\w+)$", out, re.MULTILINE)[1]
        for out, _ in outputs
    ]
    archive = tmp_path / "diskette_data_storages.tar.gz"
    assert list(tmp_path.iterdir()) == [archive]  # no temporary file left
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in claimed
    checked = sandbox.manage("diskette_load", str(archive), "--check", check=False)
    assert checked.returncode == 0, checked.stderr


def file_size_limit(size: int) -> Callable[[], None]:
    """For a child: writing past ``size`` bytes of a file fails with EFBIG.

    SIGXFSZ is ignored, so the write fails instead of killing the process.
    """

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


@contextlib.contextmanager
def full_tmpfs(folder: Path) -> Iterator[None]:
    """Mount a small tmpfs on ``folder`` and fill it: a real full disk."""
    with tmpfs(folder, "1m"):
        # Fill it up, unbuffered: no room left, and nothing to flush at close.
        with (
            open(folder / "filler", "wb", buffering=0) as filler,
            contextlib.suppress(OSError),
        ):
            while filler.write(bytes(65536)):
                pass
        yield


@pytest.fixture(params=["tmpfs", "file size limit"])
def full_disk(request, tmp_path) -> Iterator[tuple[Path, Callable | None, str]]:
    """A destination where the archive cannot be written, and the error it gets.

    A small tmpfs filled up is a real full disk, where the test may mount
    one; RLIMIT_FSIZE fails the same writes anywhere.
    """
    folder = tmp_path / "full"
    folder.mkdir()
    if request.param == "file size limit":
        yield folder, file_size_limit(0), "File too large"
        return
    with full_tmpfs(folder):
        yield folder, None, "No space left on device"


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("options", "name"),
    [((), "diskette_data_storages.tar.gz"), (("--no-storages",), "diskette_data.tar.gz")],
)
def test_a_full_disk_blames_the_archive_in_one_line(sandbox, full_disk, options, name):
    """Not the media file being read when the write failed, and no traceback."""
    folder, preexec_fn, reason = full_disk
    before = sorted(folder.iterdir())
    process = start_dump(sandbox, folder, *options, preexec_fn=preexec_fn)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert stderr == (
        f"CommandError: cannot write the archive '{folder / name}': {reason}; "
        "free some space there or choose another destination\n"
    )
    assert sorted(folder.iterdir()) == before  # no archive, no temporary file


#: Runs ``manage.py`` with its arguments, the process sending itself SIGINT
#: (Ctrl-C) as the dump announces its first data: waiting for that line in
#: the test and signalling then let a fast dump finish first on a busy machine.
CTRL_C_AT_FIRST_DATA = """
import os, runpy, signal, sys
from diskette.reporting import CommandReporter
info = CommandReporter.info
def info_then_ctrl_c(self, message):
    info(self, message)
    if message.startswith("Dumping data for application"):
        os.kill(os.getpid(), signal.SIGINT)
CommandReporter.info = info_then_ctrl_c
sys.argv = sys.argv[1:]
runpy.run_path("manage.py", run_name="__main__")
"""


@pytest.mark.subprocess
def test_ctrl_c_during_a_dump_is_one_line_and_leaves_no_file(sandbox, tmp_path):
    process = start_dump(sandbox, tmp_path, runner=CTRL_C_AT_FIRST_DATA)
    out, stderr = process.communicate(timeout=300)
    assert "Dumping data for application" in out
    assert "Dump archive was created" not in out, "the dump ended before Ctrl-C"
    assert stderr == "CommandError: interrupted; no archive was written\n"
    assert process.returncode == 130  # as a shell reports Ctrl-C
    assert list(tmp_path.iterdir()) == []


def test_a_full_temporary_folder_blames_the_data_file_in_one_line(
    demo, tmp_path, monkeypatch
):
    """Data spilled to a temporary file (over the spool budget) on a full disk."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with full_tmpfs(temporary):
        monkeypatch.setattr("tempfile.tempdir", str(temporary))
        monkeypatch.setattr("diskette.dump.SPOOL_BUDGET", 0)  # every file spills
        with pytest.raises(
            CommandError,
            match=rf"^'django.contrib.auth': cannot write its data to a temporary file "
            rf"in '{temporary}': No space left on device; free some space there or "
            "set TMPDIR to another folder$",
        ):
            dump("--no-storages")
        assert sorted(p.name for p in temporary.iterdir()) == ["filler"]
    assert sorted(p.name for p in (demo / "var").iterdir()) == ["media"]


@pytest.mark.subprocess
def test_the_temporary_file_of_a_killed_dump_is_removed_by_the_next(sandbox, tmp_path):
    """Its name is unique, so no later dump overwrites it: one removes it."""
    process = start_dump(sandbox, tmp_path)
    for line in process.stdout:
        if line.startswith("Appending storages"):
            process.kill()
            break
    process.communicate(timeout=300)
    (leftover,) = tmp_path.glob(".diskette_data_storages.tar.gz.*.part")
    an_hour_ago = leftover.stat().st_mtime - 3600
    os.utime(leftover, (an_hour_ago, an_hour_ago))
    output = sandbox.manage("diskette_dump", "--destination", str(tmp_path)).stdout
    assert f"Removed '{leftover}', left by an interrupted dump" in output.splitlines()
    assert [p.name for p in tmp_path.iterdir()] == ["diskette_data_storages.tar.gz"]


# --to-stdout: the archive down a pipe, everything else on the standard error.

#: Runs ``manage.py`` with its arguments, printing a line on the standard
#: output once the dump has begun, as a project's code might (a hook, a
#: debugging print): it must not land in the archive's bytes.
PRINT_AT_FIRST_DATA = """
import runpy, sys
from diskette.reporting import CommandReporter
info = CommandReporter.info
def info_then_print(self, message):
    info(self, message)
    if message.startswith("Dumping data for application"):
        print("a stray line from the project")
CommandReporter.info = info_then_print
sys.argv = sys.argv[1:]
runpy.run_path("manage.py", run_name="__main__")
"""


@pytest.mark.subprocess
def test_to_stdout_streams_an_archive_that_loads_and_answers_on_stderr(sandbox, tmp_path):
    """Over SSH the standard output is a pipe, block-buffered: a stray print
    must still come before the answer, which is the last line."""
    archive = tmp_path / "piped.tar.gz"
    env = {k: v for k, v in sandbox.env.items() if k != "PYTHONUNBUFFERED"}
    with open(archive, "wb") as output:
        process = subprocess.run(
            [
                str(sandbox.python),
                "-c",
                PRINT_AT_FIRST_DATA,
                "manage.py",
                "diskette_dump",
                "--to-stdout",
                "--json",
            ],
            cwd=sandbox.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    assert process.returncode == 0, process.stderr
    lines = process.stderr.splitlines()
    assert "a stray line from the project" in lines
    answer = json.loads(lines[-1])
    data = archive.read_bytes()
    assert answer["archive"] == "-"
    assert answer["filename"] == "diskette_data_storages.tar.gz"
    assert (answer["size"], answer["sha256"]) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert not list(sandbox.root.rglob("*.tar.gz*"))  # no file written there
    checked = sandbox.manage("diskette_load", str(archive), "--check", check=False)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.subprocess
def test_to_stdout_refuses_a_terminal(sandbox):
    """A binary archive is never drawn on a person's terminal."""
    import pty

    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [str(sandbox.python), "manage.py", "diskette_dump", "--to-stdout"],
            cwd=sandbox.root,
            env=sandbox.env,
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert process.returncode == 1
    assert process.stderr == (
        "CommandError: --to-stdout writes a binary archive: redirect the standard output "
        "to a file or a pipe\n"
    )


@pytest.mark.subprocess
def test_to_stdout_refuses_a_standard_error_on_the_same_file(sandbox):
    process = subprocess.run(
        [str(sandbox.python), "manage.py", "diskette_dump", "--to-stdout"],
        cwd=sandbox.root,
        env=sandbox.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    assert process.returncode == 1
    assert process.stdout == (
        b"CommandError: --to-stdout writes the archive to the standard output and "
        b"messages to the standard error, which is the same file here: redirect one "
        b"of them elsewhere\n"
    )


@pytest.mark.subprocess
def test_to_stdout_answers_a_refusal_on_the_standard_error(sandbox):
    """A script reading the archive from the standard output gets nothing
    there; the ``--json`` error is where the answer would have been."""
    process = subprocess.run(
        [
            str(sandbox.python),
            "manage.py",
            "diskette_dump",
            "--to-stdout",
            "--check",
            "--json",
        ],
        cwd=sandbox.root,
        env=sandbox.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 1
    assert process.stdout == ""
    assert json.loads(process.stderr.splitlines()[-1]) == {
        "error": "--to-stdout and --check do not go together: drop one of them"
    }


@pytest.mark.parametrize(
    ("option", "flag"),
    [
        (["--no-archive"], "--no-archive"),
        (["--publish"], "--publish"),
        (["--link-media"], "--link-media"),
        (["--check"], "--check"),
        (["--destination", "elsewhere"], "--destination"),
    ],
)
def test_to_stdout_refuses_what_needs_a_file(demo, option, flag):
    with pytest.raises(CommandError) as failed:
        dump("--to-stdout", *option)
    assert str(failed.value) == (
        f"--to-stdout and {flag} do not go together: drop one of them"
    )
