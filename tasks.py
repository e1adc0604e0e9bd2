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
from pathlib import Path

from invoke import Context, Exit, task

from diskette.tasks import ns

ROOT = Path(__file__).resolve().parent
SANDBOX = ROOT / "sandbox"
PYTHON = sys.executable
DATABASES = ("sqlite", "postgres")


@task(
    help={
        "db": "sqlite, postgres, or all (default): the suite runs once per database",
        "args": "extra pytest arguments, e.g. '-k dump -x'",
        "serial": "run the databases one after the other, with live output (default: "
        "side by side when the machine has a core for each, each shown when done)",
    }
)
def test(c: Context, db: str = "all", args: str = "", serial: bool = False) -> None:
    """Run the test suite on SQLite and on a throwaway PostgreSQL cluster.

    Each pass spends most of its time in one child process at a time (a
    real ``manage.py``, ``inv`` or ``fab``), so on a machine with a core per
    database the passes run side by side: the wall time is that of the
    slowest, not the sum. Every database runs even when another failed, so
    one run tells all; the task then fails, naming the databases that did.
    """
    names = DATABASES if db == "all" else (db,)
    command = f"{PYTHON} -m pytest {args}"
    started = time.monotonic()
    failed = []
    if serial or len(names) == 1 or (os.cpu_count() or 1) < len(names):
        for name in names:
            print(f"=== Test suite on {name} ===", flush=True)
            result = c.run(command, env={"DISKETTE_TEST_DB": name}, pty=False, warn=True)
            print(f"=== {name}: {time.monotonic() - started:.0f} s ===", flush=True)
            started = time.monotonic()
            if result.failed:
                failed.append(name)
    else:
        print(
            f"=== Test suite on {', '.join(names)}, side by side (each shown when done; "
            "--serial for live output) ===",
            flush=True,
        )
        running = {
            name: c.run(
                command,
                env={"DISKETTE_TEST_DB": name},
                pty=False,
                warn=True,
                hide=True,
                asynchronous=True,
            )
            for name in names
        }
        for name, promise in running.items():
            result = promise.join()
            print(f"=== Test suite on {name} ===\n{result.stdout}{result.stderr}", end="")
            print(f"=== {name}: done after {time.monotonic() - started:.0f} s ===", flush=True)
            if result.failed:
                failed.append(name)
    if failed:
        raise Exit(f"the test suite failed on {', '.join(failed)}", code=1)


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
        "rows": "objects in the generated dataset (default 200,000)",
        "media_mb": "megabytes of generated media (default 256)",
        "db": "sqlite, postgres, all (default), or none: the memory run alone",
        "repeat": "runs of each media-only step, the fastest kept (default 3)",
        "memory_rows": "rows of diskette's memory run on SQLite (default 1,000,000; 0 skips it)",
    }
)
def bench(
    c: Context,
    rows: int = 200_000,
    media_mb: int = 256,
    db: str = "all",
    repeat: int = 3,
    memory_rows: int = 1_000_000,
) -> None:
    """Time diskette against dumpdata/loaddata and tar; write benchmarks/results.md."""
    c.run(
        f"{PYTHON} benchmarks/run.py --rows {rows} --media-mb {media_mb} --db {db} "
        f"--repeat {repeat} --memory-rows {memory_rows}",
        pty=False,
    )


for developer_task in (test, lint, demo, bench):
    ns.add_task(developer_task)
ns.configure(
    {
        "diskette": {
            "manage": str(SANDBOX / "manage.py"),
            "backup_dir": str(SANDBOX / "var" / "diskette-backups"),
        }
    }
)
