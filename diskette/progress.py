"""One progress line, redrawn in place, as pip and rsync draw theirs.

``Verifying archive  41.2 MiB/120.0 MiB   34%  52.3 MiB/s  ETA 0:02``: what is
being done, how much of how much, the rate and the time left. It is drawn
only where a person watches (a terminal, or a task relaying the standard
error to one, see ``--progress``), at most ten times a second so that
drawing never costs more than the work, and ends with a newline once done.
Everything diskette moves or counts goes through this one class: the dump,
the load, HTTP downloads and SSH transfers.
"""

from __future__ import annotations

import time
from typing import IO

#: Seconds between two redraws.
REDRAW_INTERVAL = 0.1
#: Erase from the cursor to the end of the line (ANSI), after a shorter redraw.
CLEAR_TO_END = "\x1b[K"


class Progress:
    """A progress line on ``stream`` for ``total`` units of work.

    :param unit: ``"bytes"`` (sizes shown in KiB, MiB, ...) or a plural noun
        such as ``"objects"``, shown as counts.
    """

    def __init__(
        self, stream: IO[str], total: int, label: str, unit: str = "bytes"
    ) -> None:
        self.stream, self.total, self.label, self.unit = stream, max(total, 0), label, unit
        self.done = 0
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.closed = False

    def advance(self, count: int) -> None:
        """Count ``count`` more units done; redraw if it is time; end when complete."""
        self.done += count
        now = time.monotonic()
        if self.total and self.done >= self.total:
            self.close()
        elif now - self.drawn_at >= REDRAW_INTERVAL:
            self.drawn_at = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line; later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()

    def line(self, now: float) -> str:
        """The text of the line at time ``now``."""
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        parts = [self.label, self._amount()]
        if self.total:
            parts.append(f"{min(self.done / self.total, 1):4.0%}")
        parts.append(self._rate(rate))
        if self.closed:
            parts.append(f"in {_clock(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {_clock(max(self.total - self.done, 0) / rate)}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        self.stream.write(f"\r{self.line(now)}{CLEAR_TO_END}")
        self.stream.flush()

    def _amount(self) -> str:
        if self.unit == "bytes":
            done = human_size(self.done)
            return f"{done}/{human_size(self.total)}" if self.total else done
        if self.total:
            return f"{self.done:,}/{self.total:,} {self.unit}"
        return f"{self.done:,} {self.unit}"

    def _rate(self, rate: float) -> str:
        if self.unit == "bytes":
            return f"{human_size(rate)}/s"
        return f"{rate:,.0f} {self.unit}/s"


def _clock(seconds: float) -> str:
    """``0:07``, ``12:30``, ``1:02:03``."""
    minutes, second = divmod(int(seconds + 0.5), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02}:{second:02}" if hours else f"{minute}:{second:02}"


def human_size(size: float) -> str:
    """Size in bytes for people: ``512 B``, ``8.1 MiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"
