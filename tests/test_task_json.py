"""``--json`` on the Invoke tasks: one JSON object on the standard output.

Scripts drive the tasks as the tasks drive the commands: through one JSON
object, the result or ``{"error": ...}``, with every message on the
standard error. Real ``inv`` in a seeded copy of the sandbox.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.projects import SandboxCopy

pytestmark = pytest.mark.subprocess


@pytest.fixture
def project(tmp_path: Path, seeded) -> SandboxCopy:
    copy = seeded.copy(tmp_path / "project", books=12)
    (copy.root / "tasks.py").write_text("from diskette.tasks import ns\n")
    return copy


def answer_of(stdout: str) -> dict:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_dump_json_is_the_command_answer(project):
    result = project.inv("dump", "--json")
    answer = answer_of(result.stdout)
    archive = Path(answer["archive"])
    assert answer["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert answer["size"] == archive.stat().st_size
    assert answer["objects"]["demo"]["demo.book"] == 12


def test_reset_and_load_json_says_what_was_dropped_saved_and_loaded(project):
    dumped = answer_of(project.inv("dump", "--json").stdout)
    result = project.inv("reset-and-load", dumped["archive"], "--yes", "--json")
    answer = answer_of(result.stdout)
    assert answer["archive"] == dumped["archive"]
    assert answer["database"].split()[0] in ("sqlite", "postgresql", "mysql")
    assert Path(answer["snapshot"]).is_file()  # the database held data
    assert answer["loaded"] == dumped["datas"]
    assert answer["restored"] == ["var/media"]
    assert answer["objects"]["demo"]["demo.book"] == 12
    # The human messages went to the standard error.
    assert "Safety snapshot of the current database and media" in result.stderr


def test_a_failed_task_answers_with_its_error(project):
    result = project.inv("reset-and-load", "nowhere.tar.gz", "--yes", "--json", check=False)
    assert result.returncode == 1
    answer = answer_of(result.stdout)
    assert set(answer) == {"error"}
    assert "nowhere.tar.gz" in answer["error"]


def test_outside_the_project_a_task_names_the_setting_to_fix(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tasks.py").write_text("from diskette.tasks import ns\n")
    result = project.inv("dump", check=False, cwd=elsewhere)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"manage.py not found in {elsewhere}: run this from the project's folder, "
        "or set diskette.manage in invoke.yaml (fabric.yaml for fab)"
    ]


def test_a_settings_module_that_does_not_exist_is_one_line(project):
    (project.root / "invoke.yaml").write_text("diskette:\n  settings: project.settingz\n")
    result = project.inv("dump", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"settings module project.settingz not found from {project.root}: fix "
        "diskette.settings in invoke.yaml (fabric.yaml for fab)"
    ]


def test_a_failing_command_under_json_answers_on_stdout_alone(project):
    """The commands' side of the contract, through a real ``manage.py``."""
    result = project.manage("diskette_dump", "--json", "--storage", "nowhere", check=False)
    assert result.returncode == 1
    assert answer_of(result.stdout) == {"error": "storage 'nowhere' does not exist"}
    assert result.stderr == ""  # not said a second time


def test_a_wrong_option_under_json_still_answers(project):
    result = project.manage("diskette_dump", "--json", "--bogus", check=False)
    assert result.returncode == 2  # argparse's, with its usage on stderr
    assert answer_of(result.stdout) == {"error": "unrecognized arguments: --bogus"}
