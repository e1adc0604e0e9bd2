"""How the dump and load functions tell a person what they are doing.

The functions of :mod:`diskette.dump` and :mod:`diskette.load` never print:
they call a :class:`Reporter`, silent by default, which a management command
replaces with a :class:`CommandReporter` writing to its own ``stdout`` and
``stderr``. Progress lines (:class:`~diskette.progress.Progress`) go to the
standard error, and only where someone watches: a terminal, or a task that
relays the standard error to one and says so with ``--progress``. Anywhere
else, a command prints its results and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from .progress import Progress, human_size

__all__ = ["CommandReporter", "Reporter", "error_line", "human_size"]


def error_line(exc: BaseException) -> str:
    """An error's message on one line, or its type when it has none: how
    the failure of code diskette runs but did not write (a hook, a storage)
    is told inside diskette's own one-line messages."""
    return " ".join(str(exc).split()) or type(exc).__name__


class Reporter:
    """Receives messages and progress; the base class ignores them all."""

    #: Where progress lines are drawn, or ``None`` for nowhere.
    progress_output: IO[str] | None = None
    #: The progress line being drawn, until it ends.
    _open: Progress | None = None

    def info(self, message: str) -> None:
        """A step of the work has started or finished."""

    def detail(self, message: str) -> None:
        """How the work is done, for a person who asked (verbosity 2)."""

    def warning(self, message: str) -> None:
        """Something was skipped or looks wrong, but the work goes on."""

    def progress(
        self, total: int, label: str = "", unit: str = "bytes"
    ) -> Callable[[int], None]:
        """A function to call with each amount of work done, out of ``total``.

        It redraws a progress line where someone watches and does nothing
        otherwise, so callers need not care. A line left open (work that
        ended short of ``total``) is ended by the next message.
        """
        if self.progress_output is None:
            return _ignore
        self.end_progress()
        self._open = Progress(self.progress_output, total, label, unit)
        return self._open.advance

    def end_progress(self) -> None:
        """End the open progress line, if any, so a message starts on its own line."""
        if self._open is not None:
            self._open.close()
            self._open = None


def _ignore(count: int) -> None:
    """Progress nobody watches."""


class CommandReporter(Reporter):
    """Report through a management command's output streams.

    :param command: the running ``BaseCommand`` (for ``stdout``, ``stderr``
        and ``style``).
    :param verbosity: the command's ``--verbosity``; 0 silences the steps
        (warnings are always written; progress follows ``progress``).
    :param progress: draw progress on the standard error: ``True`` always
        (``--progress``), ``None`` when it is a terminal.
    :param steps: where :meth:`info` writes; the standard output by default.
    """

    def __init__(
        self,
        command: Any,
        verbosity: int = 1,
        progress: bool | None = None,
        steps: Any = None,
    ) -> None:
        self.command = command
        self.verbosity = verbosity
        self.steps = steps if steps is not None else command.stdout
        stderr = command.stderr
        if progress or (progress is None and verbosity >= 1 and stderr.isatty()):
            self.progress_output = stderr._out if hasattr(stderr, "_out") else stderr

    def info(self, message: str) -> None:
        self.end_progress()
        if self.verbosity >= 1:
            self.steps.write(message)

    def detail(self, message: str) -> None:
        if self.verbosity >= 2:
            self.info(message)

    def warning(self, message: str) -> None:
        self.end_progress()
        self.command.stderr.write(self.command.style.WARNING(f"Warning: {message}"))
