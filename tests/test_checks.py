import pytest
from django.core.checks import run_checks
from django.core.management.base import CommandError

from tests.conftest import run_command
from tests.projects import SandboxCopy
from tests.test_conf import WRONG_VALUES


def diskette_messages():
    return [(m.id, m.msg) for m in run_checks(tags=["diskette"])]


def test_valid_settings_pass(settings):
    assert diskette_messages() == []


def test_bad_setting_is_an_error(settings):
    settings.DISKETTE_DUMP_PERMISSIONS = "644"
    assert diskette_messages() == [
        (
            "diskette.E001",
            "DISKETTE_DUMP_PERMISSIONS must be an octal mode such as 0o600, not '644'",
        )
    ]


def test_every_bad_definition_is_an_error(settings):
    settings.DISKETTE_APPS = [
        ["a", {"models": "auth", "natral_foreign": True}],
        ["b", {"models": "nope"}],
    ]
    assert diskette_messages() == [
        (
            "diskette.E002",
            "DISKETTE_APPS[0] 'a': unknown option 'natral_foreign' (valid: "
            "comments, natural_foreign, natural_primary, use_base_manager, "
            "models, excludes, filename, dump_command, allow_drain, is_drain)",
        ),
        (
            "diskette.E002",
            "DISKETTE_APPS[1] 'b': models: unknown application label 'nope' in 'nope'",
        ),
    ]


def test_a_model_in_two_definitions_is_a_warning(settings):
    settings.DISKETTE_APPS = [["a", {"models": "sites"}], ["b", {"models": "sites.Site"}]]
    assert diskette_messages() == [
        ("diskette.W002", "model sites.Site is dumped by both 'a' and 'b'")
    ]


def test_a_missing_storage_is_only_a_warning(settings, tmp_path):
    settings.DISKETTE_STORAGES = [tmp_path / "media"]
    assert diskette_messages() == [
        ("diskette.W001", f"storage '{tmp_path / 'media'}' does not exist")
    ]


@pytest.mark.django_db
def test_the_dump_command_refuses_with_the_check_message(settings, project):
    settings.DISKETTE_APPS = [["a", {"models": "auth", "natral_foreign": True}]]
    ((_, message),) = diskette_messages()
    with pytest.raises(CommandError) as refused:
        run_command("diskette_dump")
    assert str(refused.value) == message


@pytest.mark.parametrize(("name", "value", "message"), WRONG_VALUES)
def test_a_wrong_type_is_one_error_never_a_crash(settings, name, value, message):
    setattr(settings, name, value)
    ((check_id, text),) = diskette_messages()
    assert check_id == "diskette.E001"
    assert text.startswith(message)


def test_a_string_storage_is_one_error_not_one_per_character(settings):
    settings.DISKETTE_STORAGES = "media"
    assert diskette_messages() == [
        (
            "diskette.E001",
            "DISKETTE_STORAGES must be a list of folders, e.g. [MEDIA_ROOT], not str",
        )
    ]


def test_a_relative_storage_is_checked_below_the_base_dir(settings, tmp_path):
    (tmp_path / "var" / "media").mkdir(parents=True)
    settings.BASE_DIR = tmp_path  # the current directory is elsewhere
    settings.DISKETTE_STORAGES = ["var/media", "var/nope"]
    assert diskette_messages() == [("diskette.W001", "storage 'var/nope' does not exist")]


def test_storages_the_commands_would_refuse_are_a_warning(settings, tmp_path):
    """Overlapping storages, or the project folder itself: every command
    refuses them, so ``check`` says so too (a warning: the site still runs)."""
    media = tmp_path / "var" / "media"
    media.mkdir(parents=True)
    settings.BASE_DIR = tmp_path
    settings.DISKETTE_STORAGES = [media, tmp_path / "var"]
    assert diskette_messages() == [
        (
            "diskette.W003",
            f"storage '{tmp_path / 'var'}' overlaps storage '{media}': list each folder "
            "once, and none inside another",
        )
    ]
    settings.DISKETTE_STORAGES = [tmp_path]
    ((message_id, message),) = diskette_messages()
    assert message_id == "diskette.W003"
    assert message.startswith(f"storage '{tmp_path}' is the base directory '{tmp_path}' itself")


@pytest.mark.subprocess
def test_manage_py_check_names_a_path_given_for_a_list(tmp_path):
    """The new user's mistake, through the real ``manage.py check``."""
    copy = SandboxCopy.create(tmp_path / "project")
    copy.use_settings(copy.write_settings("wrong", "DISKETTE_STORAGES = MEDIA_ROOT\n"))
    result = copy.manage("check", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        "(diskette.E001) DISKETTE_STORAGES must be a list of folders, e.g. "
        "[MEDIA_ROOT], not PosixPath"
    ) in result.stderr
    assert result.stderr.count("diskette.E001") == 1


def test_a_misspelled_setting_is_a_warning_naming_the_right_one(settings, tmp_path):
    settings.DISKETTE_STORAGE = [tmp_path]  # a typo: the media would be left out
    assert diskette_messages() == [
        (
            "diskette.W004",
            "DISKETTE_STORAGE is not a setting diskette reads: did you mean DISKETTE_STORAGES?",
        )
    ]


def test_a_dump_command_that_would_write_content_type_ids_is_a_warning(settings):
    """diskette's own dump names content types by natural key; a dumpdata
    work-alike without natural_foreign writes their ids, which differ
    between databases."""
    settings.DISKETTE_APPS = [
        ["shop", {"models": ["shop.Note"], "dump_command": "polymorphic_dumpdata"}]
    ]
    assert diskette_messages() == [
        (
            "diskette.W005",
            "'shop': dump_command 'polymorphic_dumpdata' would write "
            "shop.Note.content_type as ids, which differ between databases",
        )
    ]
    settings.DISKETTE_APPS[0][1]["natural_foreign"] = True
    assert diskette_messages() == []
