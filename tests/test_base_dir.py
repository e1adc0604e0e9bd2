"""Where storages sit in an archive: below the project's base directory,
whatever folder the command runs from; and dumps that would hold nothing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from diskette.archive import read_manifest
from tests.conftest import archive_members, run_command, tree_state

pytestmark = pytest.mark.django_db


def media_members(archive: Path) -> list[str]:
    return sorted(
        name
        for name in archive_members(archive)
        if not name.startswith("data") and name != "manifest.json"
    )


def test_dump_from_another_folder_names_members_as_from_the_project(
    demo, monkeypatch, tmp_path
):
    run_command("diskette_dump", "--no-data", "--filename", "here.tar.gz")
    monkeypatch.chdir("/")
    run_command("diskette_dump", "--no-data", "--filename", "root.tar.gz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run_command("diskette_dump", "--no-data", "--filename", "elsewhere.tar.gz")
    here = media_members(demo / "var" / "here.tar.gz")
    assert here[0] == "var/media"
    assert media_members(demo / "var" / "root.tar.gz") == here
    assert media_members(demo / "var" / "elsewhere.tar.gz") == here
    assert read_manifest(demo / "var" / "root.tar.gz")["storages"] == ["var/media"]


def test_a_relative_storage_is_taken_from_the_base_dir(demo, settings, monkeypatch):
    settings.DISKETTE_STORAGES = ["var/media"]
    monkeypatch.chdir("/")
    run_command("diskette_dump", "--no-data")
    assert "var/media/covers" in archive_members(demo / "var" / "diskette_storages.tar.gz")


def test_load_from_another_folder_restores_into_the_project(demo, monkeypatch, tmp_path):
    media = demo / "var" / "media"
    run_command("diskette_dump", "--no-data", "--no-storages-excludes")
    before = tree_state(media)
    shutil.rmtree(media)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run_command(
        "diskette_load", str(demo / "var" / "diskette_storages.tar.gz"), no_data=True
    )
    assert tree_state(media) == before
    assert list(elsewhere.iterdir()) == []


def test_diskette_base_dir_wins_over_base_dir(demo, settings):
    settings.DISKETTE_BASE_DIR = demo / "var"
    run_command("diskette_dump", "--no-data")
    assert read_manifest(demo / "var" / "diskette_storages.tar.gz")["storages"] == ["media"]


def test_a_storage_outside_the_base_dir_names_the_setting_to_fix(demo, settings):
    settings.BASE_DIR = demo / "project"
    with pytest.raises(CommandError) as refused:
        run_command("diskette_dump", "--no-data")
    assert str(refused.value) == (
        f"storage '{demo / 'var' / 'media'}' is not below the storages base path "
        f"'{demo / 'project'}': set DISKETTE_BASE_DIR (or pass --storages-basepath) "
        "to a folder that holds every storage"
    )


@pytest.mark.subprocess
def test_sandbox_dump_and_load_do_not_depend_on_the_current_directory(tmp_path, seeded):
    """The real ``manage.py``, run by path from ``/``, as a cron job would."""
    copy = seeded.copy(tmp_path / "project")  # migrated, no data
    media = copy.root / "var" / "media"
    (media / "uploads").mkdir(parents=True)
    (media / "uploads" / "a.txt").write_text("a")
    manage_py = str(copy.root / "manage.py")
    copy.run(sys.executable, manage_py, "diskette_dump", "--no-data", cwd=Path("/"))
    archive = copy.root / "var" / "diskette_storages.tar.gz"
    from_root = media_members(archive)
    archive.unlink()
    copy.manage("diskette_dump", "--no-data")
    assert media_members(archive) == from_root
    assert "var/media/uploads/a.txt" in from_root
    shutil.rmtree(media)
    copy.run(
        sys.executable, manage_py, "diskette_load", str(archive), "--no-data", cwd=Path("/")
    )
    assert (media / "uploads" / "a.txt").read_text() == "a"


def test_no_configuration_is_refused_with_the_way_forward(project, settings):
    settings.DISKETTE_APPS = []
    settings.DISKETTE_STORAGES = []
    for options in ([], ["--check"]):
        with pytest.raises(CommandError) as refused:
            run_command("diskette_dump", *options)
        assert str(refused.value) == (
            "nothing to dump: DISKETTE_APPS and DISKETTE_STORAGES are both empty; run "
            "`manage.py diskette_apps` for a starter list, or pass --everything to dump "
            "the whole database"
        )
    assert not list((project / "var").glob("*.tar.gz*"))
    run_command("diskette_dump", "--everything", "--filename", "all.tar.gz")
    assert read_manifest(project / "var" / "all.tar.gz")["datas"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--no-data",
            "nothing to dump: --no-data leaves only storages, and DISKETTE_STORAGES is "
            "empty; declare storages, or give one with --storage",
        ),
        (
            "--no-storages",
            "nothing to dump: --no-storages leaves only data, and DISKETTE_APPS is empty",
        ),
    ],
)
def test_an_option_that_leaves_nothing_is_refused(project, settings, option, message):
    settings.DISKETTE_APPS = []
    settings.DISKETTE_STORAGES = [] if option == "--no-data" else settings.DISKETTE_STORAGES
    with pytest.raises(CommandError) as refused:
        run_command("diskette_dump", option)
    assert str(refused.value).startswith(message)
    assert not list((project / "var").glob("*.tar.gz*"))


def test_a_snapshot_leaves_out_a_storage_not_made_yet(demo, settings):
    """``--everything`` (the safety snapshot): a fresh laptop has no such folder."""
    media = demo / "var" / "media"
    missing = demo / "var" / "uploads"
    settings.DISKETTE_STORAGES = [media, missing]
    with pytest.raises(CommandError, match=r"^storage '.*uploads' does not exist$"):
        run_command("diskette_dump")
    output = run_command("diskette_dump", "--everything")
    assert f"Warning: storage '{missing}' does not exist: left out of the archive" in (
        output.stderr
    )
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    assert read_manifest(archive)["storages"] == ["var/media"]
    run_command("diskette_load", str(archive), no_data=True, keep=True)
    assert not missing.exists()  # the load leaves a storage it does not hold alone


def test_an_empty_storage_restores_as_a_created_empty_folder(demo, settings):
    empty = demo / "var" / "uploads"
    empty.mkdir()
    settings.DISKETTE_STORAGES = [empty]
    run_command("diskette_dump", "--no-data")
    archive = demo / "var" / "diskette_storages.tar.gz"
    assert media_members(archive) == ["var/uploads"]
    empty.rmdir()
    run_command("diskette_load", str(archive), no_data=True)
    assert empty.is_dir() and not list(empty.iterdir())
