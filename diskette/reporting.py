"""How the dump and load functions tell a person what they are doing.

The functions of :mod:`diskette.dump` never print: they call a
:class:`Reporter`, silent by default, which a management command replaces with
a :class:`CommandReporter` writing to its own ``stdout``/``stderr``. Progress
bars are drawn only on a terminal, as ``dumpdata`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from django.core.serializers.base import ProgressBar


class Reporter:
    """Receives messages and progress; the base class ignores them all."""

    #: A terminal stream to draw progress bars on, or ``None``.
    progress_output: IO[str] | None = None

    def info(self, message: str) -> None:
        """A step of the work has started or finished."""

    def warning(self, message: str) -> None:
        """Something was skipped or looks wrong, but the work goes on."""

    def progress(self, total: int) -> Callable[[int], None]:
        """A function to call with each amount of work done, out of ``total``.

        It draws a progress bar when there is a terminal, and does nothing
        otherwise, so callers need not care.
        """
        if self.progress_output is None or total <= 0:
            return lambda count: None
        bar, done = ProgressBar(self.progress_output, total), 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            bar.update(min(done, total))

        return advance


class CommandReporter(Reporter):
    """Report through a management command's output streams.

    :param command: the running ``BaseCommand`` (for ``stdout``, ``stderr``
        and ``style``).
    :param verbosity: the command's ``--verbosity``; 0 silences everything
        but warnings.
    """

    def __init__(self, command: Any, verbosity: int = 1) -> None:
        self.command = command
        self.verbosity = verbosity
        stdout = command.stdout
        if verbosity >= 1 and stdout.isatty():
            self.progress_output = stdout

    def info(self, message: str) -> None:
        if self.verbosity >= 1:
            self.command.stdout.write(message)

    def warning(self, message: str) -> None:
        self.command.stderr.write(self.command.style.WARNING(f"Warning: {message}"))


def human_size(size: float) -> str:
    """Size in bytes for people: ``512 B``, ``8.1 MiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"
