"""Tasks of the diskette repository: diskette's own, plus developer tasks.

``inv dump``, ``inv load``, ``inv reset-db``, ... come from ``diskette.tasks``
and act on the sandbox project; ``inv test``, ``inv lint`` and ``inv demo``
are for working on diskette. The Makefile's ``make test`` and ``make demo``
call these once the virtual environment exists, so the steps live in one place.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from invoke import Context, Exit, Result, task

from diskette.tasks import ns

ROOT = Path(__file__).resolve().parent
SANDBOX = ROOT / "sandbox"
PYTHON = sys.executable
DATABASES = ("sqlite", "postgres", "mariadb")
#: The order passes start in when they run side by side: the slowest first, so
#: the others share the second core meanwhile (alone on 2 cores: MariaDB's
#: took 11 minutes, PostgreSQL's 10, SQLite's 8).
LONGEST_FIRST = ("mariadb", "postgres", "sqlite")


@task(
    help={
        "db": "sqlite, postgres, mariadb, a comma-separated list of them, or all "
        "(default): the suite runs once per database",
        "args": "extra pytest arguments, e.g. '-k dump -x'",
        "serial": "run the databases one after the other, with live output (default: "
        "as many side by side as the machine has cores, each shown when done)",
    }
)
def test(c: Context, db: str = "all", args: str = "", serial: bool = False) -> None:
    """Run the test suite on SQLite, a throwaway PostgreSQL and a throwaway MariaDB.

    Each pass spends most of its time in one child process at a time (a
    real ``manage.py``, ``inv`` or ``fab``), so the passes run side by side,
    one per core: on 2 cores the first two start together and the third
    when one of them is done. The slowest starts first (:data:`LONGEST_FIRST`),
    so that the others fill the other core meanwhile. Every database runs even
    when another failed, so one run tells all; the task then fails, naming the
    databases that did.
    """
    names = (
        DATABASES if db == "all" else tuple(n.strip() for n in db.split(",") if n.strip())
    )
    unknown = [name for name in names if name not in DATABASES]
    if unknown or not names:
        raise Exit(f"--db {db!r}: choose among {', '.join(DATABASES)}, or all")
    command = f"{PYTHON} -m pytest {args}"
    workers = 1 if serial else min(len(names), os.cpu_count() or 1)
    failed: set[str] = set()
    if workers == 1:
        for name in names:
            started = time.monotonic()
            print(f"=== Test suite on {name} ===", flush=True)
            result = c.run(command, env={"DISKETTE_TEST_DB": name}, pty=False, warn=True)
            print(f"=== {name}: {time.monotonic() - started:.0f} s ===", flush=True)
            if result.failed:
                failed.add(name)
    else:
        print(
            f"=== Test suite on {', '.join(names)}, {workers} at a time (each shown when "
            "done; --serial for live output) ===",
            flush=True,
        )
        started = time.monotonic()

        def run(name: str) -> Result:
            return c.run(
                command,
                env={"DISKETTE_TEST_DB": name},
                pty=False,
                warn=True,
                hide=True,
                in_stream=False,  # several at once: none may read the terminal
            )

        order = sorted(names, key=LONGEST_FIRST.index)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            running = {pool.submit(run, name): name for name in order}
            for done in as_completed(running):
                name, result = running[done], done.result()
                print(
                    f"=== Test suite on {name} ===\n{result.stdout}{result.stderr}", end=""
                )
                print(
                    f"=== {name}: done after {time.monotonic() - started:.0f} s ===",
                    flush=True,
                )
                if result.failed:
                    failed.add(name)
    if failed:
        shown = ", ".join(name for name in names if name in failed)
        raise Exit(f"the test suite failed on {shown}", code=1)


#: The other Django the in-process tests run on: the oldest LTS supported.
OLDEST_DJANGO = "4.2"


@task(
    help={
        "version": f"the Django release to test on (default {OLDEST_DJANGO})",
        "args": "extra pytest arguments",
    }
)
def test_django(c: Context, version: str = OLDEST_DJANGO, args: str = "") -> None:
    """Run the in-process tests on another Django, in a virtualenv of its own.

    The project's virtualenv holds the newest Django. A declared older one
    is tested with the tests that run inside pytest's process, on SQLite:
    they call every command and function diskette has; the tests left out
    drive the same code through child processes. The virtualenv
    (``.venv/django-<version>``) is made again when ``pyproject.toml`` is
    newer than it.
    """
    venv = ROOT / ".venv" / f"django-{version}"
    stamp = venv / ".installed"
    if (
        not stamp.exists()
        or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime
    ):
        c.run(f"{PYTHON} -m venv --clear {venv}")
        c.run(
            f"{venv}/bin/python -m pip install --quiet --disable-pip-version-check "
            f"-e '{ROOT}[test]' 'Django~={version}.0'"
        )
        stamp.touch()
    print(f"=== In-process tests on Django {version} ===", flush=True)
    c.run(
        f"{venv}/bin/python -m pytest -m 'not subprocess' {args}",
        env={"DISKETTE_TEST_DB": "sqlite"},
        pty=False,
    )


@task
def lint(c: Context) -> None:
    """Check style and common mistakes with ruff, and the types with mypy."""
    c.run(f"{PYTHON} -m ruff check .")
    c.run(f"{PYTHON} -m mypy")  # what it checks: [tool.mypy] in pyproject.toml


def _reset_sandbox() -> None:
    """An empty sandbox: no database, no media, no archive."""
    var = SANDBOX / "var"
    (var / "db.sqlite3").unlink(missing_ok=True)
    for leftover in var.glob("diskette*.tar.gz"):
        leftover.unlink()
    for child in (var / "media").iterdir():
        if child.name != ".gitkeep":
            shutil.rmtree(child) if child.is_dir() else child.unlink()


@task
def demo(c: Context) -> None:
    """Round trip on the sandbox: demo data and media, dump, empty database, load, compare."""
    manage = f"{PYTHON} manage.py"
    with c.cd(str(SANDBOX)):
        _reset_sandbox()
        c.run(f"{manage} migrate --verbosity 0")
        c.run(f"{manage} demo_seed")
        before = c.run(f"{manage} demo_fingerprint").stdout.strip()
        c.run(f"{manage} diskette_dump")
        print("=== Starting again from an empty, freshly migrated database ===", flush=True)
        archive = SANDBOX / "var" / "diskette_data_storages.tar.gz"
        kept = archive.with_name("kept.tar.gz")
        archive.rename(kept)
        _reset_sandbox()
        kept.rename(archive)
        c.run(f"{manage} migrate --verbosity 0")
        c.run(f"{manage} diskette_load var/diskette_data_storages.tar.gz")
        after = c.run(f"{manage} demo_fingerprint").stdout.strip()
    if before != after:
        raise Exit(f"Round trip FAILED: {before} before the dump, {after} after the load")
    print(
        f"Round trip OK: data and media are the same as before the dump ({after.split()[0][:12]}…)"
    )


@task(
    help={
        "rows": "rows of the comparison pass (default 200,000; 0: only the large pass)",
        "media_mb": "megabytes of media of the comparison pass (default 256)",
        "db": "sqlite, postgres or all (default): the databases of every pass",
        "plain_rows": "largest size dumpdata/loaddata run at (default 200,000): above it, "
        "at this size, beside diskette, in a pass of their own; 0: never",
        "repeat": "runs of each media-only step, the fastest kept (default 3)",
        "memory_rows": "rows of the large pass, diskette's data alone (against "
        "pg_dump/pg_restore on PostgreSQL), run when above --rows (default 1,000,000; "
        "0: never)",
        "registry_mb": "megabytes of S3 media for benchmarks/registry.py: the media "
        "dump, publish and pull against boto3 and tar (default 256; 0: never)",
        "http_mb": "megabytes of media for benchmarks/http_pull.py: a pull over HTTP "
        "from gunicorn, against curl (default 256; 0: never)",
        "pull_mb": "megabytes of media for benchmarks/daily_pull.py: a pull over SSH, "
        "then pulls after 1% changed, against ssh dumpdata | loaddata and rsync "
        "(default 1024; 0: never)",
    }
)
def bench(
    c: Context,
    rows: int = 200_000,
    media_mb: int = 256,
    db: str = "all",
    plain_rows: int = 200_000,
    repeat: int = 3,
    memory_rows: int = 1_000_000,
    registry_mb: int = 256,
    http_mb: int = 256,
    pull_mb: int = 1024,
) -> None:
    """Time diskette against dumpdata/loaddata, django-dbbackup, pg_dump and tar;
    write benchmarks/results.md.

    With the defaults, an hour or more on 2 cores, 40 minutes of it in
    dumpdata and loaddata at 200,000 rows; ``--memory-rows 0`` leaves out
    the million-row passes (10 to 20 minutes), ``--rows 0`` runs them alone.
    """
    c.run(
        f"{PYTHON} benchmarks/run.py --rows {rows} --media-mb {media_mb} --db {db} "
        f"--plain-rows {plain_rows} --repeat {repeat} --memory-rows {memory_rows}",
        pty=False,
    )
    if registry_mb:
        c.run(f"{PYTHON} benchmarks/registry.py --media-mb {registry_mb}", pty=False)
    if http_mb:
        c.run(f"{PYTHON} benchmarks/http_pull.py --media-mb {http_mb}", pty=False)
    if pull_mb:
        c.run(f"{PYTHON} benchmarks/daily_pull.py --media-mb {pull_mb}", pty=False)


for developer_task in (test, test_django, lint, demo, bench):
    ns.add_task(developer_task)
ns.configure(
    {
        "diskette": {
            "manage": str(SANDBOX / "manage.py"),
            "backup_dir": str(SANDBOX / "var" / "diskette-backups"),
        }
    }
)
