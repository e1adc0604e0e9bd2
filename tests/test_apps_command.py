import ast
import json
import re

import pytest
from django.core.management.base import CommandError

from diskette.discovery import LEFT_OUT
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
        "shop",
    ]
    options = dict(definitions)
    assert options["django.contrib.auth"] == dict(SEED_APPS_OUTPUT)["django.contrib.auth"]
    assert options["demo"]["comments"] == "Demo library"


def test_output_is_indented_by_four_spaces_like_the_guide():
    assert run_command("diskette_apps").stdout.startswith(
        '[\n    [\n        "django.contrib.admin",\n'
    )


def test_python_format_is_the_list_less_what_should_not_be_dumped():
    as_json = json.loads(run_command("diskette_apps").stdout)
    as_python = run_command("diskette_apps", format="python").stdout
    assert "True" in as_python and "true" not in as_python
    kept = [
        [name, {**options, "models": [m for m in options["models"] if m not in LEFT_OUT]}]
        for name, options in as_json
        if any(m not in LEFT_OUT for m in options["models"])
    ]
    assert ast.literal_eval(as_python) == kept
    assert [name for name, _ in kept] == [
        "django.contrib.auth",
        "django.contrib.sites",
        "demo",
        "shop",
    ]
    assert '                # "auth.Permission",  # migrate recreates it\n' in as_python
    assert (
        "    # Left out (sessions.Session: logins of the source site, rarely worth "
        'carrying):\n    # [\n    #     "django.contrib.sessions",\n'
    ) in as_python


def test_commented_definitions_uncomment_into_the_full_list():
    """What is commented out is still there, whole, for whoever wants it."""
    as_json = json.loads(run_command("diskette_apps").stdout)
    as_python = run_command("diskette_apps", format="python").stdout
    uncommented = re.sub(r"^(\s*)# (?!Left out)", r"\1", as_python, flags=re.MULTILINE)
    uncommented = re.sub(r"  # .*$|^\s*# Left out.*\n", "", uncommented, flags=re.MULTILINE)
    assert ast.literal_eval(uncommented) == as_json


def test_json_keeps_the_guide_list_and_notes_what_to_leave_out():
    output = run_command("diskette_apps")
    assert "auth.Permission" in output.stdout  # as the user guide shows it
    assert output.stderr == (
        "Note: usually left out of DISKETTE_APPS: admin.LogEntry (the admin's "
        "history, rarely worth carrying), auth.Permission (migrate recreates it), "
        "contenttypes.ContentType (migrate recreates it), sessions.Session (logins "
        "of the source site, rarely worth carrying); --format python comments them "
        "out.\n"
    )
    assert run_command("diskette_apps", include=["sites"]).stderr == ""
    assert run_command("diskette_apps", format="python").stderr == ""


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
    assert ast.literal_eval(target.read_text())[0][0] == "django.contrib.auth"


def test_unwritable_destination_is_refused(tmp_path):
    with pytest.raises(
        CommandError, match="^--destination '.*nowhere/apps.json': No such file"
    ):
        run_command("diskette_apps", destination=tmp_path / "nowhere" / "apps.json")
