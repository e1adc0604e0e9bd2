"""``diskette.feed.LoadFeed``: what reaches the load, and when.

The load is a real process: a stand-in ``manage.py`` that copies what it
reads to a file as it comes and answers, at the end of its input, with what
it got. What the real load does with those bytes is tested through ``fab``
(``tests/test_remote.py``); here, the feed's own promises: the last block
waits for :meth:`~LoadFeed.finish`, nothing is given before ``ready``, a
feed closed unreleased ends with a byte no archive ends with, and bytes
that are no gzip file are given to nobody.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from invoke import Context

from diskette.feed import CUT, LoadFeed, LoadStopped
from diskette.tasks import Project

#: Copies its standard input to argv[1]'s file as it comes; answers with
#: the bytes it got once its input ends.
STAND_IN = """
import json, sys
received = open(sys.argv[1], "wb", buffering=0)
total = 0
while block := sys.stdin.buffer.read1(65536):
    received.write(block)
    total += len(block)
print(json.dumps({"received": total}))
"""

GZIP = b"\x1f\x8b"

pytestmark = pytest.mark.subprocess  # each test runs a stand-in load


@pytest.fixture
def received(tmp_path: Path) -> Path:
    return tmp_path / "received.bin"


def feed(tmp_path: Path, received: Path, **options) -> LoadFeed:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    # Project.command runs "python MANAGE ARGS... --json": the file comes first.
    project = Project(python=sys.executable, manage=str(script))
    return LoadFeed(Context(), project, [str(received)], spool=tmp_path, **options)


def settled(path: Path, expected: bytes, seconds: float = 10) -> bytes:
    """What ``path`` holds once it holds ``expected`` (or the time is up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes() == expected:
            break
        time.sleep(0.01)
    return path.read_bytes() if path.exists() else b""


def test_the_last_block_waits_for_finish(tmp_path, received):
    with feed(tmp_path, received) as load:
        load.write(GZIP + b"first")
        load.write(b"second")
        load.write(b"last")
        assert settled(received, GZIP + b"firstsecond") == GZIP + b"firstsecond"
        time.sleep(0.2)
        assert received.read_bytes() == GZIP + b"firstsecond"  # not "last"

        answer = load.finish()

    assert received.read_bytes() == GZIP + b"firstsecondlast"
    assert answer == {"received": len(GZIP + b"firstsecondlast")}


def test_nothing_reaches_the_load_before_it_is_ready(tmp_path, received):
    ready = False
    with feed(tmp_path, received, ready=lambda: ready) as load:
        load.write(GZIP + b"one")
        load.write(b"two")
        load.write(b"three")
        time.sleep(0.3)
        assert settled(received, b"", 0.1) == b""

        ready = True
        load.write(b"four")  # what waited goes first; "four" is held
        assert settled(received, GZIP + b"onetwothree") == GZIP + b"onetwothree"
        load.finish()

    assert received.read_bytes() == GZIP + b"onetwothreefour"


def test_a_feed_closed_unreleased_ends_with_a_byte_no_archive_ends_with(tmp_path, received):
    load = feed(tmp_path, received)
    load.write(GZIP + b"a whole archive, say")
    load.write(b"and what the host printed after it")
    load.close()

    assert received.read_bytes() == GZIP + b"a whole archive, say" + CUT
    assert load.answer() == {"received": len(GZIP + b"a whole archive, say" + CUT)}


def test_what_does_not_start_as_gzip_reaches_no_load(tmp_path, received):
    load = feed(tmp_path, received)
    load.write(b"settings loaded\n")
    load.write(GZIP + b"the archive after the print")
    load.write(b"its end")
    assert load.size == len(
        b"settings loaded\n" + GZIP + b"the archive after the printits end"
    )
    load.close()

    assert received.read_bytes() == CUT


def test_a_load_that_ended_stops_the_feed(tmp_path, received):
    script = tmp_path / "gone.py"
    script.write_text("import json; print(json.dumps({'error': 'refused at once'}))\n")
    project = Project(python=sys.executable, manage=str(script))
    load = LoadFeed(Context(), project, [], spool=tmp_path)
    load.process.wait(timeout=30)

    with pytest.raises(LoadStopped):
        load.write(GZIP + b"more")
        load.write(b"and more")
    load.close()
    assert json.loads(load.printed) == {"error": "refused at once"}
