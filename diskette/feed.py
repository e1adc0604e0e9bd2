"""A load here, fed an archive as it arrives: a pull that never stores it.

A first pull of production's media used to download the whole archive,
then read it all again to load it. :class:`LoadFeed` starts ``diskette_load
- --reset`` at once and writes each received block to its standard input,
so that the load verifies and stages the archive while it downloads.

The load resets nothing before it has read the archive to its last byte
(:func:`diskette.load.load`). So the feed holds back the last block it was
given until :meth:`LoadFeed.release`: whoever feeds it first checks what the
host answered and waits for the safety snapshot, and until then the load
cannot drop anything. Leaving the block without releasing (a failed dump, a
failed snapshot, Ctrl-C) closes the load's input short: it refuses a cut
archive, and nothing here changes.

Nor does the load see a byte while the safety snapshot is being taken
(``ready``): it would lock the media folders to stage into them, which the
snapshot reads under a lock of its own. What arrives meanwhile waits in a
spool file, in memory while it is small.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: pipes keep their size
    fcntl = None  # type: ignore[assignment]

from invoke import Context
from invoke.runners import Result

from .files import BLOCK_SIZE, Progress
from .tasks import Project, json_answer

#: What waits for the snapshot in memory; more spills to a file.
SPOOL_IN_MEMORY = 64 * 1024 * 1024


class LoadStopped(Exception):
    """The load ended before it was given the whole archive: its answer
    (:meth:`LoadFeed.answer`) says why."""


class LoadFeed:
    """``arguments`` (a ``diskette_load -`` command) run here, fed as it goes.

    Use as a context manager around the transfer; then ask :meth:`answer`.

    :param progress: called with the size of each block received.
    :param ready: whether the load may be given bytes yet; until then they
        wait in a spool file in ``spool``.
    """

    def __init__(
        self,
        c: Context,
        project: Project,
        arguments: list[str],
        *,
        progress: Progress | None = None,
        ready: Callable[[], bool] = lambda: True,
        spool: Path | None = None,
    ) -> None:
        self.command = project.command(*arguments, "--json")
        # As ``c.run`` would: its shell, its environment (Fabric's run.env).
        self.process = subprocess.Popen(
            self.command,
            shell=True,  # noqa: S602 - every part quoted by Project.command
            executable=c.config.run.shell,
            env={**os.environ, **(c.config.run.env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        _widen(self._stdin)
        self.size = 0
        self.progress = progress
        self.ready = ready
        self.waiting: IO[bytes] | None = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_IN_MEMORY, dir=None if spool is None else str(spool)
        )
        self.held = b""
        self.released = False
        self.answered: bytes | None = None

    @property
    def sha256(self) -> None:
        """Not computed: the load checks the archive to its last byte (its
        gzip CRC, each member's sha256), which a transfer through SSH,
        whose packets are authenticated, cannot corrupt unnoticed."""
        return None

    def write(self, data: Any) -> int:
        """Send the block held so far, and hold this one.

        :raises LoadStopped: the load is gone (it refused the archive).
        """
        self.size += len(data)
        if self.progress is not None:
            self.progress(len(data))
        if self.waiting is not None and not self.ready():
            self.waiting.write(self.held)
        else:
            self._send(self.held)
        self.held = bytes(data)
        return len(data)

    def release(self) -> None:
        """Send the last block and end the load's input: it may now reset.

        Called once ``ready``, which it does not ask again.

        :raises LoadStopped: the load is gone.
        """
        self._send(self.held)
        self.held = b""
        try:
            self._stdin.close()
        except BrokenPipeError as exc:
            raise LoadStopped from exc
        self.released = True

    def answer(self) -> dict[str, Any]:
        """The load's ``--json`` answer, once it ended.

        :raises CommandFailed: as :func:`diskette.tasks.run_json` does.
        """
        out = self._finish()
        status = self.process.returncode
        # Its error is in the answer; its standard error went to ours.
        return json_answer(
            Result(stdout=out.decode(errors="replace"), command=self.command, exited=status)
        )

    def __enter__(self) -> LoadFeed:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Unreleased, the load's input ends short: it refuses the cut
        archive and ends, changing nothing; waited for, so that no load
        outlives the pull that started it."""
        if self.released:
            return
        if self.waiting is not None:
            self.waiting.close()
        with contextlib.suppress(OSError):
            self._stdin.close()
        self._finish()

    def _finish(self) -> bytes:
        """What the load printed (its answer), once it ended; its input closed."""
        assert self.process.stdout is not None  # stdout=PIPE
        if self.answered is None:
            self.answered = self.process.stdout.read()
            self.process.stdout.close()
            self.process.wait()
        return self.answered

    @property
    def _stdin(self) -> Any:
        assert self.process.stdin is not None  # stdin=PIPE
        return self.process.stdin

    def _send(self, data: bytes) -> None:
        """Give ``data`` to the load, after what waited for it to be ready."""
        try:
            if self.waiting is not None:
                waited, self.waiting = self.waiting, None
                with waited:
                    waited.seek(0)
                    while block := waited.read(BLOCK_SIZE):
                        self._stdin.write(block)
            if data:
                self._stdin.write(data)
        except BrokenPipeError as exc:
            raise LoadStopped from exc


#: Linux's ``F_SETPIPE_SZ``; the standard library names it from Python 3.10 on.
SET_PIPE_SIZE = getattr(fcntl, "F_SETPIPE_SZ", 1031) if fcntl is not None else None
#: The pipe to the load: wider than Linux's 64 KiB, a block takes one wakeup.
PIPE_SIZE = 1024 * 1024


def _widen(pipe: Any) -> None:
    """Give ``pipe`` a :data:`PIPE_SIZE` buffer where the system allows it."""
    if SET_PIPE_SIZE is None or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size
        fcntl.fcntl(pipe.fileno(), SET_PIPE_SIZE, PIPE_SIZE)
