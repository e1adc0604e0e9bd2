import ast
import json

import pytest
from django.core.management.base import CommandError

from tests.conftest import run_command
from tests.test_seed_project import SEED_APPS_OUTPUT


def test_json_lists_every_installed_app_with_models_in_order():
    definitions = json.loads(run_command("diskette_apps").stdout)
    assert [name for name, _ in definitions] == [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.sites",
        "demo",
    ]
    options = dict(definitions)
    assert options["django.contrib.auth"] == dict(SEED_APPS_OUTPUT)["django.contrib.auth"]
    assert options["demo"]["comments"] == "Demo library"


def test_output_is_indented_by_four_spaces_like_the_guide():
    assert run_command("diskette_apps").stdout.startswith(
        '[\n    [\n        "django.contrib.admin",\n'
    )


def test_python_format_is_the_same_list_ready_for_settings():
    as_json = json.loads(run_command("diskette_apps").stdout)
    as_python = run_command("diskette_apps", format="python").stdout
    assert "True" in as_python and "true" not in as_python
    assert ast.literal_eval(as_python) == as_json


def test_its_output_is_a_valid_diskette_apps_setting(settings, project, db):
    settings.DISKETTE_APPS = json.loads(run_command("diskette_apps").stdout)
    output = run_command("diskette_dump", "--check")
    assert (
        "Data for application 'django.contrib.auth' (data/djangocontribauth.jsonl): "
        in output.stdout
    )


def test_app_and_exclude_filter_by_name_or_label():
    only = json.loads(
        run_command("diskette_apps", include=["auth", "django.contrib.sites"]).stdout
    )
    assert [name for name, _ in only] == ["django.contrib.auth", "django.contrib.sites"]
    rest = json.loads(run_command("diskette_apps", exclude=["admin", "demo"]).stdout)
    assert "django.contrib.admin" not in dict(rest) and "demo" not in dict(rest)


def test_unknown_app_in_a_filter_is_refused():
    with pytest.raises(CommandError, match="^'nope' is not an installed application$"):
        run_command("diskette_apps", exclude=["nope"])


def test_destination_writes_a_file(tmp_path):
    target = tmp_path / "apps.py"
    output = run_command("diskette_apps", format="python", destination=target)
    assert output.stdout == ""
    assert ast.literal_eval(target.read_text())[0][0] == "django.contrib.admin"


def test_unwritable_destination_is_refused(tmp_path):
    with pytest.raises(
        CommandError, match="^--destination '.*nowhere/apps.json': No such file"
    ):
        run_command("diskette_apps", destination=tmp_path / "nowhere" / "apps.json")
