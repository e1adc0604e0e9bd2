"""Archives cross both ways with diskette 0.6.0, the real package from PyPI.

diskette 0.6 is installed in a virtualenv of its own (both packages are named
``diskette``). Two copies of the sandbox project are driven through
``manage.py``: one with this diskette, one with 0.6 configured as its
documentation asks (its settings star-imported). The demo's fingerprint
(data and archived media, independent of primary keys) must survive a dump on
one side and a load on the other, in both directions. This diskette's copy
runs on the suite's database (``DISKETTE_TEST_DB``); 0.6's on SQLite.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import django
import pytest

from tests.databases import ON_SQLITE
from tests.projects import SandboxCopy

pytestmark = pytest.mark.subprocess

SETTINGS_06 = """\
from diskette.settings import *  # diskette 0.6 wants its defaults in the project
from project.settings import *
DISKETTE_LOAD_STORAGES_PATH = BASE_DIR
# In 0.6 a drain takes what `allow_drain` definitions release only if it opts in.
DISKETTE_APPS[-1][1]["drain_excluded"] = True
"""


@pytest.fixture(scope="module")
def python06(tmp_path_factory) -> Path:
    """The interpreter of a virtualenv holding diskette 0.6.0, this Django and
    django-polymorphic (the sandbox needs it).

    The virtualenv gets no pip of its own (installing one takes longer than
    the rest): this environment's pip installs into it (``--python``).
    """
    venv = tmp_path_factory.mktemp("diskette06") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "diskette==0.6.0",
            f"Django=={django.get_version()}",
            "django-polymorphic",  # the sandbox's shop app has polymorphic models
        ],
        capture_output=True,
        text=True,
    )
    if installed.returncode:
        last = (installed.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"diskette 0.6.0 could not be installed from PyPI: {last}")
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def migrated06(tmp_path_factory, python06) -> SandboxCopy:
    """A sandbox copy run by diskette 0.6, migrated once; tests copy it."""
    root = tmp_path_factory.mktemp("migrated06") / "project"
    copy = SandboxCopy.create(root, python=python06, settings="project.settings_06")
    (root / "project" / "settings_06.py").write_text(SETTINGS_06)
    copy.manage("migrate", "--verbosity", "0")
    return copy


@pytest.fixture
def theirs(tmp_path, migrated06) -> SandboxCopy:
    """A project of diskette 0.6: a copy of the migrated one (SQLite in var/)."""
    shutil.copytree(migrated06.root, tmp_path / "theirs", symlinks=True)
    return SandboxCopy.at(
        tmp_path / "theirs", python=migrated06.python, settings=migrated06.settings
    )


@pytest.fixture
def ours(tmp_path, seeded) -> SandboxCopy:
    """A project of this diskette, freshly migrated, on the suite's database."""
    return seeded.copy(tmp_path / "ours")


def test_an_archive_made_here_loads_with_diskette_06(tmp_path, ours, theirs):
    # The shop too, every model kind, when both sides are on SQLite: 0.6's
    # copy is, and SQLite rounds the shop's 30-digit decimals when it saves
    # them (docs/definitions.md), so from a server they could not match.
    ours.manage("demo_seed", "--books", "15", *([] if ON_SQLITE else ["--no-shop"]))
    expected = ours.fingerprint()
    ours.manage("diskette_dump", "--destination", str(tmp_path))

    theirs.manage("diskette_load", str(tmp_path / "diskette_data_storages.tar.gz"))

    assert theirs.fingerprint() == expected


def test_an_archive_made_by_diskette_06_loads_here(tmp_path, ours, theirs):
    # The library alone: 0.6 dumps with dumpdata, which cuts the shop's
    # microseconds to milliseconds (tests/test_exact_values.py).
    theirs.manage("demo_seed", "--books", "15", "--no-shop")
    expected = theirs.fingerprint()
    theirs.manage("diskette_dump", "--destination", str(tmp_path))
    assert (
        "datas"
        in subprocess.run(
            [
                "tar",
                "xzOf",
                str(tmp_path / "diskette_data_storages.tar.gz"),
                "manifest.json",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )

    ours.manage("diskette_load", str(tmp_path / "diskette_data_storages.tar.gz"))

    assert ours.fingerprint() == expected
