"""A load here, fed an archive as it arrives: a pull that never stores it.

A first pull of production's media used to download the whole archive,
then read it all again to load it. :class:`LoadFeed` starts ``diskette_load
- --reset`` at once and writes each received block to its standard input,
so that the load verifies and stages the archive while it downloads.

The load resets nothing before it has read the archive to its last byte
(:func:`diskette.load.load`). So the feed holds back the last block it was
given until :meth:`LoadFeed.finish`: whoever feeds it first checks what the
host answered and waits for the safety snapshot, and until then the load
cannot drop anything. Leaving the block without releasing (a failed dump, a
failed snapshot, Ctrl-C) closes the load's input short: it refuses a cut
archive, and nothing here changes.

Nor does the load see a byte while the safety snapshot is being taken
(``ready``): it would lock the media folders to stage into them, which the
snapshot reads under a lock of its own. What arrives meanwhile waits in a
spool file, in memory while it is small.

Closed unreleased, the feed ends the load's input with a byte no archive
ends with (:data:`CUT`): the load refuses it even if the bytes it had made
a whole archive (the host printed after it, say). Bytes that do not start
as a gzip file are given to it not at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: pipes keep their size
    fcntl = None  # type: ignore[assignment]

from invoke import Context
from invoke.runners import Result

from .exceptions import LocalWriteError
from .files import BLOCK_SIZE
from .tasks import Project, json_answer

#: What waits for the snapshot in memory; more spills to a file.
SPOOL_IN_MEMORY = 64 * 1024 * 1024


class LoadStopped(Exception):
    """The load ended before it was given the whole archive: its answer
    (:meth:`LoadFeed.answer`) says why."""


#: What starts every gzip file: bytes that do not are no archive of ours,
#: and never reach the load (a host printing as it starts, say).
GZIP_MAGIC = b"\x1f\x8b"
#: The end of the load's standard error kept, where its last word is.
ERRORS_KEPT = 64 * 1024
#: Written to an unreleased load's input before it is closed: whatever it
#: read before, this makes its archive end with bytes it refuses.
CUT = b"!"


class LoadFeed:
    """``arguments`` (a ``diskette_load -`` command) run here, fed as it goes.

    :meth:`write` each block received; :meth:`finish` once the archive is
    vouched for, to let the load end and get its answer. :meth:`close`
    (or leaving the ``with`` block) before that cuts its input short.

    :param ready: whether the load may be given bytes yet; until then they
        wait in a spool file in ``spool``.
    """

    def __init__(
        self,
        c: Context,
        project: Project,
        arguments: list[str],
        *,
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
            stderr=subprocess.PIPE,
            # Its own session: Ctrl-C on the terminal reaches this task only,
            # which hands it on once (_wait), rather than twice.
            start_new_session=True,
        )
        _widen(self._stdin)
        # Both read as they come: a project printing more than a pipe holds
        # would otherwise block the load, and this feed with it. Its
        # standard error is shown as it comes, and its end kept: a load that
        # dies without an answer is told by its last line (a traceback's).
        self.printed = bytearray()
        self.said = bytearray()
        self.readers = [
            threading.Thread(target=self._read_answer, daemon=True),
            threading.Thread(target=self._relay_errors, daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self.size = 0
        self.ready = ready
        self.spool = spool
        self.waiting: IO[bytes] | None = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_IN_MEMORY, dir=None if spool is None else str(spool)
        )
        self.head = b""  # the first bytes, until they show a gzip file or not
        self.foreign = False
        self.held = b""
        self.released = False
        self.closed = False

    @property
    def sha256(self) -> None:
        """Not computed: the load checks the archive to its last byte (its
        gzip CRC, each member's sha256), which a transfer through SSH,
        whose packets are authenticated, cannot corrupt unnoticed."""
        return None

    def write(self, data: Any) -> int:
        """Pass on the block held so far, and hold this one.

        :raises LoadStopped: the load is gone (it refused the archive).
        :raises LocalWriteError: the spool file cannot be written.
        """
        self.size += len(data)
        if len(self.head) < len(GZIP_MAGIC):
            self.head += bytes(data[: len(GZIP_MAGIC) - len(self.head)])
            self.foreign = not GZIP_MAGIC.startswith(self.head)
        if self.foreign:  # dropped: the size the host answers will tell
            return len(data)
        if self.process.poll() is not None:
            raise LoadStopped
        if self.waiting is not None and not self.ready():
            self._spool(self.held)
        else:
            self._send(self.held)
        self.held = bytes(data)
        return len(data)

    def finish(self) -> dict[str, Any]:
        """Give the load the last block, end its input, and return its answer.

        Called once ``ready`` (which it does not ask again) and once the
        host's answer vouched for the bytes: the load may now reset. A
        load that stopped before tells why in its answer.

        :raises CommandFailed: as :func:`diskette.tasks.run_json` does.
        """
        if self.foreign:  # what came is no archive: never released
            self.close()
            return self.answer()
        try:
            self._send(self.held)
            self.held = b""
            self._stdin.close()
            self.released = True  # not before: cut short until here
        except (LoadStopped, BrokenPipeError):
            pass  # it stopped: its answer says why
        return self.answer()

    def close(self) -> None:
        """Unreleased, end the load's input with bytes it refuses, then wait
        for it: it changes nothing, and no load outlives the pull."""
        if self.closed:
            return
        self.closed = True
        if self.waiting is not None:
            self.waiting.close()
        if not self.released:
            with contextlib.suppress(OSError):
                self._stdin.write(CUT)
                self._stdin.flush()
        with contextlib.suppress(OSError):
            self._stdin.close()
        self._wait()

    def answer(self) -> dict[str, Any]:
        """The load's ``--json`` answer, once it ended.

        :raises CommandFailed: as :func:`diskette.tasks.run_json` does.
        """
        self._wait()
        status = self.process.returncode
        said = self.said.decode(errors="replace")
        if status < 0:
            said += f"\nkilled by signal {-status}"
        return json_answer(
            Result(
                stdout=self.printed.decode(errors="replace"),
                stderr=said,
                command=self.command,
                exited=status,
            )
        )

    def __enter__(self) -> LoadFeed:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _wait(self) -> None:
        """Wait for the load to end, through Ctrl-C: handed on to the load,
        which answers what it did, so that the task can put things back."""
        interrupted = False
        while True:
            try:
                for reader in self.readers:
                    reader.join()
                self.process.wait()
                return
            except KeyboardInterrupt:
                if not interrupted:
                    interrupted = True
                    print(
                        "Interrupted: waiting for the load here to stop",
                        file=sys.stderr,
                    )
                    with contextlib.suppress(OSError):
                        self.process.send_signal(signal.SIGINT)

    def _read_answer(self) -> None:
        assert self.process.stdout is not None  # stdout=PIPE
        with self.process.stdout as printed:
            while block := os.read(printed.fileno(), 65536):
                self.printed += block

    def _relay_errors(self) -> None:
        assert self.process.stderr is not None  # stderr=PIPE
        shown = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
        with self.process.stderr as errors:  # each block as it comes
            while block := os.read(errors.fileno(), 65536):
                if shown is not None:
                    with contextlib.suppress(OSError, ValueError):
                        shown.write(block)
                        shown.flush()
                self.said += block
                del self.said[:-ERRORS_KEPT]

    @property
    def _stdin(self) -> Any:
        assert self.process.stdin is not None  # stdin=PIPE
        return self.process.stdin

    def _spool(self, data: bytes) -> None:
        assert self.waiting is not None
        try:
            self.waiting.write(data)
        except OSError as exc:
            where = self.spool or tempfile.gettempdir()
            raise LocalWriteError(
                f"cannot keep what arrives while the safety snapshot is taken in "
                f"'{where}': {exc.strerror or exc}; free some space there or set "
                "diskette.remote.download_dir elsewhere"
            ) from exc

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
            self._stdin.flush()  # a small block too: the load stages as it comes
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
