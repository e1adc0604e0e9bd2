"""The Invoke collection, through the real ``inv`` in a copy of the sandbox.

Under ``DISKETTE_TEST_DB=postgres`` or ``mariadb`` the copy's database lives
on the test server, selected only through the copy's ``invoke.yaml``
(``diskette.settings``): ``inv`` runs without any settings module in its
environment, so these tests also prove that the configuration key is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from diskette import reset
from diskette.archive import read_manifest
from diskette.tasks import restore_steps
from tests.databases import ON_MARIADB, ON_POSTGRES, ON_SERVER, server_settings_body
from tests.projects import SandboxCopy

KILLAT = Path(__file__).with_name("killat.py")

pytestmark = pytest.mark.subprocess


@pytest.fixture
def project(tmp_path: Path, seeded) -> SandboxCopy:
    """A sandbox copy with demo data, its tasks.py the one-liner users write."""
    # Reset (migrated) and seeded: the template test_remote.py's "remote" uses.
    copy = seeded.copy(tmp_path / "project", books=12, seed=1)
    (copy.root / "tasks.py").write_text("from diskette.tasks import ns\n")
    return copy


def change_everything(project: SandboxCopy) -> None:
    project.manage(
        "shell",
        "-c",
        (
            "from demo.models import Book, Tag\n"
            "Book.objects.filter(pk__in=list(Book.objects.values_list('pk', flat=True)[:4])).delete()\n"
            "Tag.objects.create(name='added-later')\n"
        ),
    )
    covers = project.root / "var" / "media" / "covers"
    (covers / "cover1.bin").write_bytes(b"edited")
    (covers / "new.bin").write_bytes(b"new")


def books(project: SandboxCopy) -> int:
    output = project.manage(
        "shell", "-c", "from demo.models import Book; print(Book.objects.count())"
    )
    return int(output.stdout.split()[-1])


def test_list_shows_the_five_tasks(project):
    listing = project.inv("--list").stdout
    for name in ("dump", "load", "apps", "reset-db", "reset-and-load"):
        assert re.search(rf"^  {name} ", listing, re.MULTILINE), name


def test_dump_then_reset_and_load_restores_data_and_media_exactly(project):
    original = project.fingerprint()
    dumped = project.inv("dump").stdout
    archive = re.search(r"^Dump archive was created at: (.+) \(", dumped, re.MULTILINE)[1]
    change_everything(project)
    assert project.fingerprint() != original

    result = project.inv("reset-and-load", archive, "--yes")

    assert project.fingerprint() == original
    assert "Safety snapshot of the current database and media: " in result.stdout
    assert not Path(archive).exists()
    (snapshot,) = (project.root / "var" / "diskette-backups").glob("*.tar.gz")
    assert snapshot.name.startswith("before-reset_")


def test_the_safety_snapshot_links_the_media_and_puts_them_back(project):
    """Media are hard-linked beside the snapshot, not archived, and come back."""
    dumped = project.inv("dump").stdout
    archive = re.search(r"^Dump archive was created at: (.+) \(", dumped, re.MULTILINE)[1]
    change_everything(project)
    changed = project.fingerprint()
    media = project.root / "var" / "media"
    added = (media / "covers" / "new.bin").stat()

    project.inv("reset-and-load", archive, "--yes")

    backups = project.root / "var" / "diskette-backups"
    (snapshot,) = backups.glob("*.tar.gz")
    sidecar = backups / snapshot.name.replace(".tar.gz", ".media")
    linked = sidecar / "var" / "media" / "covers" / "new.bin"
    assert (linked.stat().st_ino, linked.stat().st_dev) == (added.st_ino, added.st_dev)
    manifest = read_manifest(snapshot)
    assert manifest["delta"]["sidecar"] is True
    archived = [n for n, m in manifest["members"].items() if "size" in m]
    assert not [n for n in archived if n.startswith("var/media/")]  # folders only
    assert "var/media/covers/new.bin" in manifest["delta"]["kept"]
    assert not (media / "covers" / "new.bin").exists()  # the archive's media are in place

    for step in restore_steps(str(snapshot), force=False):
        project.manage(*step)
    assert project.fingerprint() == changed


def test_load_and_apps_run_their_commands(project, tmp_path):
    archive = project.root / "var" / "diskette_data.tar.gz"
    project.inv("dump", "--no-storages")
    project.inv("reset-db", "--yes")
    project.inv("load", str(archive), "--keep")
    assert books(project) == 12 and archive.exists()
    assert '"demo"' in project.inv("apps").stdout


def test_reset_db_empties_the_database_and_migrates(project):
    result = project.inv("reset-db", "--yes")
    assert re.search(
        r"^Reset (sqlite|postgresql|mysql) database .*: ", result.stdout, re.MULTILINE
    )
    assert books(project) == 0
    migrations = project.manage("showmigrations", "demo").stdout
    assert "[X] 0001_initial" in migrations


def test_a_dry_run_says_what_would_change_and_changes_nothing(project):
    dumped = project.inv("dump").stdout
    archive = re.search(r"^Dump archive was created at: (.+) \(", dumped, re.MULTILINE)[1]
    change_everything(project)
    before = project.fingerprint()

    answer = json.loads(
        project.inv("reset-and-load", archive, "--dry-run", "--json").stdout
    )
    shown = project.inv("reset-and-load", archive, "--dry-run")  # no --yes: nothing to ask

    assert project.fingerprint() == before
    assert Path(archive).exists()  # a local archive stays
    assert not (project.root / "var" / "diskette-backups").exists()  # no safety snapshot
    assert answer["dry_run"] is True
    rows = {m["model"]: m for m in answer["plan"]["models"]}
    assert rows["demo.book"]["after"] >= 1
    assert "Dry run: nothing was changed." in shown.stdout
    assert f"demo.book: {rows['demo.book']['now']} rows now" in shown.stdout

    project.inv("reset-and-load", archive, "--yes", "--no-backup")  # what the plan said
    counted = project.manage(
        "shell",
        "-c",
        "import json; from django.apps import apps; print(json.dumps({label: "
        f"apps.get_model(label)._base_manager.count() for label in {sorted(rows)!r}}}))",
    )
    last = counted.stdout.strip().splitlines()[-1]  # 5.2's shell may say more first
    assert json.loads(last) == {label: m["after"] for label, m in rows.items()}


@pytest.mark.parametrize("task", [["reset-db"], ["reset-and-load", "var/x.tar.gz"]])
def test_no_terminal_and_no_yes_refuses_and_changes_nothing(project, task):
    if task[0] == "reset-and-load":
        project.inv("dump", "--filename", "x.tar.gz")
    before = project.fingerprint()
    result = project.inv(*task, check=False)
    assert result.returncode == 1
    assert "no terminal to ask on; pass --yes to confirm from a script" in result.stderr
    assert project.fingerprint() == before


def test_debug_false_refuses_unless_forced(project):
    project.use_settings(
        project.write_settings("settings_prod", project.database + "DEBUG = False\n")
    )
    before = project.fingerprint()
    refused = project.inv("reset-db", "--yes", check=False)
    assert refused.returncode == 1
    assert (
        "DEBUG is False, so" in refused.stderr and "refusing to reset it" in refused.stderr
    )
    assert project.fingerprint() == before
    project.inv("reset-db", "--yes", "--force")
    assert books(project) == 0


def incomplete_archive(project: SandboxCopy, tmp_path: Path) -> Path:
    """An archive that verifies but cannot load: books without their authors."""
    appconf = tmp_path / "books-only.json"
    appconf.write_text('[["books", {"models": ["demo.Book"], "natural_foreign": true}]]')
    project.manage(
        "diskette_dump", "--appconf", str(appconf), "--destination", str(tmp_path)
    )
    return tmp_path / "diskette_data_storages.tar.gz"


def test_a_failed_load_puts_the_safety_snapshot_back_itself(project, tmp_path):
    original = project.fingerprint()
    incomplete = incomplete_archive(project, tmp_path)

    failed = project.inv("reset-and-load", str(incomplete), "--yes", check=False)

    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert re.match(
        rf"loading {re.escape(str(incomplete))} failed: data 'data/books.jsonl' "
        r"(line \d+ )?could not be loaded: .*; your data and media were put back from the safety "
        r"snapshot .*/var/diskette-backups/before-reset_[^/]+\.tar\.gz$",
        message,
    )
    assert project.fingerprint() == original
    snapshot = Path(message.rsplit(" ", 1)[1])
    assert snapshot.exists()  # kept: it is the only copy of what was there


def test_a_failing_hook_rolls_back_and_the_safety_snapshot_comes_back_without_it(
    project,
):
    dumped = project.inv("dump").stdout
    archive = re.search(r"^Dump archive was created at: (.+) \(", dumped, re.MULTILINE)[1]
    change_everything(project)
    before = project.fingerprint()
    (project.root / "project" / "broken.py").write_text(
        "def hook(loaded):\n    raise RuntimeError('the hook is broken')\n"
    )
    project.use_settings(
        project.write_settings(
            "settings_hooks",
            project.database + 'DISKETTE_AFTER_LOAD = ["project.broken.hook"]\n',
        )
    )

    failed = project.inv("reset-and-load", archive, "--yes", check=False)

    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert (
        "after-load hook 'project.broken.hook' failed (RuntimeError: the hook is broken)"
        in (message)
    )
    assert "your data and media were put back from the safety snapshot" in message
    assert project.fingerprint() == before


def test_a_failed_load_without_a_snapshot_says_the_database_is_empty(project, tmp_path):
    incomplete = incomplete_archive(project, tmp_path)
    failed = project.inv(
        "reset-and-load", str(incomplete), "--yes", "--no-backup", check=False
    )
    assert failed.returncode == 1
    assert (
        failed.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "the database is now empty (no safety snapshot was taken) and the media unchanged"
        )
    )
    assert books(project) == 0


def test_failed_retries_never_push_out_the_snapshot_of_the_real_data(
    project, tmp_path, seeded
):
    """Each failure puts the data back, and pruning waits for a success."""
    original = project.fingerprint()
    incomplete = incomplete_archive(project, tmp_path)
    keep_two = {"INVOKE_DISKETTE_BACKUP_KEEP": "2"}
    for _ in range(3):  # one more than kept: a prune would show
        failed = project.inv(
            "reset-and-load", str(incomplete), "--yes", env=keep_two, check=False
        )
        assert failed.returncode == 1
        assert project.fingerprint() == original
    backups = project.root / "var" / "diskette-backups"
    assert len(list(backups.glob("*.tar.gz"))) == 3  # nothing pruned after a failure
    for snapshot in sorted(backups.glob("*.tar.gz")):
        copy = seeded.copy(tmp_path / f"check-{snapshot.name}")  # migrated, no data
        copy.manage("diskette_load", str(snapshot), "--everything", "--keep")
        assert copy.fingerprint() == original  # every one holds the real data


def test_an_empty_database_gets_no_safety_snapshot(project, tmp_path):
    project.inv("dump", "--filename", "full.tar.gz")
    project.inv("reset-db", "--yes")
    result = project.inv("reset-and-load", "var/full.tar.gz", "--yes")
    assert "holds no data yet: no safety snapshot needed" in result.stdout
    assert not (project.root / "var" / "diskette-backups").exists()


def test_an_archive_url_is_downloaded_verified_and_loaded(project, tmp_path):
    """One command downloads, verifies and loads the URL, then removes the file."""
    expected = project.fingerprint()
    project.inv("dump", "--filename", "served.tar.gz")
    www = tmp_path / "www"
    www.mkdir()
    (project.root / "var" / "served.tar.gz").rename(www / "served.tar.gz")
    change_everything(project)
    with serve(www) as url:
        result = project.inv("reset-and-load", f"{url}/served.tar.gz", "--yes", check=False)
    assert result.returncode == 0, result.stderr
    assert project.fingerprint() == expected
    assert not (project.root / "served.tar.gz").exists()  # loaded, then removed


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving ``folder``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_bad_archive_is_refused_before_anything_is_dropped(project, tmp_path):
    before = project.fingerprint()
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not an archive")
    result = project.inv("reset-and-load", str(broken), "--yes", check=False)
    assert result.returncode == 1
    assert "broken.tar.gz cannot be loaded: " in result.stderr
    assert project.fingerprint() == before
    # The snapshot taken first is of what is still there: not kept.
    assert not (project.root / "var" / "diskette-backups").exists()


def truncated(project: SandboxCopy, tmp_path: Path) -> Path:
    """A real archive cut short: it fails only once most of it was read."""
    project.manage("diskette_dump", "--destination", str(tmp_path))
    archive = tmp_path / "diskette_data_storages.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-2000])
    return archive


def test_load_reset_replaces_the_database_once_the_archive_is_verified(project, tmp_path):
    original = project.fingerprint()
    project.manage("diskette_dump", "--destination", str(tmp_path))
    change_everything(project)

    loaded = project.manage(
        "diskette_load",
        str(tmp_path / "diskette_data_storages.tar.gz"),
        "--reset",
        "--noinput",
        "--json",
    )

    answer = json.loads(loaded.stdout)
    assert project.fingerprint() == original
    assert "migrations differ" not in loaded.stderr  # the files say what the reset applies
    assert answer["reset"] == (
        "dropped and created the database"
        if ON_SERVER
        else "replaced the database file by a new one"  # a spare migrated meanwhile
    )
    assert re.match(r"(sqlite|postgresql|mysql) database '", answer["database"])
    assert spares(project) == []


def spares(project: SandboxCopy) -> list[str]:
    """The spare SQLite databases beside the project's (``reset.Spare``)."""
    return sorted(p.name for p in (project.root / "var").glob("*.diskette-spare-*"))


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_load_reset_swaps_in_a_spare_with_the_mode_of_the_database(project, tmp_path):
    """The spare, migrated while the archive came, replaces the database
    file: a web server reading it as another user still can."""
    original = project.fingerprint()
    project.manage("diskette_dump", "--destination", str(tmp_path))
    change_everything(project)
    database = project.root / "var" / "db.sqlite3"
    database.chmod(0o640)
    project.env["XDG_CACHE_HOME"] = str(tmp_path / "cache")

    # Migrated, then a copy of the database the first migrated (diskette.migrated).
    for _ in range(2):
        inode = database.stat().st_ino
        project.manage(
            "diskette_load",
            str(tmp_path / "diskette_data_storages.tar.gz"),
            "--reset",
            "--keep",
            "--noinput",
        )

        assert project.fingerprint() == original
        assert database.stat().st_ino != inode  # another file: the spare
        assert stat.S_IMODE(database.stat().st_mode) == 0o640
        assert spares(project) == []
        change_everything(project)


def with_spare(change: str) -> str:
    """A script running manage.py (its arguments) with ``change`` made to
    ``diskette.reset`` (imported as ``reset``) first. The spare migrates:
    no copy of an earlier migration (``diskette.migrated``) stands for it."""
    return (
        "import os, sys\n"
        "sys.path.insert(0, os.getcwd())\n"
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "settings.DISKETTE_MIGRATION_CACHE = False\n"
        "from diskette import reset\n"
        f"{change}\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv[1:])\n"
    )


#: The spare database's connection fails.
SPARE_FAILS = with_spare(
    "def broken(*args, **kwargs): raise RuntimeError('no backend for the spare')\n"
    "reset.load_backend = broken"
)
#: A file ``spare-made`` is written when a spare is made.
SPARE_TOLD = with_spare(
    "made = reset.Spare.__init__\n"
    "def told(self, *args): open('spare-made', 'w').close(); made(self, *args)\n"
    "reset.Spare.__init__ = told"
)


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_a_spare_that_cannot_be_made_leaves_the_reset_to_migrate(project, tmp_path):
    original = project.fingerprint()
    project.manage("diskette_dump", "--destination", str(tmp_path))
    change_everything(project)
    archive = str(tmp_path / "diskette_data_storages.tar.gz")

    loaded = project.run(
        sys.executable,
        "-c",
        SPARE_FAILS,
        *("manage.py", "diskette_load", archive, "--reset", "--noinput", "--json"),
    )

    assert json.loads(loaded.stdout)["reset"] == "deleted the database file"
    assert "Traceback" not in loaded.stderr
    assert project.fingerprint() == original
    assert spares(project) == []


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_a_refused_load_makes_no_spare_database(project, tmp_path):
    """Production (DEBUG False) refuses the load before a spare is made:
    nothing is written beside its database, no migration of it runs."""
    project.manage("diskette_dump", "--destination", str(tmp_path))
    project.use_settings(project.write_settings("settings_prod", "DEBUG = False\n"))
    database = project.root / "var" / "db.sqlite3"
    before = database.read_bytes()

    archive = str(tmp_path / "diskette_data_storages.tar.gz")
    load = ("manage.py", "diskette_load", archive, "--reset", "--noinput")

    refused = project.run(sys.executable, "-c", SPARE_TOLD, *load, check=False)

    assert refused.returncode == 1
    assert "DEBUG is False" in refused.stderr
    assert not (project.root / "spare-made").exists()
    assert spares(project) == []
    assert database.read_bytes() == before
    # The same load where it is allowed does make one: the check above can fail.
    project.use_settings("project.settings")
    project.run(sys.executable, "-c", SPARE_TOLD, *load)
    assert (project.root / "spare-made").exists()


#: Makes a spare whose migration never ends, drops it, and prints how long
#: that took, whether its file is left, and whether its thread still runs.
SPARE_DROPPED = with_spare(
    "import time\n"
    "from django.db import connections\n"
    "def endless(*args, **kwargs):\n"
    "    while True: connections['default'].cursor().execute('SELECT 1')\n"
    "reset.call_command = endless\n"
    "spare = reset.Spare('default')\n"
    "time.sleep(0.5)\n"
    "started = time.monotonic()\n"
    "spare.drop()\n"
    "print(time.monotonic() - started, spare.path.exists(), spare.thread.is_alive())\n"
    "sys.exit(0)"
)
#: Makes a spare that migrates but leaves a journal beside it, and prints
#: whether it was put in place, and whether it or its journal is left.
SPARE_UNCLEAN = with_spare(
    "import os\n"
    "from django.db import connections\n"
    "migrate = reset.call_command\n"
    "def leaves_a_journal(*args, **kwargs):\n"
    "    migrate(*args, **kwargs)\n"
    "    open(connections['default'].settings_dict['NAME'] + '-journal', 'w').close()\n"
    "reset.call_command = leaves_a_journal\n"
    "spare = reset.Spare('default')\n"
    "print(spare.put_in_place(), spare.path.exists(),"
    " os.path.exists(f'{spare.path}-journal'))\n"
    "sys.exit(0)"
)


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_a_dropped_spare_stops_its_migration_and_leaves_nothing(project):
    """A load that fails while its spare migrates does not wait for the
    migration (a large project's takes long): it stops at its next query."""
    result = project.run(sys.executable, "-c", SPARE_DROPPED, "manage.py")

    elapsed, left, running = result.stdout.split()
    assert float(elapsed) < 5  # not the 10 s a stuck thread is given
    assert (left, running) == ("False", "False")
    assert spares(project) == []


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_a_spare_not_closed_cleanly_is_not_put_in_place(project):
    """A journal left beside a migrated spare may hold part of it: the spare
    is dropped, the database stays, and the reset migrates as before."""
    database = project.root / "var" / "db.sqlite3"
    before = database.read_bytes()

    result = project.run(sys.executable, "-c", SPARE_UNCLEAN, "manage.py")

    assert result.stdout.split() == ["False", "False", "False"]
    assert database.read_bytes() == before
    assert spares(project) == []


def test_the_sweep_removes_only_what_no_load_holds(tmp_path):
    """A spare a running load holds (locked) stays, with its companions; an
    unlocked one goes with its journal; a journal whose spare is gone goes."""
    database = tmp_path / "db.sqlite3"
    live, stale = (tmp_path / f"db.sqlite3{reset.SPARE_INFIX}{n}" for n in ("live", "old"))
    names = [live, Path(f"{live}-wal"), stale, Path(f"{stale}-journal")]
    orphan = Path(f"{tmp_path}/db.sqlite3{reset.SPARE_INFIX}gone-journal")
    for path in (*names, orphan):
        path.write_bytes(b"x")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        reset.sweep_spares(database)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in names[:2])


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_a_spare_left_by_a_killed_load_is_removed_by_the_next(project, tmp_path):
    """``kill -9`` once the spare is migrated, before the reset: the
    database is as it was, and the next load removes the spare left."""
    project.manage("diskette_dump", "--destination", str(tmp_path))
    change_everything(project)
    database = project.root / "var" / "db.sqlite3"
    before = database.read_bytes()
    archive = str(tmp_path / "diskette_data_storages.tar.gz")
    load = ("manage.py", "diskette_load", archive, "--reset", "--noinput")

    killed = project.run(sys.executable, str(KILLAT), "spare-migrated", *load, check=False)

    assert killed.returncode == -9, killed.stderr
    assert len(spares(project)) == 1
    assert database.read_bytes() == before
    project.manage(*load[1:])
    assert spares(project) == []


def kept_copies(project: SandboxCopy) -> list[Path]:
    """The empty migrated databases kept for ``project`` (``diskette.migrated``),
    in a cache folder of its own."""
    folder = Path(project.env["XDG_CACHE_HOME"]) / "diskette" / "migrated"
    return sorted(folder.glob("*.sqlite3"))


def mark(database: Path) -> None:
    """Add a table to an SQLite ``database``: ``marked`` tells a copy of it."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE diskette_test_mark (id integer)")
        connection.commit()


def marked(database: Path) -> bool:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        found = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'diskette_test_mark'"
        )
        return found.fetchone() == (1,)


@pytest.fixture
def cached(project: SandboxCopy, tmp_path: Path) -> tuple[SandboxCopy, list[str]]:
    """``project`` with a cache folder of its own, and the ``diskette_load
    --reset`` of an archive of its data and media."""
    project.env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    project.manage("diskette_dump", "--destination", str(tmp_path))
    archive = str(tmp_path / "diskette_data_storages.tar.gz")
    return project, ["diskette_load", archive, "--reset", "--keep", "--noinput", "--json"]


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_a_reset_copies_the_database_the_last_migrate_made(cached):
    """The first load migrates its spare and keeps a private copy; the next
    is that copy, until a migration changes: then it migrates again."""
    project, load = cached
    original = project.fingerprint()
    database = project.root / "var" / "db.sqlite3"
    project.manage(*load)
    [copy] = kept_copies(project)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    mark(copy)

    change_everything(project)
    project.manage(*load)
    assert marked(database)  # the copy, not a migration
    assert project.fingerprint() == original

    migration = project.root / "shop" / "migrations" / "0003_customer.py"
    migration.write_text(migration.read_text() + "# edited\n")
    change_everything(project)
    answer = json.loads(project.manage(*load).stdout)
    assert answer["reset"] == "replaced the database file by a new one"
    assert not marked(database)
    assert project.fingerprint() == original
    assert len(kept_copies(project)) == 2  # the other branch's stays, for a switch back
    assert spares(project) == []


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_a_migration_running_a_lambda_still_gets_a_copy(cached):
    """A hand-written ``RunPython(lambda ...)`` cannot be written out as
    makemigrations would: its file stands for it in the copy's name."""
    project, load = cached
    (project.root / "shop" / "migrations" / "0004_by_hand.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('shop', '0003_customer')]\n"
        "    operations = [migrations.RunPython(lambda apps, editor: None)]\n"
    )
    project.manage(*load)
    [copy] = kept_copies(project)
    mark(copy)

    project.manage(*load)

    assert marked(project.root / "var" / "db.sqlite3")


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
@pytest.mark.parametrize(
    "damage",
    ["garbage", "others may write it", "a migration less", "a symbolic link", "a FIFO"],
)
def test_a_copy_that_is_not_sound_is_migrated_again(cached, damage):
    """A damaged copy, one another user could have written, one that does
    not record every migration, or no regular file, is not used (and does
    not hang the load): the spare migrates, and its copy replaces it."""
    project, load = cached
    original = project.fingerprint()
    project.manage(*load)
    [copy] = kept_copies(project)
    mark(copy)
    if damage == "garbage":
        copy.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    elif damage == "others may write it":
        copy.chmod(0o622)
    elif damage == "a symbolic link":
        copy.rename(copy.with_name("elsewhere"))
        copy.symlink_to(copy.with_name("elsewhere"))
    elif damage == "a FIFO":
        copy.unlink()
        os.mkfifo(copy, 0o600)
    else:
        with contextlib.closing(sqlite3.connect(copy)) as connection:
            connection.execute("DELETE FROM django_migrations WHERE app = 'shop'")
            connection.commit()

    change_everything(project)
    loaded = project.manage(*load)

    assert "Traceback" not in loaded.stderr
    assert not marked(project.root / "var" / "db.sqlite3")
    assert project.fingerprint() == original
    assert kept_copies(project) == [copy] and not marked(copy)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert spares(project) == []


@pytest.mark.skipif(ON_SERVER, reason="a spare database is an SQLite file")
def test_the_migration_cache_can_be_turned_off(cached):
    """Off, a kept copy is not used, and none is kept."""
    project, load = cached
    project.manage(*load)
    [copy] = kept_copies(project)
    mark(copy)
    project.use_settings(
        project.write_settings("settings_nocache", "DISKETTE_MIGRATION_CACHE = False\n")
    )

    project.manage(*load)

    assert not marked(project.root / "var" / "db.sqlite3")
    assert kept_copies(project) == [copy] and marked(copy)


def test_load_reset_drops_nothing_when_the_archive_does_not_verify(project, tmp_path):
    broken = truncated(project, tmp_path)
    change_everything(project)
    before = project.fingerprint()

    failed = project.manage(
        "diskette_load", str(broken), "--reset", "--noinput", "--json", check=False
    )

    assert failed.returncode == 1
    answer = json.loads(failed.stdout)
    assert answer["dropped"] is False
    assert answer["reset"] is None and answer["database"] is None
    assert "was reset" not in answer["error"]
    assert project.fingerprint() == before
    assert spares(project) == []


def test_load_reset_that_fails_after_the_reset_says_the_database_is_empty(
    project, tmp_path
):
    incomplete = incomplete_archive(project, tmp_path)

    failed = project.manage(
        "diskette_load", str(incomplete), "--reset", "--noinput", check=False
    )
    answered = project.manage(
        "diskette_load", str(incomplete), "--reset", "--noinput", "--json", check=False
    )

    assert failed.returncode == 1
    assert re.search(
        r"^CommandError: data 'data/books.jsonl' (line \d+ )?could not be loaded: .*; "
        r"(sqlite|postgresql|mysql) database '.*'( on \S+)? was reset "
        r"and is empty, the media unchanged$",
        failed.stderr.strip().splitlines()[-1],
    )
    answer = json.loads(answered.stdout)
    assert answer["dropped"] is True and answer["reset"]
    assert "was reset" not in answer["error"]  # the keys say it
    assert books(project) == 0


def test_load_reset_strict_refuses_other_migrations_before_dropping(project, tmp_path):
    """The archive's migrations are compared with those the reset will
    apply, read from the project's files, while the database is still there."""
    project.manage(
        "shell",
        "-c",
        "from django.db.migrations.recorder import MigrationRecorder; "
        "from django.db import connection; "
        "MigrationRecorder(connection).record_applied('demo', '0002_elsewhere')",
    )
    project.manage("diskette_dump", "--destination", str(tmp_path))
    before = project.fingerprint()
    archive = str(tmp_path / "diskette_data_storages.tar.gz")

    failed = project.manage(
        "diskette_load", archive, "--reset", "--strict", "--noinput", "--json", check=False
    )

    assert failed.returncode == 1
    answer = json.loads(failed.stdout)
    assert answer["dropped"] is False
    assert answer["error"] == (
        "applied migrations differ between the archive and this database for: demo "
        "(refused with --strict)"
    )
    assert project.fingerprint() == before
    warned = project.manage("diskette_load", archive, "--reset", "--noinput")
    assert "applied migrations differ between the archive and this database for: demo" in (
        warned.stderr
    )
    assert books(project) == 12


def add_failing_migration(project: SandboxCopy) -> None:
    """A migration of the demo app that fails while ``MIGRATION_FAILS`` is set."""
    (project.root / "demo" / "migrations" / "0002_fails.py").write_text(
        "import os\n"
        "from django.db import migrations\n\n\n"
        "def run(apps, schema_editor):\n"
        "    if os.environ.get('MIGRATION_FAILS'):\n"
        "        raise RuntimeError('this migration fails')\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('demo', '0001_initial')]\n"
        "    operations = [migrations.RunPython(run, migrations.RunPython.noop)]\n"
    )
    project.manage("migrate", "demo")


def test_a_reset_that_fails_halfway_keeps_and_offers_the_safety_snapshot(project, tmp_path):
    """The database is gone once the reset began: the snapshot is never
    dropped then, and when putting it back fails too, the way to do it by
    hand is printed, and works."""
    add_failing_migration(project)
    project.manage("diskette_dump", "--destination", str(tmp_path))
    change_everything(project)
    changed = project.fingerprint()
    archive = str(tmp_path / "diskette_data_storages.tar.gz")

    failed = project.inv(
        "reset-and-load", archive, "--yes", env={"MIGRATION_FAILS": "1"}, check=False
    )

    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith(
        f"loading {archive} failed: RuntimeError: this migration fails (--traceback "
        "shows where); putting the safety snapshot back failed too ("
    )
    by_hand = message.split(", put them back with: ")[1]
    (snapshot,) = (project.root / "var" / "diskette-backups").glob("*.tar.gz")
    assert str(snapshot) in by_hand
    assert books(project) == 0
    subprocess.run(by_hand, shell=True, check=True, env=project.env, cwd=project.root)
    assert project.fingerprint() == changed


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--check",), "--reset empties the database, which --check and --plan"),
        (("--plan",), "--reset empties the database, which --check and --plan"),
        (("--overwrite",), "--reset leaves no row for --overwrite to overwrite"),
        (("--json",), "--json is for scripts, which cannot answer the question"),
        ((), "no terminal to ask for confirmation on: pass --noinput"),
    ],
)
def test_load_reset_refusals_change_nothing(project, tmp_path, options, message):
    project.manage("diskette_dump", "--destination", str(tmp_path))
    change_everything(project)
    before = project.fingerprint()
    archive = str(tmp_path / "diskette_data_storages.tar.gz")

    failed = project.manage("diskette_load", archive, "--reset", *options, check=False)

    assert failed.returncode == 1
    assert message in (failed.stdout + failed.stderr)
    assert project.fingerprint() == before


def test_only_the_last_snapshots_are_kept(project):
    project.inv("dump", "--filename", "a.tar.gz")
    keep_two = {"INVOKE_DISKETTE_BACKUP_KEEP": "2"}
    project.inv("dump", "--filename", "b.tar.gz")
    archive = project.root / "var" / "b.tar.gz"
    kept = archive.with_name("b-kept.tar.gz")
    shutil.copyfile(archive, kept)
    for _ in range(3):  # within a second or two: names must not collide
        shutil.copyfile(kept, archive)  # each load removes the archive it loaded
        project.inv("reset-and-load", "var/b.tar.gz", "--yes", env=keep_two)
    backups = project.root / "var" / "diskette-backups"

    def pruned() -> bool:  # the removal goes on as the task ends
        archives = sorted(p.name for p in backups.glob("*.tar.gz"))
        # Each with its media, and no other media left behind.
        return len(archives) == 2 and sorted(p.name for p in backups.iterdir()) == sorted(
            archives + [a.replace(".tar.gz", ".media") for a in archives]
        )

    deadline = time.monotonic() + 60
    while not pruned() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pruned(), sorted(p.name for p in backups.iterdir())


def test_manage_and_python_come_from_the_configuration(project, tmp_path):
    log = tmp_path / "python.log"
    wrapper = tmp_path / "python"
    wrapper.write_text(
        f'#!/bin/sh\necho "$@" >> {shlex.quote(str(log))}\nexec {sys.executable} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    (project.root / "tasks.py").rename(tmp_path / "tasks.py")
    config = {
        "INVOKE_DISKETTE_MANAGE": "project/manage.py",
        "INVOKE_DISKETTE_PYTHON": str(wrapper),
    }
    if ON_SERVER:
        config["INVOKE_DISKETTE_SETTINGS"] = project.settings
    result = project.inv("apps", env=config, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    # Also run by that python: the check that the settings module exists.
    assert "project/manage.py diskette_apps" in [
        " ".join(line.split()[:2]) for line in log.read_text().splitlines()
    ]


@pytest.mark.skipif(not ON_POSTGRES, reason="runs in the PostgreSQL pass of `make test`")
def test_postgres_role_that_cannot_create_databases_gets_its_schema_reset(tmp_path):
    import psycopg

    from tests.postgres import postgres_settings

    admin = postgres_settings()
    with psycopg.connect(
        host=admin["HOST"],
        port=admin["PORT"],
        user=admin["USER"],
        dbname="postgres",
        autocommit=True,
    ) as connection:
        connection.execute("DROP DATABASE IF EXISTS limited_db")
        connection.execute("DROP ROLE IF EXISTS limited")
        connection.execute("CREATE ROLE limited LOGIN NOCREATEDB")
        connection.execute("CREATE DATABASE limited_db OWNER limited")
    copy = SandboxCopy.create(tmp_path / "project")
    database = {**admin, "NAME": "limited_db", "USER": "limited"}
    copy.use_settings(
        copy.write_settings(
            "settings_limited", f"DATABASES = {{'default': {database!r}}}\n"
        )
    )
    copy.manage("migrate", "-v0")
    copy.manage("demo_seed", "--books", "3")

    result = copy.manage("diskette_reset", "--noinput")

    assert (
        "dropped and created schema 'public' (the role may not create databases)"
        in result.stdout
    )
    assert books(copy) == 0
    assert "[X] 0001_initial" in copy.manage("showmigrations", "demo").stdout


@pytest.mark.skipif(not ON_MARIADB, reason="runs in the MariaDB pass of `make test`")
def test_mysql_user_that_cannot_create_databases_gets_its_tables_dropped(tmp_path):
    """A user with every privilege on its database but CREATE, which it has
    on each of the tables migrate makes: DROP DATABASE would succeed and the
    CREATE DATABASE after it fail, so the reset must drop the tables."""
    from tests.mariadb import admin_cursor, mariadb_settings

    copy = SandboxCopy.create(tmp_path / "project")
    with admin_cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS limited_db")
        cursor.execute("DROP USER IF EXISTS 'limited'@'127.0.0.1'")
        cursor.execute(
            "CREATE DATABASE limited_db CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )
        cursor.execute("CREATE USER 'limited'@'127.0.0.1' IDENTIFIED BY 'limited'")
    copy.use_settings(
        copy.write_settings("settings_admin", server_settings_body("limited_db"))
    )
    copy.manage("migrate", "-v0")  # by the admin: the tables the user may create again
    with admin_cursor() as cursor:
        cursor.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE, DROP, ALTER, INDEX, REFERENCES "
            "ON limited_db.* TO 'limited'@'127.0.0.1'"
        )
        cursor.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'limited_db'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f"GRANT CREATE ON limited_db.`{table}` TO 'limited'@'127.0.0.1'")
        # A name that closes Django's quoting would run its own SQL if not escaped.
        cursor.execute(
            "CREATE TABLE limited_db.`x``; DROP DATABASE limited_db; --` (id int)"
        )
    database = {
        **mariadb_settings(),
        "NAME": "limited_db",
        "USER": "limited",
        "PASSWORD": "limited",
    }
    body = f"DATABASES = {{'default': {database!r}}}\n"
    copy.use_settings(copy.write_settings("settings_limited", body))
    copy.manage("demo_seed", "--books", "3")

    result = copy.manage("diskette_reset", "--noinput")

    assert (
        "dropped every table and view in the database (the user may not create databases)"
        in result.stdout
    )
    assert books(copy) == 0
    assert "[X] 0001_initial" in copy.manage("showmigrations", "demo").stdout
    assert mysql_database_defaults("limited_db") == ("utf8mb4", "utf8mb4_bin")
    with admin_cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = 'limited_db' AND TABLE_NAME LIKE 'x%%'"
        )
        assert cursor.fetchone() == (0,)  # dropped as the table it is


@pytest.mark.skipif(not ON_MARIADB, reason="runs in the MariaDB pass of `make test`")
def test_mysql_reset_keeps_charset_and_collation_and_ends_other_sessions(tmp_path):
    import MySQLdb

    from tests.mariadb import admin_cursor, mariadb_settings

    with admin_cursor() as cursor:  # not the server's utf8mb4_unicode_ci
        cursor.execute("DROP DATABASE IF EXISTS collated_db")
        cursor.execute(
            "CREATE DATABASE collated_db CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )
    copy = SandboxCopy.create(tmp_path / "project")
    copy.use_settings(
        copy.write_settings("settings_db", server_settings_body("collated_db"))
    )
    copy.manage("migrate", "-v0")
    copy.manage("demo_seed", "--books", "3")
    admin = mariadb_settings()
    # A session in a transaction holds a lock DROP DATABASE would wait on.
    holder = MySQLdb.connect(
        host=admin["HOST"],
        port=int(admin["PORT"]),
        user=admin["USER"],
        password=admin["PASSWORD"],
        database="collated_db",
    )
    try:
        holder.cursor().execute("SELECT COUNT(*) FROM demo_book")
        result = copy.manage("diskette_reset", "--noinput", timeout=60)
    finally:
        holder.close()

    assert "dropped and created the database" in result.stdout
    assert books(copy) == 0
    assert mysql_database_defaults("collated_db") == ("utf8mb4", "utf8mb4_bin")


def mysql_database_defaults(name: str) -> tuple[str, str]:
    """The default character set and collation of MariaDB database ``name``."""
    from tests.mariadb import admin_cursor

    with admin_cursor() as cursor:
        cursor.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            [name],
        )
        return cursor.fetchone()


def python_that(folder: Path, on_reset: str) -> Path:
    """An interpreter for ``diskette.python`` that runs the shell line
    ``on_reset`` instead of any command given ``--reset``."""
    python = folder / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" --reset "*) {on_reset};; esac\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    python.chmod(0o755)
    return python


def test_a_load_killed_after_its_reset_gets_the_safety_snapshot_put_back(project, tmp_path):
    """``kill -9`` of ``diskette_load --reset`` once the database is dropped:
    no answer says what it did, so the task takes the worst and puts the
    safety snapshot back."""
    project.manage("diskette_dump", "--destination", str(tmp_path))
    change_everything(project)
    before = project.fingerprint()
    killer = python_that(
        tmp_path,
        f'exec {shlex.quote(sys.executable)} {shlex.quote(str(KILLAT))} reset "$@"',
    )
    archive = str(tmp_path / "diskette_data_storages.tar.gz")

    failed = project.inv(
        "reset-and-load",
        archive,
        "--yes",
        env={"INVOKE_DISKETTE_PYTHON": str(killer)},
        check=False,
    )

    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith(f"loading {archive} failed: ")
    assert "your data and media were put back from the safety snapshot" in message
    assert project.fingerprint() == before


def test_a_diskette_without_load_reset_is_told_to_update_and_nothing_changes(
    project, tmp_path
):
    """As a host running an older diskette answers ``--reset`` (argparse's
    error, in the ``--json`` object): the snapshot taken first goes, the
    data stays."""
    project.manage("diskette_dump", "--destination", str(tmp_path))
    change_everything(project)
    before = project.fingerprint()
    older = python_that(
        tmp_path, """echo '{"error": "unrecognized arguments: --reset"}'; exit 2"""
    )

    failed = project.inv(
        "reset-and-load",
        str(tmp_path / "diskette_data_storages.tar.gz"),
        "--yes",
        env={"INVOKE_DISKETTE_PYTHON": str(older)},
        check=False,
    )

    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == (
        "the diskette cannot reset and load in one command (diskette_load --reset): "
        "update it to this version; nothing was changed"
    )
    assert project.fingerprint() == before
    assert not (project.root / "var" / "diskette-backups").exists()
