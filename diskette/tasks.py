"""Invoke tasks over a Django project's ``manage.py``.

A project's ``tasks.py`` holding ``from diskette.tasks import ns`` gets
``inv dump``, ``inv load``, ``inv apps``, ``inv reset-db`` and
``inv reset-and-load``.

The tasks never set Django up in process: they run the project's
``manage.py`` through the context's ``run()``. A Fabric ``Connection`` is an
Invoke ``Context``, so the plain functions below (:func:`manage`,
:func:`dump_archive`, :func:`reset_and_load_archive`, ...) drive a remote
project just as well; the ``@task`` wrappers only read the configuration.

Configuration (``invoke.yaml`` beside ``tasks.py``, or ``INVOKE_DISKETTE_*``
environment variables), under ``diskette``:

- ``manage``: path of ``manage.py`` (default: ``manage.py`` in the current
  directory);
- ``python``: interpreter to run it with (default: the one running Invoke);
- ``settings``: settings module, passed as ``--settings`` (default: none);
- ``backup_dir``: where ``reset-and-load`` saves its safety snapshots
  (default: ``var/diskette-backups``, relative to the current directory);
- ``backup_keep``: how many safety snapshots to keep (default: 3).

This module imports Invoke, not Django: install ``diskette[tasks]``.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from invoke import Collection, Context, Exit, task
from invoke.runners import Result

#: What ``diskette_dump`` prints once the archive is complete.
CREATED = re.compile(r"^Dump archive was created at: (.+) \([^()]+\)$", re.MULTILINE)
CHECKSUM = re.compile(r"^Archive checksum \(sha256\): ([0-9a-f]{64})$", re.MULTILINE)
BACKUP_PREFIX = "before-reset_"


@dataclass(frozen=True)
class Project:
    """How to run a Django project's ``manage.py``.

    :param directory: folder to ``cd`` into first (remote projects); ``None``
        runs in the current directory.
    """

    python: str
    manage: str = "manage.py"
    settings: str | None = None
    directory: str | None = None

    @classmethod
    def from_config(cls, c: Context) -> Project:
        conf = c.config.diskette
        return cls(
            python=conf.python or sys.executable, manage=conf.manage, settings=conf.settings
        )

    def command(self, *args: str) -> str:
        """The shell command running ``manage.py`` with ``args``, every part quoted."""
        return self.shell(self.manage_line(*args))

    def manage_line(self, *args: str) -> str:
        """``manage.py`` with ``args``, to run from the project's folder."""
        settings = [f"--settings={self.settings}"] if self.settings else []
        return shlex.join([self.python, self.manage, *args, *settings])

    def shell(self, command: str) -> str:
        """``command`` run from the project's folder.

        The folder is quoted here rather than left to ``Context.cd``, which
        only escapes spaces: a path holding quotes must work and inject nothing.
        """
        if not self.directory:
            return command
        return f"cd {shlex.quote(self.directory)} && {command}"


def manage(c: Context, project: Project, *args: str, **run: Any) -> Result:
    """Run ``manage.py`` with ``args``; ``run`` goes to ``c.run`` (``hide``, ``warn``)."""
    return c.run(project.command(*args), **run)


def command_error(result: Result) -> str:
    """The one-line ``CommandError`` a failed management command printed."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else f"exit status {result.exited}"
    return message.removeprefix("CommandError: ")


@dataclass(frozen=True)
class Dumped:
    """An archive ``diskette_dump`` wrote: its path where it ran, its sha256."""

    path: str
    sha256: str | None


def dump_archive(c: Context, project: Project, *options: str, **run: Any) -> Dumped:
    """Run ``diskette_dump`` with ``options``; return where the archive is."""
    result = manage(c, project, "diskette_dump", *options, **run)
    found = CREATED.search(result.stdout)
    if found is None:
        raise Exit("diskette_dump did not say where it wrote the archive", code=1)
    checksum = CHECKSUM.search(result.stdout)
    return Dumped(found.group(1), checksum.group(1) if checksum else None)


@dataclass(frozen=True)
class ResetTarget:
    """The database a reset would drop, as ``diskette_reset --check --json`` says."""

    database: str
    holds_data: bool


def reset_target(c: Context, project: Project, force: bool) -> ResetTarget:
    """What a reset would drop, or :class:`Exit` if the project refuses it."""
    result = manage(
        c,
        project,
        "diskette_reset",
        "--check",
        "--json",
        *flags(force=force),
        hide=True,
        warn=True,
    )
    if result.failed:
        raise Exit(command_error(result), code=1)
    answer = json_output(result)
    return ResetTarget(answer["database"], bool(answer["holds_data"]))


def verified_archive(c: Context, project: Project, archive: str) -> str:
    """Verify ``archive`` (downloading a URL once); return the local file to load.

    :raises Exit: naming the archive and what is wrong with it.
    """
    result = manage(
        c, project, "diskette_load", archive, "--check", "--json", hide="out", warn=True
    )
    if result.failed:
        raise Exit(f"{archive} cannot be loaded: {command_error(result)}", code=1)
    return str(json_output(result)["archive"])


def json_output(result: Result) -> dict[str, Any]:
    """The JSON object a command printed last with ``--json``."""
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise Exit(f"{result.command!r} printed no JSON answer", code=1) from None
    if not isinstance(answer, dict):
        raise Exit(f"{result.command!r} printed no JSON object", code=1)
    return answer


def confirm(question: str, yes: bool) -> None:
    """Ask ``question`` on a terminal; ``yes`` answers it for scripts.

    :raises Exit: when the answer is not yes, or there is no terminal to ask on.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise Exit(
            f"refusing without confirmation ({question}): no terminal to ask on; "
            "pass --yes to confirm from a script",
            code=1,
        )
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise Exit("cancelled", code=1)


def safety_snapshot(c: Context, project: Project, folder: str) -> str:
    """Dump the whole database and the storages into ``folder``.

    Names carry the date, then a random part: two resets within a second
    must not overwrite each other's snapshot.

    :raises Exit: naming the problem and ``--no-backup``, if the dump fails.
    """
    result = manage(
        c,
        project,
        "diskette_dump",
        "--everything",
        "--destination",
        folder,
        "--filename",
        f"{BACKUP_PREFIX}{{date}}_{secrets.token_hex(3)}{{features}}.tar.gz",
        hide="out",
        warn=True,
    )
    found = CREATED.search(result.stdout)
    if result.failed or found is None:
        raise Exit(
            f"could not save a safety snapshot first: {command_error(result)} "
            "(pass --no-backup to go on without one)",
            code=1,
        )
    print(f"Safety snapshot of the current database and media: {found.group(1)}")
    return found.group(1)


def restore_steps(snapshot: str, force: bool) -> list[tuple[str, ...]]:
    """The ``manage.py`` commands that put ``snapshot`` back, keeping the file.

    Only here does a task pass ``--everything``: the snapshot is the
    project's own, made by :func:`safety_snapshot`, and holds every model.
    The same list is run by :func:`restore_snapshot` and printed for a
    person when that fails, so the two never differ.
    """
    return [
        ("diskette_reset", "--noinput", *flags(force=force)),
        ("diskette_load", snapshot, "--everything", "--keep", *flags(force=force)),
    ]


def restore_snapshot(c: Context, project: Project, snapshot: str, force: bool) -> Result:
    """Reset the database and load ``snapshot`` back; the first failure stops it."""
    for step in restore_steps(snapshot, force):
        result = manage(c, project, *step, hide="out", warn=True)
        if result.failed:
            break
    return result


def prune_backups(c: Context, project: Project, folder: str, keep: int) -> None:
    """Keep the newest ``keep`` safety snapshots in ``folder``.

    Called only once a reset-and-load succeeded: a failed attempt never
    pushes out the snapshot that holds the data from before it.
    """
    listing = c.run(project.shell(f"ls -1 -- {shlex.quote(folder)}"), hide=True, warn=True)
    # Names carry the date: the newest sort last.
    backups = sorted(
        name
        for name in listing.stdout.split()
        if name.startswith(BACKUP_PREFIX) and name.endswith(".tar.gz")
    )
    old = backups[: max(len(backups) - keep, 0)]
    if old:
        c.run(
            project.shell(shlex.join(["rm", "-f", "--", *(f"{folder}/{n}" for n in old)]))
        )


FAST_HELP = (
    "Load JSON Lines data in batches: much faster, no save signals (docs/commands.md)."
)


def reset_and_load_archive(
    c: Context,
    project: Project,
    archive: str,
    *,
    yes: bool = False,
    force: bool = False,
    backup: bool = True,
    backup_dir: str = "var/diskette-backups",
    backup_keep: int = 3,
    load_options: tuple[str, ...] = (),
    host: str | None = None,
) -> None:
    """Verify ``archive``, save a safety snapshot, reset the database, load.

    All or nothing as a whole: the archive is verified (a URL downloaded,
    once) before anything is dropped, and if loading still fails, the safety
    snapshot is loaded back before the task reports the failure. Old
    snapshots are pruned only after a success.

    :param host: the host's name, for messages, when ``c`` is a Connection.
    """
    on = f" on {host}" if host else ""
    target = reset_target(c, project, force)
    local = verified_archive(c, project, archive)
    confirm(f"Drop the {target.database}{on} and load {archive} into it?", yes)
    snapshot = None
    if backup and target.holds_data:
        snapshot = safety_snapshot(c, project, backup_dir)
    elif backup:
        print(f"The database{on} holds no data yet: no safety snapshot needed")
    manage(c, project, "diskette_reset", "--noinput", *flags(force=force))
    loaded = manage(
        c, project, "diskette_load", local, *load_options, *flags(force=force), warn=True
    )
    if loaded.failed:
        failure = f"loading {archive} failed: {command_error(loaded)}"
        if snapshot is None:
            raise Exit(
                f"{failure}; the database is now empty (no safety snapshot was taken) and "
                "the media unchanged",
                code=1,
            )
        restored = restore_snapshot(c, project, snapshot, force)
        if restored.failed:
            by_hand = project.shell(
                " && ".join(
                    project.manage_line(*step) for step in restore_steps(snapshot, force)
                )
            )
            raise Exit(
                f"{failure}; putting the safety snapshot back failed too "
                f"({command_error(restored)}): your data and media are in {snapshot}, "
                f"put them back{on} with: {by_hand}",
                code=1,
            )
        raise Exit(
            f"{failure}; your data and media were put back from the safety snapshot "
            f"{snapshot}",
            code=1,
        )
    if snapshot is not None:
        prune_backups(c, project, backup_dir, backup_keep)


@task(
    help={
        "destination": "Folder to write the archive into (default: DISKETTE_DUMP_PATH).",
        "filename": "Archive file name, with {features} and {date} fields.",
        "no_data": "Leave data out.",
        "no_storages": "Leave storages out.",
    }
)
def dump(
    c: Context,
    destination: str | None = None,
    filename: str | None = None,
    no_data: bool = False,
    no_storages: bool = False,
) -> None:
    """Dump the project's data and media into an archive (diskette_dump)."""
    options = [*_option("--destination", destination), *_option("--filename", filename)]
    options += flags(no_data=no_data, no_storages=no_storages)
    dump_archive(c, Project.from_config(c), *options)


@task(
    help={
        "archive": "Archive path or http(s):// URL.",
        "keep": "Keep the archive once loaded.",
        "no_data": "Restore storages only.",
        "no_storages": "Load data only.",
        "fast": FAST_HELP,
        "overwrite": "Load into a database that already holds data (rows overwritten by "
        "primary key, others kept).",
        "force": "Load even though the project's DEBUG is False.",
    }
)
def load(
    c: Context,
    archive: str,
    keep: bool = False,
    no_data: bool = False,
    no_storages: bool = False,
    fast: bool = False,
    overwrite: bool = False,
    force: bool = False,
) -> None:
    """Load an archive into the project's (freshly migrated) database (diskette_load)."""
    options = flags(
        keep=keep,
        no_data=no_data,
        no_storages=no_storages,
        fast=fast,
        overwrite=overwrite,
        force=force,
    )
    manage(c, Project.from_config(c), "diskette_load", archive, *options)


@task(help={"format": "json (default) or python."})
def apps(c: Context, format: str = "json") -> None:
    """Print starter definitions for the project's installed apps (diskette_apps)."""
    manage(c, Project.from_config(c), "diskette_apps", "--format", format)


@task(
    help={
        "yes": "Do not ask for confirmation (for scripts).",
        "force": "Reset even though the project's DEBUG is False.",
    }
)
def reset_db(c: Context, yes: bool = False, force: bool = False) -> None:
    """Drop the project's database, create it empty and migrate (diskette_reset)."""
    project = Project.from_config(c)
    target = reset_target(c, project, force)
    confirm(f"Drop and recreate the {target.database}?", yes)
    manage(c, project, "diskette_reset", "--noinput", *flags(force=force))


@task(
    help={
        "archive": "Archive path or http(s):// URL.",
        "yes": "Do not ask for confirmation (for scripts).",
        "force": "Reset even though the project's DEBUG is False.",
        "no_backup": "Do not save a safety snapshot of the current data and media first.",
        "keep": "Keep the archive once loaded.",
        "fast": FAST_HELP,
    }
)
def reset_and_load(
    c: Context,
    archive: str,
    yes: bool = False,
    force: bool = False,
    no_backup: bool = False,
    keep: bool = False,
    fast: bool = False,
) -> None:
    """Verify an archive, snapshot the current data, reset the database, load the archive."""
    conf = c.config.diskette
    reset_and_load_archive(
        c,
        Project.from_config(c),
        archive,
        yes=yes,
        force=force,
        backup=not no_backup,
        backup_dir=conf.backup_dir,
        backup_keep=int(conf.backup_keep),
        load_options=tuple(flags(keep=keep, fast=fast)),
    )


def _option(name: str, value: str | None) -> list[str]:
    return [name, value] if value is not None else []


def flags(**flags: bool) -> list[str]:
    return [f"--{name.replace('_', '-')}" for name, on in flags.items() if on]


#: The configuration these tasks read, under ``diskette``.
DEFAULTS: dict[str, Any] = {
    "manage": "manage.py",
    "python": None,
    "settings": None,
    "backup_dir": "var/diskette-backups",
    "backup_keep": 3,
}

ns = Collection(dump, load, apps, reset_db, reset_and_load)
ns.configure({"diskette": DEFAULTS})
