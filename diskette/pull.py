"""A pull's machinery: the host's dump streamed into the load here.

``fab pull-snapshot`` (:mod:`diskette.remote`) checks this side while the
host is reached and its dump started (:class:`Reaching`), takes the safety
snapshot on a thread of its own (:class:`LocalShare`), and streams the
host's ``diskette_dump --to-stdout`` into ``diskette_load -`` here
(:func:`stream_into_load`, :mod:`diskette.feed`); ``--no-load`` and hosts
that cannot stream download a file instead (:func:`pull`, :func:`pull_file`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import shlex
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fabric import Connection
from invoke import Context, Exit
from invoke.runners import Result

from .feed import LoadFeed, LoadStopped
from .files import PartialFile
from .host import remote_project, remote_tempdir, remove_remote, send_list
from .progress import Progress, human_size
from .ssh import on_host
from .tasks import (
    CommandFailed,
    Dumped,
    Project,
    announce_snapshot,
    config_text,
    drop_snapshot,
    dump_archive,
    dumped_answer,
    emptied,
    expect,
    json_answer,
    lacks_option,
    media_list,
    one_line,
    print_plan,
    progress_flag,
    run_json,
    take_safety_snapshot,
)
from .transfer import HostCommand, Received, download, run_with_input, terminal_progress

#: What a host whose diskette predates deltas is told to do.
NO_DELTAS = "its diskette makes no deltas: update it to this machine's version"


def pull(
    c: Connection,
    project: Project,
    destination: Path,
    *options: str,
    keep_remote: bool = False,
) -> tuple[Path, Dumped]:
    """Dump on ``c``'s host and download the whole archive into ``destination``
    (``--no-load``: it must load anywhere, so it is no delta).

    The dump is streamed here as it is written (:func:`streamed`), unless
    ``keep_remote`` leaves it on the host or the host's diskette predates
    that: it then goes to a file there first (:func:`pull_file`).

    :returns: the local archive, its sha256 checked against the host's, and
        what the host's dump said of it.
    """
    received = None if keep_remote else streamed(c, project, destination, options)
    if received is None:
        received = pull_file(c, project, destination, *options, keep_remote=keep_remote)
    report_pulled(c, *received)
    return received


def report_pulled(c: Connection, local: Path | None, dumped: Dumped) -> None:
    """Say what was pulled: where it went (``None``: into the load here, as
    it came), its sha256, the files not sent."""
    anonymized = ", anonymized on the host" * (dumped.answer.get("anonymized") is True)
    if local is None:  # its bytes are checked by the load, member by member
        print(
            f"Streamed {c.original_host}'s archive into the load here "
            f"({human_size(dumped.size)}; the host's sha256 {dumped.sha256}{anonymized})"
        )
    else:
        print(
            f"Downloaded {local} from {c.original_host} "
            f"(sha256 {dumped.sha256}{anonymized})"
        )
    kept, kept_bytes = kept_counts(dumped)
    if kept:
        print(f"{kept} files ({human_size(kept_bytes)}) were not sent: this side has them")


def dump_command(project: Project, options: Sequence[str], *, delta: bool) -> str:
    """``diskette_dump --to-stdout`` with ``options``; with ``delta``, reading
    the list of media here on its standard input."""
    stdin = ["--base", "-"] if delta else []
    return project.command("diskette_dump", *options, *stdin, "--to-stdout", "--json")


def stream_dump(
    c: Connection,
    project: Project,
    output: Received,
    options: Sequence[str],
    base: str | None,
    started: HostCommand | None = None,
) -> Dumped | None:
    """Run ``diskette_dump --to-stdout`` on the host, its archive into ``output``.

    The archive is sent while it is written, in one command: the host's
    dump and the download overlap, and the host keeps no copy, so there is
    nothing to remove there whatever happens. The list of media here goes
    to the dump's standard input. The bytes are good only once the dump's
    answer (the last line of its standard error) gives their size and
    sha256: a cut stream, a failed dump or stray output fails here.

    :param started: that dump, already started (:class:`Reaching`) with
        ``--base -`` or not as ``base`` is given, else dropped for a new one.
    :returns: what the dump answered; ``None`` when the host's diskette
        cannot stream its dump.
    :raises Exit: naming the host and what failed.
    """
    command = dump_command(project, options, delta=base is not None)
    with on_host(c):
        if started is None or started.command != command:
            if started is not None:
                started.close()
            started = HostCommand(c, command)
        status, errors = started.run(output, stdin=(base or "").encode())
        try:
            # The answer and the error are both on the standard error.
            result = Result(stdout=errors, stderr=errors, command=command, exited=status)
            dumped = dumped_answer(json_answer(result))
        except CommandFailed as exc:
            if base is not None and lacks_option(exc, "--base"):
                raise Exit(NO_DELTAS + ", or pull with --full", code=1) from exc
            if lacks_option(exc, "--to-stdout"):
                return None
            raise
        _check_received(output, dumped)
    for line in errors.splitlines():
        if line.startswith("Warning"):
            print(f"{c.original_host}: {one_line(line)}", file=sys.stderr)
    return dumped


def streamed(
    c: Connection,
    project: Project,
    destination: Path,
    options: Sequence[str],
) -> tuple[Path, Dumped] | None:
    """:func:`stream_dump` into a file of ``destination``, taken once checked.

    :returns: ``None`` when the host's diskette cannot stream its dump.
    :raises Exit: naming the host and what failed; nothing is left here.
    """
    progress = terminal_progress(0, f"Downloading from {c.original_host}")
    try:
        with _download_file(destination, progress) as output:
            dumped = stream_dump(c, project, output, options, None)
            if dumped is None:
                return None
            local = destination / f"{c.original_host}_{received_name(dumped.answer)}"
            try:
                output.commit(name=local.name)
            except OSError as exc:
                raise Exit(local_write_error(local, exc), code=1) from exc
    finally:
        if progress is not None:
            progress.close()
    return local, dataclasses.replace(dumped, path=str(local))


def _download_file(destination: Path, progress: Progress | None) -> PartialFile:
    """A new ``.part`` file in ``destination`` for a download.

    :raises Exit: it cannot be made there, naming the setting.
    """
    made(destination)
    try:
        return PartialFile(
            destination / "pulled.tar.gz",
            progress=progress.advance if progress else None,
        )
    except OSError as exc:
        raise Exit(local_write_error(destination, exc), code=1) from exc


def made(folder: Path) -> Path:
    """``folder`` (``diskette.remote.download_dir``), made if need be.

    :raises Exit: it cannot be, naming the setting.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Exit(local_write_error(folder, exc), code=1) from exc
    return folder


def local_write_error(path: Path, exc: OSError) -> str:
    """Why ``path``, in or for the download folder, cannot be written here."""
    return (
        f"cannot write in '{path}': {exc.strerror or exc}; free some space there or "
        "set diskette.remote.download_dir elsewhere"
    )


def _check_received(output: Received, dumped: Dumped) -> None:
    """Refuse bytes that are not those the dump says it wrote.

    :raises Exit: naming the likely cause: more bytes than the archive's
        are a ``print`` on the host (in its settings, at its exit).
    """
    if dumped.sha256 is None:
        raise Exit(
            "the remote dump printed no sha256 to check the download against", code=1
        )
    # An output that hashes nothing (LoadFeed) has its bytes checked by the load.
    if output.size == dumped.size and output.sha256 in (None, dumped.sha256):
        return
    why = (
        f"{output.size - dumped.size} bytes more than the archive's: the project "
        "prints on the standard output (as its settings load, or as it exits); "
        "remove that print, or pull with --keep-remote"
        if output.size > dumped.size
        else "the archive was damaged on the way: pull again"
    )
    raise Exit(
        f"received {output.size} bytes, where the dump wrote {dumped.size} "
        f"(sha256 {dumped.sha256}): {why}",
        code=1,
    )


#: The longest archive name from a host taken as the local file's.
NAME_LIMIT = 200


def received_name(answer: dict[str, Any]) -> str:
    """The archive's name on the host (its ``DISKETTE_DUMP_FILENAME``) when
    it is a plain archive name: it comes from the host, and names a file here."""
    name = answer.get("filename")
    if (
        isinstance(name, str)
        and 0 < len(name) <= NAME_LIMIT
        and name == Path(name).name
        and one_line(name) == name
        and not name.startswith(".")
        and name.endswith(".tar.gz")
    ):
        return name
    return "diskette.tar.gz"


def pull_file(
    c: Connection,
    project: Project,
    destination: Path,
    *options: str,
    keep_remote: bool = False,
    base: str | None = None,
) -> tuple[Path, Dumped]:
    """Dump to a file on the host, then download it (see :func:`pull`).

    Without ``keep_remote`` the dump goes to a temporary folder on the host,
    removed whatever happens.
    """
    folder = remote_tempdir(c) if base is not None or not keep_remote else None
    try:
        with on_host(c):
            if folder is not None and base is not None:
                options = (
                    *options,
                    "--base",
                    send_list(c, project, base, f"{folder}/media-here.json"),
                )
            destination_option = (
                [] if keep_remote or folder is None else ["--destination", folder]
            )
            try:
                dumped = dump_archive(c, project, *options, *destination_option)
            except CommandFailed as exc:
                if base is not None and lacks_option(exc, "--base"):
                    raise Exit(
                        f"{c.original_host}: {NO_DELTAS}, or pull with --full", code=1
                    ) from exc
                raise
            if dumped.sha256 is None:
                raise Exit(
                    "the remote dump printed no sha256 to check the download against",
                    code=1,
                )
        made(destination)
        local = destination / f"{c.original_host}_{Path(dumped.path).name}"
        with on_host(c):
            download(
                c,
                dumped.path,
                local,
                dumped.sha256,
                label=f"Downloading {local.name} from {c.original_host}",
            )
    finally:
        if folder:
            remove_remote(c, folder)
    return local, dumped


def kept_counts(dumped: Dumped) -> tuple[int, int]:
    """The files, and their bytes, a host's dump left out as this side has
    them (its answer is checked, not trusted: 0 for anything but counts)."""
    kept, kept_bytes = dumped.answer.get("kept"), dumped.answer.get("kept_bytes")
    if type(kept) is int and type(kept_bytes) is int and kept >= 0 and kept_bytes >= 0:
        return kept, kept_bytes
    return 0, 0


def stream_into_load(
    c: Connection,
    here: Context,
    local_project: Project,
    project: Project,
    selection: Sequence[str],
    mine: LocalShare,
    arguments: list[str],
    spool: Path,
    started: HostCommand | None = None,
) -> tuple[LoadFeed, Dumped] | None:
    """Stream the host's dump into ``diskette_load -`` here (:class:`LoadFeed`).

    The load verifies and stages the archive as it arrives, once the
    safety snapshot is taken (what comes before waits in a spool file in
    ``spool``). It is returned unreleased: it may reset only once its
    caller gives it the last bytes (:meth:`LoadFeed.finish`).

    :returns: the load, and what the host dumped; ``None`` when the host
        cannot stream its dump (the load, cut short, changed nothing).
    :raises Exit: naming what failed, the host's dump or the load here;
        the load, cut short, changed nothing.
    """
    made(spool)
    # On a terminal the load draws its progress, which follows the download,
    # then its steps: one line at a time, from one process.
    feed = LoadFeed(
        here,
        local_project,
        [*arguments, *progress_flag()],
        ready=mine.snapshot_taken,
        spool=spool,
    )
    try:
        dumped = stream_dump(c, project, feed, selection, mine.base, started)
    except LoadStopped:
        feed.close()
        try:
            feed.answer()
        except CommandFailed as exc:
            raise Exit(
                f"the load here stopped before {c.original_host}'s archive ended: "
                f"{exc.message}",
                code=1,
            ) from exc
        raise Exit(
            f"the load here ended before {c.original_host}'s archive did", code=1
        ) from None
    except BaseException:
        feed.close()
        raise
    if dumped is None:
        feed.close()
        return None
    return feed, dumped


class Reaching:
    """The host reached and its project checked (:func:`remote_project`),
    on a thread of its own while this side checks its database: the two
    take a Django start each, and neither needs the other.

    With ``then``, the thread goes on to start the command ``then`` makes
    for the checked project (the host's dump, which waits for the list of
    media here on its standard input): its Python starts meanwhile too.
    Nothing else is done on the host. The thread is a daemon: a refusal here
    (a production database, a "no") is said at once, without waiting for a
    host slow to answer; :meth:`close` drops the command, started or to be.
    """

    def __init__(
        self,
        c: Connection,
        project_dir: str | None,
        python: str | None,
        then: Callable[[Project], HostCommand] | None = None,
    ) -> None:
        self._checked: concurrent.futures.Future[Project] = concurrent.futures.Future()
        self._lock = threading.Lock()
        self._started: HostCommand | None = None
        self._closed = False
        threading.Thread(
            target=self._reach, args=(c, project_dir, python, then), daemon=True
        ).start()

    def _reach(
        self,
        c: Connection,
        project_dir: str | None,
        python: str | None,
        then: Callable[[Project], HostCommand] | None,
    ) -> None:
        try:
            project = remote_project(c, project_dir, python)
        except BaseException as exc:  # noqa: BLE001 - raised again by project()
            self._checked.set_exception(exc)
            return
        try:
            with self._lock:
                closed = self._closed
            if then is not None and not closed:
                try:
                    started = then(project)
                except Exception:  # noqa: BLE001 - made again by its user, failing there
                    started = None
                with self._lock:
                    self._started = started
                    if self._closed and started is not None:
                        started.close()
        finally:
            self._checked.set_result(project)

    def project(self) -> Project:
        """The host's project, once checked.

        :raises Exit: what :func:`remote_project` raised.
        """
        return self._checked.result()

    def started(self) -> HostCommand | None:
        """The command ``then`` started (``None`` if it could not be), once
        the project is checked."""
        self.project()
        with self._lock:
            return self._started

    def close(self) -> None:
        """Drop the command, now or once made: a command run to its end is
        closed already, and one never run gets no input and ends."""
        with self._lock:
            self._closed = True
            if self._started is not None:
                self._started.close()


class LocalShare:
    """The laptop's share of a pull: the list of its media (:attr:`base`,
    made by the reset check), and its safety snapshot, taken on a worker
    thread while the main one works with the host.

    The snapshot is of the database and media as they were when the pull
    started, while the host dumps and the archive downloads; it is started
    only once the host was reached. Leaving the block with an exception
    waits for the worker, then removes that snapshot: nothing here was
    changed, and it holds what is still in place.
    """

    def __init__(self, c: Context, project: Project) -> None:
        self.c, self.project = c, project
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        #: The list of media here, for a delta (``None``: send them whole).
        self.base: str | None = None
        self.snapshotting: concurrent.futures.Future[Dumped] | None = None
        self.folder = ""

    def __enter__(self) -> LocalShare:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.worker.shutdown(wait=True)
        done = self.snapshotting
        if kind is None or done is None or done.exception() is not None:
            return
        try:  # best effort: the pull's own error is what to report
            drop_snapshot(self.c, self.project, done.result().path, self.folder)
        except Exception as exc:  # noqa: BLE001 - reported, never raised over it
            print(
                f"could not remove the safety snapshot {done.result().path}: {exc}",
                file=sys.stderr,
            )

    def take_snapshot(self, folder: str, *, raw: bool) -> None:
        self.folder = folder
        self.snapshotting = self.worker.submit(
            take_safety_snapshot, self.c, self.project, folder, raw=raw, relay=False
        )

    def snapshot_taken(self) -> bool:
        """Whether the snapshot, if any, is done with (taken, or failed)."""
        return self.snapshotting is None or self.snapshotting.done()

    def snapshot(self, downloaded: Path | None) -> str | None:
        """The snapshot's path, once taken, said with what it left out.

        :raises Exit: it failed, naming the archive downloaded meanwhile (if
            any) and how to load it anyway.
        """
        if self.snapshotting is None:
            return None
        try:
            dumped = self.snapshotting.result()
        except Exit as exc:
            if downloaded is None:
                raise
            raise Exit(
                f"{exc.message}; the archive is downloaded: load it without a snapshot "
                f"with inv reset-and-load {shlex.quote(str(downloaded))} --no-backup",
                code=1,
            ) from exc
        announce_snapshot(dumped.path, when="when the pull started")
        skipped = dumped.answer.get("skipped")
        for path in skipped if isinstance(skipped, list) else []:
            print(f"Warning: the safety snapshot left out {one_line(str(path))}")
        return dumped.path


def download_dir(c: Connection) -> Path:
    """Where pulls download to (``diskette.remote.download_dir``)."""
    return Path(
        str(config_text(c.config.diskette.remote, "download_dir", prefix="diskette.remote"))
    )


def pulled_answer(c: Connection, local: Path | None, dumped: Dumped) -> dict[str, Any]:
    """What a pull's ``--json`` says of the download (``local``: the file,
    ``None`` for an archive fed to the load as it came)."""
    kept, kept_bytes = kept_counts(dumped)
    return {
        "host": c.original_host,
        "downloaded": str(local) if local else None,
        "size": dumped.size,
        "kept": kept,
        "kept_bytes": kept_bytes,
    }


def plan_pull(
    c: Connection,
    here: Context,
    project: Project,
    selection: list[str],
    *,
    full: bool,
) -> dict[str, Any]:
    """What a pull would change here, put together from both sides; nothing is
    written on either (``diskette_index --read-only`` here, ``diskette_dump
    --check`` there, fed the list on its standard input).

    :returns: the plan, for ``--json``, as :func:`~diskette.tasks.print_plan` shows it.
    """
    local_project = Project.from_config(here)
    target = run_json(here, local_project, "diskette_reset", "--check", "--rows")
    base = (
        None
        if "--no-storages" in selection or full
        else media_list(here, local_project, read_only=True)
    )
    command = ("diskette_dump", "--check", *selection)
    with on_host(c):
        if base is None:
            answer = run_json(c, project, *command)
        else:
            line = project.command(*command, "--base", "-", "--json")
            status, out, err = run_with_input(c, line, base.encode())
            try:
                answer = json_answer(
                    Result(stdout=out, stderr=err, exited=status, command=line)
                )
            except CommandFailed as exc:
                error = NO_DELTAS if lacks_option(exc, "--base") else exc.message
                raise Exit(
                    f"{c.original_host}: diskette_dump --check failed: {error}", code=1
                ) from exc
    now = expect(target, "rows", dict, "diskette_reset")
    after: dict[str, int] = {}
    for objects in expect(answer, "objects", dict, "diskette_dump").values():
        for label, count in (objects if isinstance(objects, dict) else {}).items():
            if type(count) is int:
                after[str(label)] = after.get(str(label), 0) + count
    plan: dict[str, Any] = {
        "models": emptied(now, after),
        "storages": _storage_changes(answer),
    }
    print_plan(f"Pulling from {c.original_host} and loading here", plan)
    return {"host": c.original_host, "plan": plan, "dry_run": True}


def _storage_changes(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Per storage, what a pull would send: against the list of the media here
    when the host had it (``delta``), else every file (``storages``)."""
    delta = answer.get("delta")
    if isinstance(delta, list):
        return [change for change in delta if isinstance(change, dict)]
    storages = answer.get("storages")
    return [
        {
            "storage": name,
            "added": counts.get("files"),
            "changed": 0,
            "removed": None,
            "bytes_sent": counts.get("size"),
        }
        for name, counts in (storages if isinstance(storages, dict) else {}).items()
        if isinstance(counts, dict)
    ]
