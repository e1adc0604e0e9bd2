"""Fabric tasks: dump on a remote host, pull its snapshot here, push one there.

A project's ``fabfile.py`` holding ``from diskette.remote import ns`` gets:

- ``fab -H HOST remote-dump``: dump on the host; print the archive's path and
  sha256 there (several hosts: ``-H a,b``);
- ``fab -H HOST pull-snapshot``: dump there, download (sha256 checked), remove
  the remote archive, then reset the local database and load, as
  ``inv reset-and-load`` does (safety snapshot included);
- ``fab -H HOST push-snapshot ARCHIVE``: upload (sha256 checked on the host),
  then reset the remote database and load there.

The remote side runs the very functions of :mod:`diskette.tasks` with the
``Connection`` as context: only the project's ``manage.py`` is needed there.
Hosts come from ``-H`` and ``~/.ssh/config`` aliases, as Fabric resolves
them. Configuration (``fabric.yaml`` beside the fabfile, or ``FABRIC_*``):

- ``diskette.remote.project_dir``: folder of ``manage.py`` on the host;
- ``diskette.remote.python``: its interpreter (default: the project's
  ``.venv/bin/python`` when present, else ``python3``);
- ``diskette.remote.settings``: settings module on the host;
- ``diskette.remote.download_dir``: where pulled archives land locally
  (default ``var/diskette-snapshots``);
- ``diskette.protected_hosts``: hosts that refuse a push unless ``--force``,
  by any name that reaches them (:func:`protected_entry`);
- and the local keys of :mod:`diskette.tasks` for the load after a pull.

This module imports Fabric, not Django: install ``diskette[remote]``.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fabric import Connection, task
from invoke import Collection, Context, Exit

from .exceptions import DisketteError
from .tasks import (
    DEFAULTS,
    FAST_HELP,
    Dumped,
    Project,
    dump_archive,
    flags,
    reset_and_load_archive,
)
from .transfer import RECEIVE_SCRIPT, download, upload


def remote_project(c: Connection, project_dir: str | None, python: str | None) -> Project:
    """The project on ``c``'s host, from the task flags, else the configuration."""
    conf = c.config.diskette.remote
    directory = project_dir or conf.project_dir
    if not directory:
        raise Exit(
            f"where is the project on {c.original_host}? Set diskette.remote.project_dir "
            "in fabric.yaml, or pass --project-dir",
            code=1,
        )
    project = Project(
        python=python or conf.python or "", settings=conf.settings, directory=directory
    )
    if not project.python:
        venv = c.run(project.shell("test -x .venv/bin/python"), hide=True, warn=True)
        project = Project(
            python=".venv/bin/python" if venv.ok else "python3",
            settings=project.settings,
            directory=directory,
        )
    return project


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
                "left by an interrupted pull"
            )
        elif word == "created":
            created = path
    if not result.ok or not created:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit {result.exited}"]
        raise Exit(
            f"{c.original_host}: cannot create a temporary folder in $TMPDIR "
            f"(or /tmp): {reason[0]}; free space or fix TMPDIR there",
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
            protected = Connection(entry, config=c.config)
        except ValueError as exc:
            raise Exit(
                f"diskette.protected_hosts entry {entry!r} is not [user@]host[:port] "
                f"({exc}); fix it in fabric.yaml",
                code=1,
            ) from exc
        if target & _endpoints(protected.host, protected.port):
            return entry
    return None


def _endpoints(host: str, port: int) -> set[tuple[str, int]]:
    """``host`` and each of its addresses, with ``port``; the name alone if unresolved."""
    found = {(host.lower().rstrip("."), port)}
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # unknown name, or not a valid one
        return found
    return found | {(str(address[4][0]), port) for address in addresses}


def remove_remote(c: Connection, path: str) -> None:
    """Remove ``path`` on the host; reconnects if the connection dropped."""
    c.run(shlex.join(["rm", "-rf", "--", path]), hide=True, warn=True)


def pull(
    c: Connection,
    project: Project,
    destination: Path,
    *options: str,
    keep_remote: bool = False,
) -> Path:
    """Dump on ``c``'s host and download the archive into ``destination``.

    Without ``keep_remote`` the dump goes to a temporary folder on the host,
    removed whatever happens.

    :returns: the local archive, its sha256 checked against the host's.
    """
    folder = None if keep_remote else remote_tempdir(c)
    try:
        dumped = dump_archive(
            c, project, *options, *(["--destination", folder] if folder else [])
        )
        if dumped.sha256 is None:
            raise Exit(
                "the remote dump printed no sha256 to check the download against", code=1
            )
        destination.mkdir(parents=True, exist_ok=True)
        local = destination / f"{c.original_host}_{Path(dumped.path).name}"
        download(
            c, dumped.path, local, dumped.sha256, label=f"{c.original_host}: {local.name}"
        )
    finally:
        if folder:
            remove_remote(c, folder)
    print(f"Downloaded {local} from {c.original_host} (sha256 {dumped.sha256})")
    return local


def push(c: Connection, project: Project, archive: Path, **load: Any) -> None:
    """Upload ``archive`` to ``c``'s host, then reset its database and load it.

    :param load: passed to :func:`diskette.tasks.reset_and_load_archive`.
    """
    folder = remote_tempdir(c)
    try:
        remote = f"{folder}/{archive.name}"

        def receiver(path: str) -> str:
            return project.shell(shlex.join([project.python, "-c", RECEIVE_SCRIPT, path]))

        digest = upload(c, archive, remote, receiver=receiver)
        print(f"Uploaded {archive} to {c.original_host} (sha256 {digest})")
        reset_and_load_archive(c, project, remote, host=c.original_host, **load)
    finally:
        remove_remote(c, folder)


def _connection(c: Context, name: str) -> Connection:
    # Without -H, Fabric hands a plain Invoke Context, which would run locally.
    if not isinstance(c, Connection):
        raise Exit(f"{name} needs a host: fab -H HOST {name}", code=1)
    return c


PROJECT_HELP = {
    "project_dir": "Folder of manage.py on the host (default: diskette.remote.project_dir).",
    "python": "Interpreter on the host (default: diskette.remote.python, else .venv/bin/python or python3).",
}


@task(
    help={
        "no_data": "Leave data out.",
        "no_storages": "Leave storages out.",
        **PROJECT_HELP,
    }
)
def remote_dump(
    c: Context,
    no_data: bool = False,
    no_storages: bool = False,
    project_dir: str | None = None,
    python: str | None = None,
) -> Dumped:
    """Dump the project on the host; print the archive's path and sha256 there."""
    connection = _connection(c, "remote-dump")
    project = remote_project(connection, project_dir, python)
    dumped = dump_archive(
        connection, project, *flags(no_data=no_data, no_storages=no_storages)
    )
    print(f"{connection.original_host}: {dumped.path} (sha256 {dumped.sha256})")
    return dumped


@task(
    help={
        "yes": "Do not ask before resetting the local database (for scripts).",
        "force": "Reset the local database even though its DEBUG is False.",
        "no_backup": "Do not save a safety snapshot of the local data first.",
        "no_load": "Only download the archive (into diskette.remote.download_dir).",
        "keep_remote": "Leave the archive on the host (in its DISKETTE_DUMP_PATH).",
        "no_data": "Leave data out.",
        "no_storages": "Leave storages out.",
        "fast": FAST_HELP,
        **PROJECT_HELP,
    }
)
def pull_snapshot(
    c: Context,
    yes: bool = False,
    force: bool = False,
    no_backup: bool = False,
    no_load: bool = False,
    keep_remote: bool = False,
    no_data: bool = False,
    no_storages: bool = False,
    fast: bool = False,
    project_dir: str | None = None,
    python: str | None = None,
) -> None:
    """Dump on the host, download, then reset the local database and load it here."""
    connection = _connection(c, "pull-snapshot")
    conf = connection.config.diskette
    try:
        local = pull(
            connection,
            remote_project(connection, project_dir, python),
            Path(conf.remote.download_dir),
            *flags(no_data=no_data, no_storages=no_storages),
            keep_remote=keep_remote,
        )
        if no_load:
            return
        here = Context(config=connection.config)
        reset_and_load_archive(
            here,
            Project.from_config(here),
            str(local),
            yes=yes,
            force=force,
            backup=not no_backup,
            backup_dir=conf.backup_dir,
            backup_keep=int(conf.backup_keep),
            load_options=tuple(flags(fast=fast)),
        )
    except DisketteError as exc:
        raise Exit(str(exc), code=1) from exc


@task(
    help={
        "archive": "Local archive to send.",
        "yes": "Do not ask before resetting the remote database (for scripts).",
        "force": "Push to a protected host, or one whose DEBUG is False.",
        "no_backup": "Do not save a safety snapshot of the remote data first.",
        "fast": FAST_HELP,
        **PROJECT_HELP,
    }
)
def push_snapshot(
    c: Context,
    archive: str,
    yes: bool = False,
    force: bool = False,
    no_backup: bool = False,
    fast: bool = False,
    project_dir: str | None = None,
    python: str | None = None,
) -> None:
    """Upload an archive, then reset the host's database and load it there."""
    connection = _connection(c, "push-snapshot")
    conf = connection.config.diskette
    entry = None if force else protected_entry(connection, conf.protected_hosts or ())
    if entry is not None:
        name = connection.original_host
        raise Exit(
            (
                f"{name} is in diskette.protected_hosts"
                if entry == name
                else f"{name} is the same host as {entry}, which is in "
                f"diskette.protected_hosts ({connection.host} port {connection.port})"
            )
            + ": refusing to push there (add --force if you mean it)",
            code=1,
        )
    path = Path(archive)
    if not path.is_file():
        raise Exit(f"archive '{archive}' does not exist", code=1)
    try:
        push(
            connection,
            remote_project(connection, project_dir, python),
            path,
            yes=yes,
            force=force,
            backup=not no_backup,
            backup_dir=conf.backup_dir,
            backup_keep=int(conf.backup_keep),
            load_options=tuple(flags(fast=fast)),
        )
    except DisketteError as exc:
        raise Exit(str(exc), code=1) from exc


ns = Collection(remote_dump, pull_snapshot, push_snapshot)
ns.configure(
    {
        "diskette": {
            **DEFAULTS,
            "protected_hosts": [],
            "remote": {
                "project_dir": None,
                "python": None,
                "settings": None,
                "download_dir": "var/diskette-snapshots",
            },
        }
    }
)
