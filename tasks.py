"""Developer tasks of the diskette repository: ``inv test``, ``inv lint``, ``inv demo``.

The Makefile's ``make test`` and ``make demo`` call these once the virtual
environment exists, so the steps live in one place.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from invoke import Collection, Context, task

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


@task
def demo(c: Context) -> None:
    """Fill the sandbox with demo data and media, then dump it."""
    var = SANDBOX / "var"
    (var / "db.sqlite3").unlink(missing_ok=True)
    for leftover in var.glob("diskette*.tar.gz"):
        leftover.unlink()
    media = var / "media"
    for child in media.iterdir():
        if child.name != ".gitkeep":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    manage = f"{PYTHON} manage.py"
    with c.cd(str(SANDBOX)):
        c.run(f"{manage} migrate --verbosity 0")
        c.run(f"{manage} demo_seed")
        c.run(f"{manage} diskette_dump --check")
        c.run(f"{manage} diskette_dump")


ns = Collection(test, lint, demo)
