"""``inv reset-and-load`` on a fresh laptop: the media folder is not made yet.

The safety snapshot (``diskette_dump --everything``) leaves a storage that
does not exist out of the archive instead of refusing, so the task runs; put
back after a failed load, the snapshot leaves that folder alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.projects import SandboxCopy

pytestmark = pytest.mark.subprocess


@pytest.fixture
def laptop(tmp_path: Path, seeded) -> SandboxCopy:
    copy = seeded.copy(tmp_path / "project", books=6)  # on the suite's database
    (copy.root / "tasks.py").write_text("from diskette.tasks import ns\n")
    return copy


def test_reset_and_load_without_a_media_folder(laptop, tmp_path):
    laptop.manage("diskette_dump", "--no-storages", "--destination", str(tmp_path))
    appconf = tmp_path / "books-only.json"  # verifies, cannot load: no authors
    appconf.write_text('[["books", {"models": ["demo.Book"], "natural_foreign": true}]]')
    broken = tmp_path / "broken"
    laptop.manage(
        "diskette_dump",
        "--appconf",
        str(appconf),
        "--no-storages",
        "--destination",
        str(broken),
    )
    media = laptop.root / "var" / "media"
    shutil.rmtree(media)
    before = laptop.fingerprint()

    failed = laptop.inv(
        "reset-and-load", str(broken / "diskette_data.tar.gz"), "--yes", check=False
    )
    assert failed.returncode == 1
    assert "could not save a safety snapshot" not in failed.stderr
    assert "were put back from the safety snapshot" in failed.stderr
    assert laptop.fingerprint() == before
    assert not media.exists()

    loaded = laptop.inv("reset-and-load", str(tmp_path / "diskette_data.tar.gz"), "--yes")
    assert "Safety snapshot of the current database and media: " in loaded.stdout
