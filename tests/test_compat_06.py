"""Archives cross both ways with diskette 0.6.0, the real package from PyPI.

diskette 0.6 is installed in a virtualenv of its own (both packages are named
``diskette``). Two copies of the sandbox project are driven through
``manage.py``: one with this diskette, one with 0.6 configured as its
documentation asks (its settings star-imported). The demo's fingerprint
(data and archived media, independent of primary keys) must survive a dump on
one side and a load on the other, in both directions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import django
import pytest

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
    """The interpreter of a virtualenv holding diskette 0.6.0 and this Django."""
    venv = tmp_path_factory.mktemp("diskette06") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "diskette==0.6.0",
            f"Django=={django.get_version()}",
        ],
        capture_output=True,
        text=True,
    )
    if installed.returncode:
        last = (installed.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"diskette 0.6.0 could not be installed from PyPI: {last}")
    return venv / "bin" / "python"


def project(root: Path, python: Path, settings: str) -> SandboxCopy:
    copy = SandboxCopy.create(root, python=python, settings=settings)
    (root / "project" / "settings_06.py").write_text(SETTINGS_06)
    copy.manage("migrate", "--verbosity", "0")
    return copy


def test_an_archive_made_here_loads_with_diskette_06(tmp_path, python06):
    ours = project(tmp_path / "ours", Path(sys.executable), "project.settings")
    theirs = project(tmp_path / "theirs", python06, "project.settings_06")
    ours.manage("demo_seed", "--books", "15")
    expected = ours.fingerprint()
    ours.manage("diskette_dump", "--destination", str(tmp_path))

    theirs.manage("diskette_load", str(tmp_path / "diskette_data_storages.tar.gz"))

    assert theirs.fingerprint() == expected


def test_an_archive_made_by_diskette_06_loads_here(tmp_path, python06):
    theirs = project(tmp_path / "theirs", python06, "project.settings_06")
    ours = project(tmp_path / "ours", Path(sys.executable), "project.settings")
    theirs.manage("demo_seed", "--books", "15")
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
