"""``kill -9`` at every step of a load: data and media end both old or both new.

Each test loads an archive of one state (``new``) over a project holding
another (``old``), kills the loading process for real at one instant
(:mod:`tests.killat`), then runs the next diskette command, which must
finish or undo the interrupted load and say so in one line. The project's
fingerprint (data and media together) must then be exactly the old one or
exactly the new one, with no work folder left anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from diskette import journal
from diskette.journal import locked
from tests.conftest import tree_state
from tests.databases import ON_SERVER
from tests.projects import SandboxCopy, Templates

pytestmark = pytest.mark.subprocess

KILLAT = Path(__file__).with_name("killat.py")


def sandbox(
    seeded: Templates, root: Path, books: int, seed: int, shop: bool = True
) -> SandboxCopy:
    copy = seeded.copy(root, books=books, seed=seed, shop=shop)  # migrated, seeded
    copy.env["TMPDIR"] = str(root.parent / f"{root.name}-tmp")  # its own, to inspect
    Path(copy.env["TMPDIR"]).mkdir()
    return copy


@pytest.fixture(scope="module")
def whole_state(tmp_path_factory, seeded) -> tuple[Path, str]:
    """An archive of the state to load, and that state's fingerprint."""
    source = sandbox(
        seeded, tmp_path_factory.mktemp("source") / "project", books=12, seed=1
    )
    source.manage("diskette_dump", "--destination", str(source.root.parent))
    return source.root.parent / "diskette_data_storages.tar.gz", source.fingerprint()


@pytest.fixture(scope="module")
def delta_state(tmp_path_factory, seeded) -> tuple[Path, str]:
    """A delta made for ``project``'s media, and the state it loads.

    A copy of the project lists its media, then changes like a host: one
    file rewritten, one removed, a folder added, a folder replaced by a
    file, a book renamed. Loaded onto the project, the swap goes down into
    the folders both have and moves those paths only.
    """
    host = sandbox(
        seeded, tmp_path_factory.mktemp("host") / "project", books=5, seed=2, shop=False
    )
    have = host.root.parent / "have.json"
    host.manage("diskette_index", "--output", str(have))
    media = host.root / "var" / "media"
    files = sorted(p for p in media.rglob("*") if p.is_file())
    files[0].write_bytes(files[0].read_bytes() + b"changed on the host")
    files[1].unlink()
    (media / "added" / "deeper").mkdir(parents=True)
    (media / "added" / "deeper" / "new.bin").write_bytes(b"new on the host")
    folder = next(p for p in sorted(media.iterdir()) if p.is_dir() and p.name != "added")
    shutil.rmtree(folder)
    folder.write_bytes(b"a file where a folder was")
    host.manage(
        "shell",
        "-c",
        "from demo.models import Book; Book.objects.filter(pk=Book.objects.first().pk)"
        ".update(title='Renamed on the host')",
    )
    host.manage(
        "diskette_dump", "--base", str(have), "--destination", str(host.root.parent)
    )
    return host.root.parent / "diskette_data_storages.tar.gz", host.fingerprint()


@pytest.fixture
def project(tmp_path, seeded) -> SandboxCopy:
    """The old state: the library alone. The archive's rows cover all of its
    rows, so that a load over it (``--overwrite``) leaves exactly the new
    state; shop objects with random UUIDs would stay beside the new ones."""
    return sandbox(seeded, tmp_path / "project", books=5, seed=2, shop=False)


def kill_during_load(project: SandboxCopy, point: str, archive: Path, *options: str):
    result = project.run(
        sys.executable,
        str(KILLAT),
        point,
        "manage.py",
        "diskette_load",
        str(archive),
        "--keep",
        "--overwrite",
        *options,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    return result


def leftovers(project: SandboxCopy) -> list[str]:
    media = project.root / "var" / "media"
    tmp = Path(project.env["TMPDIR"])
    return sorted(
        [p.name for p in media.iterdir() if p.name.startswith(".diskette-")]
        + [p.name for p in tmp.iterdir()]
    )


NEXT_COMMANDS = {
    "dump --check": ("diskette_dump", "--check"),
    "load --check": ("diskette_load", "{archive}", "--check"),
    "reset --check": ("diskette_reset", "--check"),
}


#: What the next command says it did with the storage, by the instant of the kill.
EXPECTED = {
    "extracting": "removed the files of a load interrupted before it changed anything",
    "loading-data": "removed the files of a load interrupted before it changed anything",
    "loading-data-loaddata": "removed the files of a load interrupted before it changed anything",
    "swapping": "undid a load interrupted before its data committed",
    "swapped": "undid a load interrupted before its data committed",
    "committed": "finished a load interrupted after its data committed",
}


@pytest.mark.parametrize(
    "point, options, outcome, next_command, kind",
    [
        ("extracting", (), "old", "dump --check", "whole"),
        ("loading-data", (), "old", "load --check", "whole"),
        ("loading-data-loaddata", ("--loaddata",), "old", "reset --check", "whole"),
        ("swapping", (), "old", "dump --check", "whole"),
        ("swapped", (), "old", "load --check", "whole"),
        ("committed", (), "new", "reset --check", "whole"),
        ("extracting", (), "old", "dump --check", "delta"),
        ("swapping", (), "old", "load --check", "delta"),
        ("swapped", (), "old", "reset --check", "delta"),
        ("committed", (), "new", "dump --check", "delta"),
    ],
)
def test_kill_9_then_the_next_command_leaves_both_old_or_both_new(
    project, request, point, options, outcome, next_command, kind
):
    """A delta's swap (paths deep in the tree) recovers like a whole one's."""
    archive, new = request.getfixturevalue(f"{kind}_state")
    old = project.fingerprint()
    kill_during_load(project, point, archive, *options)

    command = [part.format(archive=archive) for part in NEXT_COMMANDS[next_command]]
    result = project.manage(*command)

    said = [line for line in result.stderr.splitlines() if "recovered: " in line]
    media = [line for line in said if str(project.root / "var" / "media") in line]
    assert len(media) == 1, said  # one line for the one storage, saying what was done
    assert EXPECTED[point] in media[0]
    assert "Traceback" not in result.stderr
    assert project.fingerprint() == {"old": old, "new": new}[outcome]
    assert leftovers(project) == []
    # And the same load, run again, goes through.
    project.manage("diskette_load", str(archive), "--keep", "--overwrite")
    assert project.fingerprint() == new


def test_a_dump_waiting_for_its_list_settles_nothing_before_it_comes(project, whole_state):
    """A pull starts the host's dump early and sends it the list of media
    only once its user said yes: until the list comes, that dump changes
    nothing, not even to settle an interrupted load; without one it refuses."""
    archive, _ = whole_state
    old = project.fingerprint()
    kill_during_load(project, "swapped", archive)
    interrupted = leftovers(project)
    assert interrupted

    result = project.manage("diskette_dump", "--base", "-", "--to-stdout", check=False)

    assert result.returncode == 1
    assert "the list of media on the standard input is not a list of media" in (
        result.stderr
    )
    assert "recovered" not in result.stderr
    assert leftovers(project) == interrupted
    project.manage("diskette_dump", "--check")  # the next command settles it
    assert project.fingerprint() == old
    assert leftovers(project) == []


@pytest.mark.parametrize("kind", ["whole", "delta"])
def test_a_recovery_killed_in_turn_is_finished_by_the_next_one(project, request, kind):
    """Killed before COMMIT with every entry swapped, the undo takes several
    renames; a recovery killed after the first of them is run again."""
    archive, _ = request.getfixturevalue(f"{kind}_state")
    old = project.fingerprint()
    kill_during_load(project, "swapped", archive)
    cut = project.run(
        sys.executable,
        str(KILLAT),
        "recovering",
        "manage.py",
        "diskette_dump",
        "--check",
        check=False,
    )
    assert cut.returncode == -signal.SIGKILL
    result = project.manage("diskette_dump", "--check")
    assert "undid a load interrupted before its data committed" in result.stderr
    assert project.fingerprint() == old
    assert leftovers(project) == []


def test_a_running_load_is_not_taken_for_an_interrupted_one(project, whole_state, tmp_path):
    """A second command meets the first load's lock, not its journal."""
    archive, new = whole_state
    stopped = tmp_path / "stopped"
    gate = (
        "import os, signal, sys\n"
        "sys.path.insert(0, os.getcwd())\n"
        "import django; django.setup()\n"
        "from diskette import load\n"
        "swap = load._Restore.swap\n"
        "def paused(self, *a):\n"
        "    restored = swap(self, *a)\n"
        f"    open({str(stopped)!r}, 'w').close()\n"
        "    os.kill(os.getpid(), signal.SIGSTOP)\n"
        "    return restored\n"
        "load._Restore.swap = paused\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv[1:])\n"
    )
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            gate,
            "manage.py",
            "diskette_load",
            str(archive),
            "--keep",
            "--overwrite",
        ],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not stopped.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stopped.exists(), first.communicate()
        for command in (("--check",), ("--destination", str(tmp_path))):
            second = project.manage("diskette_dump", *command, check=False)
            assert second.returncode == 1
            assert re.search(
                r"another diskette command \(.*var/media.\) is running", second.stderr
            )
            assert "Traceback" not in second.stderr
        assert not list(tmp_path.glob("*.tar.gz"))  # no archive of half-swapped media
    finally:
        first.send_signal(signal.SIGCONT)
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert project.fingerprint() == new


@pytest.mark.skipif(ON_SERVER, reason="a locked SQLite file; a server would wait")
def test_a_recovery_that_cannot_ask_the_database_changes_nothing(project, whole_state):
    """Killed after COMMIT: only the database knows the data is new. While it
    cannot answer (locked), the media must not be taken back to the old."""
    archive, new = whole_state
    kill_during_load(project, "committed", archive)
    # SQLite waits 5 s for a lock by default: the same answer comes sooner.
    lock_timeout = 'DATABASES["default"]["OPTIONS"] = {"timeout": 0.5}\n'
    project.use_settings(project.write_settings("settings_lock", lock_timeout))
    media = tree_state(project.root / "var" / "media")
    database = sqlite3.connect(project.root / "var" / "db.sqlite3", timeout=1)
    try:
        database.execute("BEGIN EXCLUSIVE")
        blocked = project.manage("diskette_dump", "--check", check=False)
    finally:
        database.rollback()
        database.close()
    assert blocked.returncode == 1
    assert (
        blocked.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "CommandError: cannot ask database 'default' whether an interrupted load "
            "committed (database is locked): nothing was changed; run the command again"
        )
    )
    assert tree_state(project.root / "var" / "media") == media
    result = project.manage("diskette_dump", "--check")
    assert "finished a load interrupted after its data committed" in result.stderr
    assert project.fingerprint() == new
    assert leftovers(project) == []


@pytest.fixture
def temporary(tmp_path, monkeypatch) -> Path:
    """A temporary folder of its own, where loads make their data folders."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_sweep_beside_a_starting_load_leaves_its_data_folder(temporary, monkeypatch):
    """A pull starts its load and its safety snapshot at once, and the
    snapshot sweeps the data folders of killed loads: run between the
    load making its folder and locking it, the sweep must not take it."""
    swept: list[list[str]] = []

    def sweep_first(folders, **kwargs):
        if not swept:  # the other process, at the worst instant: once
            swept.append([])
            swept[0] = journal.sweep_staging()
        return locked(folders, **kwargs)

    monkeypatch.setattr(journal, "locked", sweep_first)
    with journal.staging_folder() as folder:
        (folder / "data.jsonl").write_text("{}")
        monkeypatch.setattr(journal, "locked", locked)
        assert journal.sweep_staging() == []  # locked: a load is using it
        assert (folder / "data.jsonl").read_text() == "{}"
    assert swept == [[]]
    assert list(temporary.iterdir()) == []


def test_the_sweep_removes_what_killed_loads_left(temporary):
    """An unlocked data folder at once; a folder still being made only once
    it is older than a load takes to lock it."""
    left = temporary / f"{journal.STAGING_PREFIX}killed"
    (left / "deeper").mkdir(parents=True)
    young = temporary / f"{journal.BORN_PREFIX}young"
    young.mkdir()
    old = temporary / f"{journal.BORN_PREFIX}old"
    old.mkdir()
    stalled = temporary / f"{journal.BORN_PREFIX}stalled"  # old, but locked: in use
    stalled.mkdir()
    long_ago = time.time() - journal.BORN_GRACE - 1
    for folder in (old, stalled):
        os.utime(folder, (long_ago, long_ago))

    with locked([stalled]):
        said = journal.sweep_staging()

    assert sorted(temporary.iterdir()) == [stalled, young]
    assert sorted(said) == [
        f"removed '{old}', left by an interrupted load",
        f"removed '{left}', left by an interrupted load",
    ]
