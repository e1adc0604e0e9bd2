from pathlib import Path

import pytest

from diskette.conf import DEFAULT_DUMP_PERMISSIONS, check_archive_filename, get_settings
from diskette.exceptions import ConfigurationError


def test_defaults_apply_when_project_sets_nothing(settings):
    for name in ("DISKETTE_STORAGES", "DISKETTE_DUMP_PATH"):
        delattr(settings, name)
    resolved = get_settings()
    assert resolved.storages == ()
    assert resolved.dump_path is None
    assert resolved.dump_filename == "diskette{features}.tar.gz"
    assert resolved.dump_permissions == DEFAULT_DUMP_PERMISSIONS == 0o600
    assert resolved.load_storages_path is None


def test_settings_are_read_at_call_time(settings):
    settings.DISKETTE_STORAGES = ["var/media"]
    settings.DISKETTE_DUMP_PATH = "/srv/dumps"
    resolved = get_settings()
    assert resolved.storages == (Path("var/media"),)
    assert resolved.dump_path == Path("/srv/dumps")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DISKETTE_STORAGES", "var/media", "DISKETTE_STORAGES must be a list, not str"),
        ("DISKETTE_STORAGES", [3], "DISKETTE_STORAGES[0] must be a str or Path, not int"),
        (
            "DISKETTE_STORAGES_EXCLUDES",
            ["ok", 1],
            "DISKETTE_STORAGES_EXCLUDES[1] must be a str",
        ),
        ("DISKETTE_DUMP_PATH", 12, "DISKETTE_DUMP_PATH must be a path, not int"),
        ("DISKETTE_LOAD_STORAGES_PATH", [], "DISKETTE_LOAD_STORAGES_PATH must be a path"),
        (
            "DISKETTE_DUMP_FILENAME",
            "dump.zip",
            "DISKETTE_DUMP_FILENAME: 'dump.zip' must end",
        ),
        ("DISKETTE_DUMP_PERMISSIONS", "644", "DISKETTE_DUMP_PERMISSIONS must be an octal"),
        ("DISKETTE_DUMP_PERMISSIONS", True, "DISKETTE_DUMP_PERMISSIONS must be an octal"),
    ],
)
def test_invalid_setting_is_named(settings, name, value, message):
    setattr(settings, name, value)
    with pytest.raises(
        ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        get_settings()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (None, "must be a string"),
        ("dumps/x.tar.gz", "must be a file name, not a path"),
        ("x.tgz", "must end with '.tar.gz'"),
        ("x{host}.tar.gz", r"unknown field \{host\}"),
        ("x{.tar.gz", "not a valid template"),
    ],
)
def test_archive_filename_template_is_checked(template, message):
    with pytest.raises(ConfigurationError, match=message):
        check_archive_filename(template)


def test_archive_filename_template_accepts_its_fields():
    check_archive_filename("backup{features}_{date}.tar.gz")
