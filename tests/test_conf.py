import ast
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from diskette.conf import (
    DEFAULT_DUMP_PERMISSIONS,
    DEFAULTS,
    VALIDATORS,
    DisketteSettings,
    check_archive_filename,
    get_settings,
)
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


#: A wrong value of each setting, and the start of what the one error says.
WRONG_VALUES = [
    (
        "DISKETTE_APPS",
        {"django.contrib.sites": {}},
        "DISKETTE_APPS must be a list of [name, {options}] definitions, "
        'e.g. [["django.contrib.sites", {}]] (see `manage.py diskette_apps`), not dict',
    ),
    (
        "DISKETTE_APPS",
        "django.contrib.sites",
        "DISKETTE_APPS must be a list of [name, {options}] definitions",
    ),
    (
        "DISKETTE_APPS",
        ["sites"],
        "DISKETTE_APPS[0] must be a [name, {options}] pair, not str",
    ),
    (
        "DISKETTE_STORAGES",
        Path("/srv/media"),
        "DISKETTE_STORAGES must be a list of folders, e.g. [MEDIA_ROOT], not PosixPath",
    ),
    (
        "DISKETTE_STORAGES",
        "var/media",
        "DISKETTE_STORAGES must be a list of folders, e.g. [MEDIA_ROOT], not str",
    ),
    (
        "DISKETTE_STORAGES",
        [3],
        'DISKETTE_STORAGES[0] must be a folder path (str or Path) or {"storage": '
        '"default"}, not int',
    ),
    (
        "DISKETTE_STORAGES",
        [{"storage": "../up"}],
        "DISKETTE_STORAGES[0] must name a STORAGES alias, e.g. "
        "{\"storage\": \"default\"}, not '../up'",
    ),
    (
        "DISKETTE_STORAGES",
        [{"storage": "default", "bucket": "x"}],
        "DISKETTE_STORAGES[0] has an unknown key 'bucket'; the keys are excludes, "
        "load_to, prefix, storage",
    ),
    (
        "DISKETTE_STORAGES",
        [{"storage": "default", "prefix": "a/../../b"}],
        "DISKETTE_STORAGES[0] 'prefix' must be a folder of the storage such as "
        "'uploads', not 'a/../../b'",
    ),
    (
        "DISKETTE_REGISTRY_RECIPIENTS",
        ["ssh-ed25519 AAAA"],
        "DISKETTE_REGISTRY_RECIPIENTS[0] must be an age public key ('age1' and 58 "
        "letters and digits, as age-keygen prints it), not 'ssh-ed25519 ...'",
    ),
    (
        "DISKETTE_STORAGES_EXCLUDES",
        "cache/*",
        'DISKETTE_STORAGES_EXCLUDES must be a list of patterns, e.g. ["cache/*"], not str',
    ),
    (
        "DISKETTE_STORAGES_EXCLUDES",
        ["ok", 1],
        'DISKETTE_STORAGES_EXCLUDES[1] must be a str pattern such as "cache/*", not int',
    ),
    (
        "DISKETTE_BASE_DIR",
        ["/srv"],
        "DISKETTE_BASE_DIR must be a folder path, e.g. BASE_DIR",
    ),
    ("DISKETTE_DUMP_PATH", 12, "DISKETTE_DUMP_PATH must be a folder path, e.g. BASE_DIR"),
    ("DISKETTE_LOAD_STORAGES_PATH", [], "DISKETTE_LOAD_STORAGES_PATH must be a folder"),
    ("DISKETTE_DUMP_FILENAME", "dump.zip", "DISKETTE_DUMP_FILENAME: 'dump.zip' must end"),
    (
        "DISKETTE_DUMP_FILENAME",
        Path("x.tar.gz"),
        "DISKETTE_DUMP_FILENAME: must be a string",
    ),
    ("DISKETTE_DUMP_PERMISSIONS", "644", "DISKETTE_DUMP_PERMISSIONS must be an octal"),
    ("DISKETTE_DUMP_PERMISSIONS", True, "DISKETTE_DUMP_PERMISSIONS must be an octal"),
    (
        "DISKETTE_DUMP_FILENAME",
        "{features:>9999999999}.tar.gz",  # would fill memory at the dump
        "DISKETTE_DUMP_FILENAME: '{features:>9999999999}.tar.gz' formats {features}",
    ),
    ("DISKETTE_DOWNLOAD_TIMEOUT", float("nan"), "DISKETTE_DOWNLOAD_TIMEOUT must be a number"),
    ("DISKETTE_DOWNLOAD_TIMEOUT", 10**400, "DISKETTE_DOWNLOAD_TIMEOUT must be a number"),
    (
        "DISKETTE_DUMP_PERMISSIONS",
        644,  # decimal: 0o1204, readable by all but its owner
        "DISKETTE_DUMP_PERMISSIONS must be an octal mode such as 0o600, not 644 "
        "(write 644 as 0o644)",
    ),
    (
        "DISKETTE_DUMP_PERMISSIONS",
        0o200,
        "DISKETTE_DUMP_PERMISSIONS must let the owner read the archive (0o400), not 0o200",
    ),
    (
        "DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS",
        "https://",
        "DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS must be a list such as ['https://']",
    ),
    (
        "DISKETTE_DOWNLOAD_ALLOW_REDIRECT",
        "no",
        "DISKETTE_DOWNLOAD_ALLOW_REDIRECT must be True",
    ),
    ("DISKETTE_DOWNLOAD_TIMEOUT", "10", "DISKETTE_DOWNLOAD_TIMEOUT must be a number of"),
    ("DISKETTE_PROTECTED", "yes", "DISKETTE_PROTECTED must be True or False, not 'yes'"),
]


@pytest.mark.parametrize(("name", "value", "message"), WRONG_VALUES)
def test_invalid_setting_is_named(settings, name, value, message):
    setattr(settings, name, value)
    with pytest.raises(ConfigurationError) as refused:
        get_settings()
    assert str(refused.value).startswith(message)


def test_every_setting_has_one_default_and_one_check():
    assert VALIDATORS.keys() == DEFAULTS.keys()
    # DISKETTE_STORAGES fills two: its folders, and its {"storage": alias} entries.
    assert {f.name for f in fields(DisketteSettings)} - {"storage_aliases"} == {
        name.removeprefix("DISKETTE_").lower() for name in DEFAULTS
    }
    assert all(f.default is MISSING for f in fields(DisketteSettings))


def test_settings_doc_lists_every_setting_with_its_default():
    """docs/settings.md's table is the defaults table, in the same order."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    rows = re.findall(r"^\| `(DISKETTE_\w+)` \| ([^|]+) \|", doc, re.MULTILINE)
    assert [name for name, _ in rows] == list(DEFAULTS)
    for name, shown in rows:
        default = DEFAULTS[name]
        if default is None:
            continue  # worked out when read; the row says how
        assert ast.literal_eval(shown.strip().strip("`")) == default, name


def test_base_dir_is_the_setting_then_base_dir_then_cwd(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings.BASE_DIR = tmp_path / "project"
    assert get_settings().base_dir == tmp_path / "project"
    settings.BASE_DIR = "relative"  # an old startproject's os.path string
    assert get_settings().base_dir == tmp_path / "relative"
    settings.DISKETTE_BASE_DIR = "/srv/site"
    assert get_settings().base_dir == Path("/srv/site")
    del settings.DISKETTE_BASE_DIR
    settings.BASE_DIR = None  # not a path: diskette 0.6's current directory
    assert get_settings().base_dir == tmp_path
    del settings.BASE_DIR
    assert get_settings().base_dir == tmp_path


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
