"""Tasks of the diskette repository: diskette's own, plus developer tasks.

``inv dump``, ``inv load``, ``inv reset-db``, ... come from ``diskette.tasks``
and act on the sandbox project; ``inv test``, ``inv lint`` and ``inv demo``
are for working on diskette. The Makefile's ``make test`` and ``make demo``
call these once the virtual environment exists, so the steps live in one place.
"""

from __future__ import annotations

import shutil
import sys
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
    }
)
def test(c: Context, db: str = "all", args: str = "") -> None:
    """Run the test suite on SQLite, then on a throwaway PostgreSQL cluster."""
    for name in DATABASES if db == "all" else (db,):
        print(f"=== Test suite on {name} ===", flush=True)
        c.run(f"{PYTHON} -m pytest {args}", env={"DISKETTE_TEST_DB": name}, pty=False)


@task
def lint(c: Context) -> None:
    """Check style and common mistakes with ruff."""
    c.run(f"{PYTHON} -m ruff check .")


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
