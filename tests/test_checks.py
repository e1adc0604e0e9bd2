import pytest
from django.core.checks import run_checks
from django.core.management.base import CommandError

from tests.conftest import run_command


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
