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

The tasks are thin: the work is in :mod:`diskette.host`, :mod:`diskette.pull`
and :mod:`diskette.push`. The remote side runs the very functions of
:mod:`diskette.tasks` with the ``Connection`` as context: only the
project's ``manage.py`` (and diskette, for its Python) is needed there;
:func:`diskette.host.remote_project` checks both in one round trip before
anything else. Hosts come from ``-H`` and
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
  (:func:`diskette.host.protected_entry`);
- and the local keys of :mod:`diskette.tasks` for the load after a pull.

This module needs Fabric and never sets Django up (of Django, only its
exception classes are imported, through :mod:`diskette.exceptions`): install
``django-diskette[remote]``.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fabric
from fabric import Connection
from invoke import Collection, Context, Exit

from .feed import LoadFeed
from .host import REMOTE_DEFAULTS, protected_entry, remote_project
from .progress import human_size
from .pull import (
    LocalShare,
    Reaching,
    download_dir,
    dump_command,
    plan_pull,
    pull,
    pull_file,
    pulled_answer,
    report_pulled,
    stream_into_load,
)
from .push import plan_push, push
from .shortflags import ShortFlags
from .ssh import HostOutput, on_host, speaking_for
from .tasks import (
    DEFAULTS,
    FAST_HELP,
    JSON_HELP,
    LOADDATA_HELP,
    NO_ANONYMIZE_HELP,
    REMOTE_KEYS,
    Dumped,
    LocalOutput,
    Project,
    SafetyNet,
    answering,
    can_ask,
    confirm,
    dump_archive,
    flags,
    load_arguments,
    load_replacing,
    needs_snapshot,
    one_line,
    reset_target,
    warn_unknown_keys,
)
from .transfer import (
    HostCommand,
)


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
