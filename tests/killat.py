"""Run ``manage.py`` and SIGKILL it at a named instant of a load (or a publish).

usage: python killat.py POINT manage.py ARGS...

The kill is real (``kill -9`` of the process itself): no clean-up code runs,
no ``finally``, no atexit, exactly as when the machine's OOM killer or a
user strikes. Only *when* it comes is chosen, by wrapping one of diskette's
functions; the code under test is otherwise the installed one. One point is
no kill but Ctrl-C on a terminal, which reaches the load and the task that
started it: ``ctrl-c-after-reset``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any


def die(*args: Any, **kwargs: Any) -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def after(owner: Any, name: str, calls: int = 1) -> None:
    """SIGKILL once the ``calls``-th call of ``owner.name`` has returned."""
    original: Callable[..., Any] = getattr(owner, name)
    count = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        result = original(*args, **kwargs)
        count += 1
        if count == calls:
            die()
        return result

    setattr(owner, name, wrapper)


def after_a_journal_rename(journal: Any) -> None:
    """SIGKILL once the journal has renamed one entry of a storage: through
    folders it opened (the load's data folder, renamed by path, is not one)."""
    rename = journal.os.rename

    def wrapper(*args: Any, **kwargs: Any) -> None:
        rename(*args, **kwargs)
        if "src_dir_fd" in kwargs:
            die()

    journal.os.rename = wrapper


def main() -> None:
    point, argv = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()
    from diskette import fastload, journal, load, registry
    from diskette.archive import reader

    if point == "extracting":  # some media written into the work folder
        after(reader, "_unpack_member", 6)
    elif point == "loading-data":  # the first data file loaded, uncommitted
        after(fastload._Loader, "load", 1)
    elif point == "loading-data-loaddata":  # the same, through --loaddata
        after(load, "_load_fixture", 1)
    elif point == "swapping":  # one entry of the storage set aside, no more
        after_a_journal_rename(journal)
    elif point == "swapped":  # every storage swapped, COMMIT not reached
        after(load._Restore, "swap", 1)
    elif point == "committed":  # COMMIT done, set-aside entries not removed
        load._Restore.finish = die
    elif point == "recovering":  # a recovery cut after its first rename
        after_a_journal_rename(journal)
    elif point == "reset":  # diskette_load --reset: the database reset, nothing loaded
        from diskette.management.commands import diskette_load

        after(diskette_load, "reset", 1)
    elif point == "spare-migrated":  # diskette_load --reset: a spare, not swapped in
        from diskette import reset

        after(reset.Spare, "_migrate", 1)
    elif point == "ctrl-c-after-reset":  # Ctrl-C on a terminal: the task too
        from diskette.management.commands import diskette_load

        reset = diskette_load.reset

        def reset_then_ctrl_c(*args: Any, **kwargs: Any) -> Any:
            reset(*args, **kwargs)
            os.kill(os.getppid(), signal.SIGINT)  # the task that started this load,
            time.sleep(60)  # which hands it on: a KeyboardInterrupt here, or loads on

        diskette_load.reset = reset_then_ctrl_c
    elif point == "uploading":  # three parts of a multipart upload read, no more
        after(registry._ProgressReader, "read", 3)
    else:
        raise SystemExit(f"unknown point {point!r}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
