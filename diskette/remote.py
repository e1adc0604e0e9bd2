"""Fabric tasks: dump on a remote host, pull its snapshot here, push one there.

A project's ``fabfile.py`` holding ``from diskette.remote import ns`` gets:

- ``fab -H HOST remote-dump``: dump on the host; print ``HOST:PATH (sha256
  ...)`` of the archive there (several hosts: ``-H a,b``);
- ``fab -H HOST pull-snapshot``: dump there straight into the load here
  (:mod:`diskette.feed`: the archive is stored on neither side), which
  resets the local database and loads, as ``inv reset-and-load`` does
  (safety snapshot included);
- ``fab -H HOST push-snapshot ARCHIVE``: check the host's database, ask, then
  upload (sha256 checked on the host), reset the database there and load.

The remote side runs the very functions of :mod:`diskette.tasks` with the
``Connection`` as context: only the project's ``manage.py`` (and diskette,
for its Python) is needed there; :func:`remote_project` checks both in one
round trip before anything else. Hosts come from ``-H`` and
``~/.ssh/config`` aliases, as Fabric resolves them. What the host prints
comes live, each line prefixed with its name, where a person watches
(:class:`diskette.ssh.HostOutput`), but for a pull's streamed dump, whose
warnings come once it is done; every failure is one line naming the
host and the fix (:func:`diskette.ssh.speaking_for`). Configuration
(``fabric.yaml`` beside the fabfile, or ``FABRIC_*``):

- ``diskette.remote.project_dir``: folder of ``manage.py`` on the host;
- ``diskette.remote.python``: its interpreter (default: the project's
  ``.venv/bin/python`` when present, else ``python3``);
- ``diskette.remote.settings``: settings module on the host;
- ``diskette.remote.download_dir``: where pulled archives land locally
  (``--no-load``, ``--keep-remote``, a host that cannot stream its dump),
  and what arrives while the safety snapshot is taken waits (default
  ``var/diskette-snapshots``);
- ``diskette.protected_hosts``: hosts that refuse a push unless
  ``--override-protection``, by any name that reaches them
  (:func:`protected_entry`);
- and the local keys of :mod:`diskette.tasks` for the load after a pull.

This module needs Fabric and never sets Django up (of Django, only its
exception classes are imported, through :mod:`diskette.exceptions`): install
``django-diskette[remote]``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import io
import re
import shlex
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import fabric
from fabric import Connection
from invoke import Collection, Context, Exit
from invoke.runners import Result

from .delta import Thinned, read_base, thin
from .exceptions import DisketteError
from .feed import LoadFeed, LoadStopped
from .files import PartialFile
from .progress import Progress, human_size
from .shortflags import ShortFlags
from .ssh import HostOutput, connect, on_host, speaking_for
from .tasks import (
    DEFAULTS,
    FAST_HELP,
    JSON_HELP,
    LOADDATA_HELP,
    NO_ANONYMIZE_HELP,
    REMOTE_KEYS,
    SETTINGS_CHECK,
    CommandFailed,
    Dumped,
    LocalOutput,
    Project,
    SafetyNet,
    announce_snapshot,
    answering,
    can_ask,
    config_text,
    confirm,
    drop_snapshot,
    dump_archive,
    dumped_answer,
    expect,
    flags,
    json_answer,
    lacks_option,
    last_error,
    load_arguments,
    load_replacing,
    media_list,
    needs_snapshot,
    one_line,
    print_plan,
    progress_flag,
    reset_and_load_archive,
    reset_target,
    run_json,
    take_safety_snapshot,
    warn_unknown_keys,
)
from .transfer import (
    RECEIVE_SCRIPT,
    HostCommand,
    Received,
    download,
    run_with_input,
    terminal_progress,
    upload,
)

#: The configuration under ``diskette.remote``, with its defaults.
REMOTE_DEFAULTS: dict[str, Any] = {
    "project_dir": None,
    "python": None,
    "settings": None,
    "download_dir": "var/diskette-snapshots",
}


def remote_project(c: Connection, project_dir: str | None, python: str | None) -> Project:
    """The project on ``c``'s host, from the task flags, else the configuration.

    Checked on the host in one round trip (:data:`PREFLIGHT`) before any
    work: a wrong folder or interpreter otherwise surfaced halfway through
    as a bare ``bash: cd: ...`` or exit 127, without the host or the
    setting to fix.

    :raises Exit: naming the host, what is wrong and the setting or flag
        that fixes it.
    """
    conf = c.config.diskette.remote
    name = c.original_host
    # Connected here, after the checks that need no host (the protected
    # list, the local project), and before any work there.
    connect(c)
    directory = project_dir or config_text(
        conf, "project_dir", optional=True, prefix="diskette.remote"
    )
    if not directory:
        raise Exit(
            f"where is the project on {name}? Set diskette.remote.project_dir "
            "in fabric.yaml, or pass --project-dir",
            code=1,
        )
    chosen = (
        python or config_text(conf, "python", optional=True, prefix="diskette.remote") or ""
    )
    settings = config_text(conf, "settings", optional=True, prefix="diskette.remote")
    project = Project(python=chosen, settings=settings, directory=str(directory))
    script = PREFLIGHT.format(
        directory=shlex.quote(project.directory or ""),
        python=shlex.quote(chosen),
        manage=shlex.quote(project.manage),
        settings=shlex.quote(project.settings or ""),
        check=shlex.quote(SETTINGS_CHECK),
    )
    result = c.run(script, hide=True, warn=True, in_stream=False)
    answers = dict(
        line.partition(" ")[::2] for line in result.stdout.splitlines() if line.strip()
    )
    set_python = (
        "set diskette.remote.python in fabric.yaml (or pass --python) to the "
        "project's interpreter"
    )
    if "nodir" in answers:
        raise Exit(
            f"{name}: project folder {directory} does not exist: set "
            "diskette.remote.project_dir in fabric.yaml or pass --project-dir",
            code=1,
        )
    if "python" not in answers or ("import" not in answers and "nomanage" not in answers):
        reason = last_error(result, f"exit {result.exited}")
        raise Exit(f"{name}: checking the project there failed: {reason}", code=1)
    project = Project(
        python=answers["python"], settings=project.settings, directory=project.directory
    )
    guessed = "" if chosen else f" (no .venv/bin/python in {directory} either)"
    if "nomanage" in answers:
        raise Exit(
            f"{name}: no {project.manage} in {directory}: set diskette.remote.project_dir "
            "to the folder of manage.py (or pass --project-dir)",
            code=1,
        )
    code, _, error = answers["import"].partition(" ")
    if code == "127":
        raise Exit(f"{name}: {project.python} not found{guessed}: {set_python}", code=1)
    if code == "126":
        raise Exit(f"{name}: {project.python} cannot be run: {set_python}", code=1)
    if code != "0":
        missing = "No module named 'diskette'" in error
        raise Exit(
            f"{name}: diskette is not installed for {project.python}: pip install "
            "django-diskette there, or point diskette.remote.python at the project's "
            "virtualenv"
            if missing
            else f"{name}: {project.python} cannot import diskette ({error or 'exit ' + code}): "
            "point diskette.remote.python at the project's virtualenv",
            code=1,
        )
    if answers.get("settings", "0") != "0":
        raise Exit(
            f"{name}: settings module {project.settings} not found in {directory}: fix "
            "diskette.remote.settings in fabric.yaml",
            code=1,
        )
    return project


#: One remote shell script checking the project folder, the interpreter
#: (defaulting to the project's ``.venv``), ``manage.py`` and diskette's
#: import and, when one is configured, the settings module; it answers in
#: ``word value`` lines that :func:`remote_project` reads.
PREFLIGHT = (
    "cd -- {directory} 2>/dev/null || {{ echo nodir; exit 0; }}; "
    "py={python}; "
    'if [ -z "$py" ]; then '
    "if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi; fi; "
    'printf "python %s\\n" "$py"; '
    "[ -f {manage} ] || {{ echo nomanage; exit 0; }}; "
    "err=$(\"$py\" -c 'import diskette' 2>&1 >/dev/null); code=$?; "
    'printf "import %s %s\\n" "$code" "$(printf "%s\\n" "$err" | tail -n 1)"; '
    '[ "$code" = 0 ] && [ -n {settings} ] && '
    '{{ "$py" -c {check} {settings} >/dev/null 2>&1; printf "settings %s\\n" "$?"; }}; '
    "exit 0"
)


#: The file that marks a remote temporary folder as diskette's own.
TRANSIT_MARKER = ".diskette-transit"
#: Minutes after which a marked transit folder counts as left by a dead pull.
STALE_TRANSIT_MINUTES = 24 * 60


def remote_tempdir(c: Connection) -> str:
    """A private folder on the host for archives in transit; old ones go first.

    A pull whose local ``fab`` is killed (``kill -9``, a closed laptop) never
    reaches its clean-up, leaving a whole production archive in the host's
    temporary folder. So each new folder gets a marker file, and before
    creating one, folders of the same pattern that are older than a day,
    owned by the connecting user and marked (diskette's own, not another
    tool's that happens to share the prefix) are removed. All of it is one
    remote shell command; the clean-up is best effort and never stops the
    transfer, and each removal is said in one line.
    """
    pattern = "diskette.??????"
    remove_if_marked = (
        f'test -f "$1"/{shlex.quote(TRANSIT_MARKER)} && rm -rf -- "$1" '
        '&& printf "removed %s\\n" "$1"'
    )
    script = (
        'tmp="${TMPDIR:-/tmp}"; '
        f'find "$tmp" -mindepth 1 -maxdepth 1 -type d -name {shlex.quote(pattern)} '
        f'-user "$(id -u)" -mmin +{STALE_TRANSIT_MINUTES} '
        f"-exec sh -c {shlex.quote(remove_if_marked)} sh {{}} \\; 2>/dev/null; "
        'd=$(mktemp -d "$tmp/diskette.XXXXXX") '
        f'&& : > "$d"/{shlex.quote(TRANSIT_MARKER)} && printf "created %s\\n" "$d"'
    )
    result = c.run(script, hide=True, warn=True)
    created = None
    for line in result.stdout.splitlines():
        word, _, path = line.partition(" ")
        if word == "removed":
            print(
                f"{c.original_host}: removed a stale transit folder {path} "
                "left by an interrupted transfer"
            )
        elif word == "created":
            created = path
    if not result.ok or not created:
        reason = last_error(result, f"exit {result.exited}")
        raise Exit(
            f"{c.original_host}: cannot create a temporary folder in $TMPDIR "
            f"(or /tmp): {reason}; free space or fix TMPDIR there",
            code=1,
        )
    return created


def protected_entry(c: Connection, entries: Iterable[str]) -> str | None:
    """The entry of ``diskette.protected_hosts`` that ``c`` reaches, if any.

    Comparing the names typed after ``-H`` is not enough: another ssh_config
    alias of the same server, its address or ``localhost`` went straight
    past the list (a red team did just that). So an entry and the connection
    are both resolved as ssh would, through ssh_config (``HostName``,
    ``Port``; building a ``Connection`` does that without connecting), then
    to the addresses of that host name; they match when they share a name
    or an address, on the same port. A name that does not resolve is
    compared by name only. Hosts behind a jump host are resolved from here,
    which may refuse more than needed, never less.

    :raises Exit: for an entry that is not ``[user@]host[:port]``, naming it:
        a guard that cannot be read must not let a push through.
    """
    names = {c.original_host, c.host}
    target = _endpoints(c.host, c.port)
    for entry in entries:
        if entry in names:
            return entry
        try:
            if not PROTECTED_ENTRY.fullmatch(entry):
                raise ValueError(
                    "one host per entry, as -H takes it, such as deploy@prod:22"
                )
            protected = Connection(entry, config=c.config)
        except (ValueError, TypeError) as exc:
            raise Exit(
                f"diskette.protected_hosts entry {entry!r} is not [user@]host[:port] "
                f"({exc}); fix it in fabric.yaml",
                code=1,
            ) from exc
        if target & _endpoints(protected.host, protected.port):
            return entry
    return None


#: ``[user@]host[:port]``: no list (``a,b``), no blank, no path; a port of 1
#: to 65535. Brackets hold an IPv6 address, as ``-H [::1]:22``.
PROTECTED_ENTRY = re.compile(
    r"(?:[^@\s,/]+@)?(?:\[[0-9A-Fa-f:.]+\]|[^@\s,/:\[\]]+)"
    r"(?::(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3}))?"
)


def _endpoints(host: str, port: int) -> set[tuple[str, int]]:
    """``host`` and each of its addresses, with ``port``; the name alone if unresolved."""
    found = {(host.lower().rstrip("."), port)}
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # unknown name, or not a valid one
        return found
    return found | {(str(address[4][0]), port) for address in addresses}


def remove_remote(c: Connection, path: str) -> None:
    """Remove ``path`` on the host, reconnecting if the connection dropped.

    Best effort, as it runs on the way out of a failure whose message must
    not be replaced: if even that fails, one line says what is left where;
    the next transfer through such a folder (a push, or a pull from a host
    that cannot stream its dump) removes it once it is a day old.
    """
    try:
        c.run(shlex.join(["rm", "-rf", "--", path]), hide=True, warn=True, in_stream=False)
    except Exception as exc:  # noqa: BLE001 - any failure: say it, keep the first error
        print(
            f"{c.original_host}: could not remove {c.original_host}:{path} ({exc}); "
            "the next push removes it after a day",
            file=sys.stderr,
        )


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


#: What a host whose diskette predates deltas is told to do.
NO_DELTAS = "its diskette makes no deltas: update it to this machine's version"


def send_list(c: Connection, project: Project, listed: str, remote: str) -> str:
    """Put a list of media (:func:`media_list`) at ``remote`` on the host."""
    with tempfile.TemporaryDirectory(prefix="diskette-") as folder:
        local = Path(folder) / "media-here.json"
        local.write_text(listed)
        upload(c, local, remote, receiver=receiver(project))
    return remote


def receiver(project: Project) -> Callable[[str], str]:
    """What writes an upload on the host: the project's Python, hashing as
    it writes (:data:`~diskette.transfer.RECEIVE_SCRIPT`)."""

    def command(path: str) -> str:
        return project.shell(shlex.join([project.python, "-c", RECEIVE_SCRIPT, path]))

    return command


def push(
    c: Connection,
    project: Project,
    archive: Path,
    *,
    yes: bool = False,
    force: bool = False,
    full: bool = False,
    **load: Any,
) -> dict[str, Any]:
    """Ask, upload ``archive`` to ``c``'s host, then reset its database and load it.

    What needs no upload comes first: the host's database is checked
    (``diskette_reset --check``: its guards, which database it is), and the
    question names the host and that database, so that a "no", a refusal or
    a missing terminal sends nothing. Once confirmed, the host lists its
    media, and what it has already is left out of what is sent (a delta,
    :func:`diskette.delta.thin`) unless ``full``; the archive is then
    uploaded, verified and loaded there without asking again.

    :param load: passed to :func:`diskette.tasks.reset_and_load_archive`.
    :returns: what it reports, with the ``sha256`` of the upload, its
        ``size`` and the files ``kept`` (and their bytes) the host had.
    """
    name = c.original_host
    with on_host(c):
        target = reset_target(c, project, force)
    confirm(f"Drop the {target.database} on {name} and load {archive} into it?", yes)
    folder = remote_tempdir(c)
    try:
        remote = f"{folder}/{archive.name}"
        with on_host(c):
            listed = None if full else media_list(c, project, host=name)
        with sending(archive, listed) as (path, thinned):
            with on_host(c):
                digest = upload(c, path, remote, receiver=receiver(project))
            size = path.stat().st_size
        print(f"Uploaded {archive} to {name}:{remote} (sha256 {digest})")
        if thinned is not None:
            print(
                f"{thinned.kept} files ({human_size(thinned.kept_bytes)}) were not sent: "
                f"{name} has them"
            )
        with on_host(c):
            # Answered above: yes=True only skips the question, not the checks.
            done = reset_and_load_archive(
                c,
                project,
                remote,
                host=name,
                name=archive.name,
                yes=True,
                force=force,
                **load,
            )
    finally:
        remove_remote(c, folder)
    return {
        **done,
        "archive": str(archive),
        "sha256": digest,
        "size": size,
        "kept": thinned.kept if thinned else 0,
        "kept_bytes": thinned.kept_bytes if thinned else 0,
    }


@contextlib.contextmanager
def sending(archive: Path, listed: str | None) -> Iterator[tuple[Path, Thinned | None]]:
    """The file to send for ``archive``: a delta of it against the host's
    ``listed`` media, made in a folder of its own beside it and removed
    after, or the archive itself where that leaves nothing out."""
    if listed is None:
        yield archive, None
        return
    base = read_base(io.BytesIO(listed.encode()), "the host's list of media")
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".diskette-push-") as work:
        try:
            made = thin(archive, base, Path(work) / archive.name)
        except DisketteError as exc:
            raise Exit(f"{archive} cannot be sent: {exc}", code=1) from exc
        yield (archive, None) if made is None else (made.path, made)


def remote_task(body: Callable[..., Any]) -> Callable[..., Any]:
    """Run a task body on a Connection, each failure one line (:func:`speaking_for`).

    Without ``-H``, Fabric hands a plain Invoke Context, which would run
    locally: refused. The host's output is relayed live with its name
    (:class:`HostOutput`). The body returns what ``--json`` prints
    (:func:`~diskette.tasks.answering`).
    """
    command = body.__name__.replace("_", "-")

    @functools.wraps(body)
    def run(c: Context, *args: Any, **kwargs: Any) -> None:
        with answering(bool(kwargs.get("json"))) as answer:
            if not isinstance(c, Connection):
                raise Exit(f"{command} needs a host: fab -H HOST {command}", code=1)
            check_config_keys(c)
            c.config.runners.remote = HostOutput
            with speaking_for(c):
                answer.update(body(c, *args, **kwargs))

    return run


def check_config_keys(c: Connection) -> None:
    """Warn about ``diskette`` keys no task reads; refuse a misspelled guard.

    ``protected_host: [prod]`` would otherwise leave the list empty without a
    word, and let a push through to production.

    :raises Exit: when an unknown key looks like ``protected_hosts``.
    """
    conf = c.config.diskette
    unknown = {
        f"diskette.{key}": close
        for key, close in warn_unknown_keys(conf, {*DEFAULTS, *REMOTE_KEYS}).items()
    }
    if hasattr(conf.get("remote"), "keys"):  # a mapping, as the defaults make it
        nested = warn_unknown_keys(conf.remote, REMOTE_DEFAULTS, "diskette.remote")
        unknown |= {f"diskette.remote.{key}": close for key, close in nested.items()}
    for key, close in unknown.items():
        if close == "protected_hosts" or key.endswith(".protected_hosts"):
            raise Exit(
                f"{key} is not a key diskette reads (did you mean "
                "diskette.protected_hosts?): fix it in fabric.yaml, so that the hosts "
                "it lists are protected",
                code=1,
            )
    hosts = conf.get("protected_hosts")
    if not isinstance(hosts, list | tuple) or not all(isinstance(h, str) for h in hosts):
        # A YAML scalar (protected_hosts: prod) would be read letter by letter.
        raise Exit(
            f"diskette.protected_hosts must be a list of hosts, such as [prod], not "
            f"{hosts!r}: fix it in fabric.yaml",
            code=1,
        )


class RemoteTask(ShortFlags, fabric.tasks.Task):
    """A Fabric task with diskette's short flags (:mod:`diskette.shortflags`)."""


def task(*args: Any, **kwargs: Any) -> Any:
    """Fabric's ``@task``, making a :class:`RemoteTask`."""
    return fabric.task(*args, klass=RemoteTask, **kwargs)


PROJECT_HELP = {
    "project_dir": "Folder of manage.py on the host (default: diskette.remote.project_dir).",
    "python": "Interpreter on the host (default: diskette.remote.python, else .venv/bin/python or python3).",
}
#: The options of the tasks that only dump on the host.
DUMP_HELP = {
    "no_data": "Leave data out.",
    "no_storages": "Leave storages out.",
    "no_anonymize": NO_ANONYMIZE_HELP,
    "json": JSON_HELP,
    **PROJECT_HELP,
}


def dump_on_host(
    c: Connection,
    project_dir: str | None,
    python: str | None,
    *options: str,
    **dumped: bool,
) -> Dumped:
    """Run ``diskette_dump`` with ``options`` and the ``dumped`` flags on the host."""
    project = remote_project(c, project_dir, python)
    with on_host(c):
        return dump_archive(c, project, *options, *flags(**dumped))


@task(help=DUMP_HELP)
@remote_task
def remote_dump(
    c: Connection,
    no_data: bool = False,
    no_storages: bool = False,
    no_anonymize: bool = False,
    project_dir: str | None = None,
    python: str | None = None,
    json: bool = False,
) -> dict[str, Any]:
    """Dump the project on the host; print HOST:PATH (sha256 ...) of the archive there."""
    dumped = dump_on_host(
        c,
        project_dir,
        python,
        no_data=no_data,
        no_storages=no_storages,
        no_anonymize=no_anonymize,
    )
    print(f"{c.original_host}:{dumped.path} (sha256 {dumped.sha256})")
    return {**dumped.answer, "host": c.original_host}


@task(
    help={
        "yes": "Do not ask before resetting the local database (for scripts).",
        "force": "Reset the local database even though its DEBUG is False.",
        "no_backup": "Do not save a safety snapshot of the local data first.",
        "no_load": "Only download the archive (into diskette.remote.download_dir).",
        "keep_remote": "Leave the archive on the host (in its DISKETTE_DUMP_PATH).",
        "no_data": "Leave data out.",
        "no_storages": "Leave storages out.",
        "no_anonymize": NO_ANONYMIZE_HELP,
        "loaddata": LOADDATA_HELP,
        "fast": FAST_HELP,
        "full": "Send every media file, not only those this side lacks.",
        "dry_run": "Say what would change here (rows per model now and after; files "
        "added, changed, removed; bytes to send) and change nothing, here or on the host.",
        "json": JSON_HELP,
        **PROJECT_HELP,
    }
)
@remote_task
def pull_snapshot(
    c: Connection,
    yes: bool = False,
    force: bool = False,
    no_backup: bool = False,
    no_load: bool = False,
    keep_remote: bool = False,
    no_data: bool = False,
    no_storages: bool = False,
    no_anonymize: bool = False,
    loaddata: bool = False,
    fast: bool = False,
    full: bool = False,
    dry_run: bool = False,
    project_dir: str | None = None,
    python: str | None = None,
    json: bool = False,
) -> dict[str, Any]:
    """Dump on the host, streamed into the load here, which resets the local database.

    The dump runs with the host's settings: where they hold anonymization
    rules, personal data is replaced there, before the archive is written.
    Media this side has already (as its last load left them) are not sent
    again: the host's archive carries only new and changed files, and the
    load takes the others from here (``--full`` sends them all).
    """
    here = Context(config=c.config)
    selection = flags(no_data=no_data, no_storages=no_storages, no_anonymize=no_anonymize)
    if dry_run:
        if no_load or keep_remote:
            raise Exit(
                f"--dry-run plans the load here and writes nothing on the host: drop "
                f"{'--no-load' if no_load else '--keep-remote'}",
                code=1,
            )
        return plan_pull(
            c, here, remote_project(c, project_dir, python), selection, full=full
        )
    if no_load:
        downloaded, dumped = pull(
            c,
            remote_project(c, project_dir, python),
            download_dir(c),
            *selection,
            keep_remote=keep_remote,
        )
        print(f"Load it here with: inv reset-and-load {shlex.quote(str(downloaded))}")
        return pulled_answer(c, downloaded, dumped)
    # The local side is checked, and the question asked, first: a wrong
    # diskette.manage, a refused reset or a "no" must not cost a whole
    # production dump and download.
    question = f"Drop the local database and load {c.original_host}'s snapshot?"
    can_ask(question, yes)
    local_project = Project.from_config(here)
    safety = SafetyNet.from_config(c, no_backup=no_backup)
    downloads = download_dir(c)
    load_options = tuple(flags(loaddata=loaddata, fast=fast))
    feed: LoadFeed | None = None
    # A delta needs the media it keeps here when it loads: never for an
    # archive left on the host, which must load anywhere. Listed by the
    # check of the database, once it settled any interrupted load.
    delta = not (no_storages or full or keep_remote)
    # Beside the check: the host reached and, for a delta, its dump started,
    # waiting for that list (a whole dump would not wait for this side's
    # word: it starts once the check and the question passed).
    reaching = Reaching(
        c,
        project_dir,
        python,
        (lambda project: HostCommand(c, dump_command(project, selection, delta=True)))
        if delta
        else None,
    )
    try:
        with LocalShare(here, local_project) as mine:
            target = reset_target(here, local_project, force, with_media=delta)
            mine.base = target.media
            confirm(
                f"Drop the {target.database} and load {c.original_host}'s snapshot "
                "into it?",
                yes,
            )
            snapshotted = needs_snapshot(target, safety)
            project = reaching.project()
            if snapshotted:
                mine.take_snapshot(safety.folder, raw=target.anonymizes)
            arguments = load_arguments("-", load_options, force=force)
            fed = (
                None
                if keep_remote
                else stream_into_load(
                    c,
                    here,
                    local_project,
                    project,
                    selection,
                    mine,
                    arguments,
                    downloads,
                    reaching.started(),
                )
            )
            local: Path | None = None
            if fed is None:  # left on the host, or a host that cannot stream
                local, dumped = pull_file(
                    c,
                    project,
                    downloads,
                    *selection,
                    keep_remote=keep_remote,
                    base=mine.base,
                )
                report_pulled(c, local, dumped)
                snapshot = mine.snapshot(local)
            else:
                feed, dumped = fed
                if sys.stderr.isatty():  # under the load's progress line, not in it
                    print(file=sys.stderr, flush=True)
                snapshot = mine.snapshot(None)
                report_pulled(c, None, dumped)
        # Released only now, out of LocalShare: its snapshot stays, whatever
        # happens once the load may reset.
        done = load_replacing(
            here,
            local_project,
            str(local or "-"),
            target,
            snapshot,
            force=force,
            safety=safety,
            load_options=load_options,
            name=None if local else f"{c.original_host}'s archive",
            answer=feed.finish if feed is not None else None,
        )
    finally:
        reaching.close()
        if feed is not None:
            feed.close()  # cut short, if it was never released
    return {**pulled_answer(c, local, dumped), **done}


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
                wanted = then is not None and not self._closed
            if then is not None and wanted:
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


def emptied(now: dict[str, Any], after: dict[str, int]) -> list[dict[str, Any]]:
    """Rows per model now and after a reset and load: the archive's models,
    and those holding rows now, which the reset empties."""
    labels = [
        *after,
        *(label for label, rows in now.items() if rows and label not in after),
    ]
    return [
        {"model": label, "now": now.get(label), "after": after.get(label, 0)}
        for label in labels
    ]


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


@task(
    help={
        "archive": "Local archive to send.",
        "yes": "Do not ask before resetting the remote database (for scripts).",
        "force": "Reset the host's database even though its DEBUG is False.",
        "override_protection": "Push to a host in diskette.protected_hosts.",
        "no_backup": "Do not save a safety snapshot of the remote data first.",
        "loaddata": LOADDATA_HELP,
        "fast": FAST_HELP,
        "dry_run": "Say what would change on the host (rows per model now and after; "
        "files added, changed, removed) and change nothing, there or here.",
        "full": "Send every media file, not only those the host lacks.",
        "json": JSON_HELP,
        **PROJECT_HELP,
    }
)
@remote_task
def push_snapshot(
    c: Connection,
    archive: str,
    yes: bool = False,
    force: bool = False,
    override_protection: bool = False,
    no_backup: bool = False,
    loaddata: bool = False,
    fast: bool = False,
    dry_run: bool = False,
    full: bool = False,
    project_dir: str | None = None,
    python: str | None = None,
    json: bool = False,
) -> dict[str, Any]:
    """Check the host's database, ask, upload an archive, reset the database there, load."""
    conf = c.config.diskette
    entry = None if override_protection else protected_entry(c, conf.protected_hosts or ())
    if entry is not None:
        name = c.original_host
        raise Exit(
            (
                f"{name} is in diskette.protected_hosts"
                if entry == name
                else f"{name} is the same host as {entry}, which is in "
                f"diskette.protected_hosts ({c.host} port {c.port})"
            )
            + ": refusing to push there (add --override-protection if you mean it)",
            code=1,
        )
    path = Path(archive)
    if not path.is_file():
        raise Exit(f"archive '{archive}' does not exist", code=1)
    if dry_run:
        return plan_push(c, remote_project(c, project_dir, python), path, force=force)
    return push(
        c,
        remote_project(c, project_dir, python),
        path,
        yes=yes,
        force=force,
        full=full,
        safety=SafetyNet.from_config(c, no_backup=no_backup),
        load_options=tuple(flags(loaddata=loaddata, fast=fast)),
    )


def plan_push(
    c: Connection, project: Project, archive: Path, *, force: bool
) -> dict[str, Any]:
    """What a push of ``archive`` would change on the host; nothing is written
    on either side (``diskette_reset --check --rows`` and ``diskette_index
    --read-only`` there, ``diskette_load --plan --base`` here).

    :returns: the plan, for ``--json``, as :func:`~diskette.tasks.print_plan` shows it.
    """
    name = c.original_host
    with on_host(c):
        target = run_json(
            c, project, "diskette_reset", "--check", "--rows", *flags(force=force)
        )
        listed = media_list(c, project, read_only=True, host=name)
    if listed is None:
        raise Exit(
            f"{name}: cannot plan without its list of media: update diskette there", code=1
        )
    here = Context(config=c.config)
    with tempfile.TemporaryDirectory(prefix="diskette-") as folder:
        there = Path(folder) / "media-there.json"
        there.write_text(listed)
        answer = run_json(
            here,
            Project.from_config(here),
            "diskette_load",
            str(archive),
            "--plan",
            "--base",
            str(there),
        )
    plan = expect(answer, "plan", dict, "diskette_load")
    now = expect(target, "rows", dict, "diskette_reset")
    after = {
        str(change.get("model")): int(change["after"])
        for change in plan.get("models") or []
        if isinstance(change, dict) and type(change.get("after")) is int
    }
    plan["models"] = emptied(now, after)
    print_plan(f"Pushing {archive} to {name} and loading it there", plan)
    return {
        "host": name,
        "archive": str(archive),
        "database": target.get("database"),
        "plan": plan,
        "dry_run": True,
    }


@task(help=DUMP_HELP)
@remote_task
def publish_snapshot(
    c: Connection,
    no_data: bool = False,
    no_storages: bool = False,
    no_anonymize: bool = False,
    project_dir: str | None = None,
    python: str | None = None,
    json: bool = False,
) -> dict[str, Any]:
    """Dump on the host and publish it to the snapshot registry from there.

    The archive goes from the host to the registry's storage with the host's
    settings and credentials (anonymized there, encrypted there when
    recipients are set): it never crosses this machine, which needs no
    access to the registry. Developers then load it with
    ``inv pull-snapshot``, without SSH.
    """
    dumped = dump_on_host(
        c,
        project_dir,
        python,
        "--publish",
        no_data=no_data,
        no_storages=no_storages,
        no_anonymize=no_anonymize,
    )
    snapshot = dumped.answer.get("snapshot")
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("id"), str):
        raise Exit(
            f"{c.original_host}: diskette_dump --publish gave no snapshot id: update "
            "diskette on the host to this machine's version",
            code=1,
        )
    sealed = ", encrypted" if snapshot.get("recipients") else ""
    print(
        f"{c.original_host}: published snapshot {one_line(snapshot['id'])} "
        f"({human_size(dumped.size)}{sealed}); load it with: inv pull-snapshot"
    )
    return {**dumped.answer, "host": c.original_host}


ns = Collection(remote_dump, pull_snapshot, push_snapshot, publish_snapshot)
ns.configure(
    {
        "diskette": {
            **DEFAULTS,
            "protected_hosts": [],
            "remote": REMOTE_DEFAULTS,
        },
        "runners": {"local": LocalOutput},
    }
)
