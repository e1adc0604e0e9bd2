"""The ``--json`` contract of the commands, and how the tasks read it.

With ``--json`` each command prints exactly one JSON object on its standard
output: its result, or ``{"error": ...}`` beside the usual one-line error.
The tasks read nothing else, so the human messages may change freely.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from invoke import Config, Context, Exit

from demo.models import Book, Review
from diskette import tasks
from diskette.progress import Progress, human_size
from tests.conftest import run_command
from tests.test_load_command import wipe_database

pytestmark = pytest.mark.django_db


def only_json(stdout: str) -> dict:
    """The one JSON object ``stdout`` must consist of."""
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    answer = json.loads(lines[0])
    assert isinstance(answer, dict)
    return answer


def test_dump_json_names_the_archive_its_checksum_and_counts(demo):
    output = run_command("diskette_dump", "--json")
    answer = only_json(output.stdout)
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    assert answer["archive"] == str(archive)
    assert answer["size"] == archive.stat().st_size
    assert answer["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert answer["checked"] is False
    assert answer["objects"]["demo"]["demo.book"] == Book.objects.count() == 12
    assert answer["objects"]["everything else"] == {"demo.review": Review.objects.count()}
    assert answer["objects"]["django.contrib.auth"]["auth.user"] == User.objects.count()
    assert answer["storages"] == ["var/media"]
    assert "data/demo.jsonl" in answer["datas"]


def test_dump_check_json_says_what_would_be_dumped_and_writes_nothing(demo):
    answer = only_json(run_command("diskette_dump", "--check", "--json").stdout)
    assert answer["checked"] is True
    assert answer["objects"]["demo"]["demo.book"] == 12
    media = answer["storages"]["var/media"]
    assert media["files"] > 0 and media["size"] > 0
    assert not (demo / "var" / "diskette_data_storages.tar.gz").exists()


def test_a_failure_under_json_is_an_error_object_and_a_command_error(demo, settings):
    settings.DISKETTE_STORAGES = [demo / "nowhere"]
    stdout = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("diskette_dump", "--json", stdout=stdout, stderr=io.StringIO())
    answer = only_json(stdout.getvalue())
    assert answer == {"error": str(failure.value)}
    assert "nowhere" in answer["error"]


def test_load_json_reports_what_it_loaded(demo):
    dumped = only_json(run_command("diskette_dump", "--json").stdout)
    books = Book.objects.count()
    wipe_database()
    answer = only_json(
        run_command("diskette_load", dumped["archive"], "--json", "--keep").stdout
    )
    assert answer["archive"] == dumped["archive"]
    assert answer["loaded"] == dumped["datas"]
    assert answer["restored"] == ["var/media"]
    assert answer["objects"]["demo"]["demo.book"] == books == Book.objects.count()
    assert answer["removed"] is False


def test_reset_check_json_names_the_database(demo):
    answer = only_json(run_command("diskette_reset", "--check", "--json").stdout)
    assert answer["holds_data"] is True
    assert answer["reset"] is None
    assert answer["vendor"] in answer["database"]


def test_reset_check_lists_the_media_as_diskette_index_does(demo, tmp_path):
    """One command for what a pull needs here: the database, and the media
    the host may leave out, after any interrupted load was settled."""
    listed = tmp_path / "have.json"
    run_command("diskette_index", "--output", str(listed))
    (demo / "var" / "media" / "added-since.bin").write_bytes(b"new here")

    answer = only_json(
        run_command("diskette_reset", "--check", "--json", "--media-list").stdout
    )

    before = json.loads(listed.read_text())["storages"]["var/media"]
    assert answer["holds_data"] is True
    assert set(answer["media"]["storages"]["var/media"]) == {*before, "added-since.bin"}
    assert answer["media"]["storages"]["var/media"]["added-since.bin"] == [
        8,
        hashlib.sha256(b"new here").hexdigest(),
    ]
    assert "media" not in only_json(
        run_command("diskette_reset", "--check", "--json").stdout
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ("--media-list", "--noinput"),
            "--media-list says what --check finds: add --check",
        ),
        (("--media-list", "--check"), "--media-list is for --json: add it"),
    ],
)
def test_reset_media_list_needs_check_and_json(demo, options, message):
    with pytest.raises(CommandError, match=message):
        run_command("diskette_reset", *options)


def test_progress_draws_one_line_redrawn_in_place(demo):
    """``--progress`` draws on the standard error even off a terminal, for a
    task that relays it to a person, with the steps; the standard output
    keeps its one JSON object."""
    output = run_command("diskette_dump", "--json", "--progress")
    only_json(output.stdout)
    lines = output.stderr.split("\n")
    assert "=== Starting dump ===" in lines
    assert "Dumping data for application 'demo'" in lines
    drawn = [line for line in lines if line.startswith("\r")]
    # One line per progress, redrawn in place: no line of dots per update.
    assert [line.rsplit("\r", 1)[-1].split("  ")[0] for line in drawn] == [
        "Dumping django.contrib.auth",
        "Dumping django.contrib.sites",
        "Dumping demo",
        "Dumping shop",
        "Dumping everything else",
        "Archiving storages",
    ]
    assert re.search(
        r"Archiving storages  [\d.]+ KiB/[\d.]+ KiB  100%  .*/s  in 0:\d\d", drawn[-1]
    )


def test_without_a_terminal_a_command_prints_results_only(demo):
    output = run_command("diskette_dump")
    assert "\r" not in output.stderr and "\r" not in output.stdout


class Screen(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_shows_size_rate_and_time_left(monkeypatch):
    clock = iter([0.0, 2.0, 2.0])
    monkeypatch.setattr("diskette.progress.time.monotonic", lambda: next(clock))
    progress = Progress(Screen(), 4 * 2**20, "Downloading a.tar.gz")
    progress.done = 2**20
    assert progress.line(2.0) == (
        "Downloading a.tar.gz  1.0 MiB/4.0 MiB   25%  512.0 KiB/s  ETA 0:06"
    )


def test_progress_counts_objects_and_ends_its_line_once():
    screen = Screen()
    progress = Progress(screen, 3, "Dumping demo", unit="objects")
    for _ in range(3):
        progress.advance(1)
    progress.close()
    assert screen.getvalue().count("\n") == 1
    assert "3/3 objects  100%" in screen.getvalue()


def test_human_size():
    assert [human_size(n) for n in (512, 8.1 * 2**20, 3 * 2**40)] == [
        "512 B",
        "8.1 MiB",
        "3.0 TiB",
    ]


def test_a_mistyped_configuration_key_is_pointed_out(capsys):
    manage = str(Path(__file__).parents[1] / "sandbox" / "manage.py")
    settings = {**tasks.DEFAULTS, "manage": manage, "backupdir": "elsewhere"}
    config = Config(overrides={"diskette": settings})
    tasks.Project.from_config(Context(config=config))
    warning = capsys.readouterr().err
    assert "unknown configuration key 'diskette.backupdir'" in warning
    assert "did you mean 'diskette.backup_dir'?" in warning
    tasks.Project.from_config(Context(config=config))
    assert capsys.readouterr().err == ""  # once is enough


def test_json_refuses_what_would_break_its_one_object(demo):
    with pytest.raises(CommandError, match="--no-archive prints dumpdata command lines"):
        call_command("diskette_dump", "--no-archive", "--json", stdout=io.StringIO())
    with pytest.raises(CommandError, match="pass --noinput too"):
        call_command("diskette_reset", "--json", stdout=io.StringIO())


# What comes back from another host is parsed strictly and printed safely.


def test_an_answer_is_parsed_strictly():
    assert tasks._last_json_object('{"size": NaN}') is None
    assert tasks._last_json_object("[" * 100_000) is None
    assert tasks._last_json_object('noise\n{"archive": "a"}') == {"archive": "a"}


def test_a_message_from_elsewhere_is_one_bounded_printable_line():
    hostile = "line1\nline2\x1b]0;pwned\x07 " + "x" * 10_000
    line = tasks.one_line(hostile)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert line.startswith("line1 line2 ]0;pwned ")
    assert len(line) == tasks.MESSAGE_LIMIT


def test_a_configuration_value_of_the_wrong_type_names_the_key():
    config = Config(overrides={"diskette": {**tasks.DEFAULTS, "manage": 5}})
    with pytest.raises(Exit) as refused:
        tasks.Project.from_config(Context(config=config))
    assert refused.value.message == (
        "diskette.manage must be a non-empty line of text, not 5: fix it in invoke.yaml "
        "(fabric.yaml for fab)"
    )


def test_a_commands_last_error_line_is_made_safe_to_print():
    from invoke.runners import Result

    failed = Result(
        stderr="Traceback …\nCommandError: bad\x1b]0;pwned\x07 archive\n\n", exited=1
    )
    assert tasks.last_error(failed, "no message") == "bad ]0;pwned archive"
    assert tasks.last_error(Result(stderr="", exited=127), "exit 127") == "exit 127"
