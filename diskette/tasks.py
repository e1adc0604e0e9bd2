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

This module imports Invoke, not Django: install ``django-diskette[tasks]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import json
import reprlib
import secrets
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from invoke import Collection, Context, Exit
from invoke.runners import Local, Result

from . import DOCS_URL
from .delta import HAVE_LIMIT, SIDECAR_SUFFIX, checked_base, read_base, sidecar_of
from .exceptions import ConfigurationError
from .progress import human_size
from .shortflags import task

_Value = TypeVar("_Value")
#: How ``diskette_load`` names a snapshot of the registry (the same as
#: ``diskette.registry.SCHEME``, which imports Django: this module must not).
REGISTRY_SCHEME = "snapshot:"
BACKUP_PREFIX = "before-reset_"
BACKUP_DIR = "var/diskette-backups"
BACKUP_KEEP = 3


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
        """The local project, as configured; checked before any work.

        :raises Exit: naming the setting to fix when ``manage.py`` or the
            interpreter is not there (else Python's own two-line error
            would surface halfway through a task).
        """
        conf = c.config.diskette
        warn_unknown_keys(conf, {*DEFAULTS, *REMOTE_KEYS})
        project = cls(
            python=config_text(conf, "python", optional=True) or sys.executable,
            manage=str(config_text(conf, "manage")),
            settings=config_text(conf, "settings", optional=True),
        )
        if not Path(project.manage).is_file():
            raise Exit(
                f"{project.manage} not found in {Path.cwd()}: run this from the "
                f"project's folder, or set diskette.manage in {CONFIG_FILES}",
                code=1,
            )
        python = shutil.which(project.python)
        if python is None:
            raise Exit(
                f"the interpreter {project.python} was not found: fix diskette.python "
                f"in {CONFIG_FILES}",
                code=1,
            )
        if project.settings:
            folder = str(Path(project.manage).parent.absolute())
            found = c.run(
                f"cd -- {shlex.quote(folder)} && "
                + shlex.join([python, "-c", SETTINGS_CHECK, project.settings]),
                hide=True,
                warn=True,
                in_stream=False,
            )
            if found is None or not found.ok:
                raise Exit(
                    f"settings module {project.settings} not found from {folder}: fix "
                    f"diskette.settings in {CONFIG_FILES}",
                    code=1,
                )
        return project

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
        return f"cd -- {shlex.quote(self.directory)} && {command}"


#: Where a user sets the keys these tasks read.
CONFIG_FILES = "invoke.yaml (fabric.yaml for fab)"
#: Exits 0 when the settings module named by argv[1] can be found from the
#: current folder (as ``manage.py`` finds it), 3 otherwise. Only its parent
#: packages are imported (``find_spec`` must), never the settings themselves.
SETTINGS_CHECK = (
    "import importlib.util,sys\n"
    "sys.path.insert(0,'')\n"
    "try:\n found=importlib.util.find_spec(sys.argv[1]) is not None\n"
    "except ImportError:\n found=False\n"
    "sys.exit(0 if found else 3)"
)


def config_text(
    conf: Mapping[str, Any], key: str, *, optional: bool = False, prefix: str = "diskette"
) -> str | None:
    """The text a configuration key holds, checked: a path, a module, a name.

    YAML turns ``manage: 5`` or ``python: [x]`` into other types, which would
    otherwise fail deep inside a task with a ``TypeError`` traceback.

    :raises Exit: naming the key and the file to fix.
    """
    value = conf.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or not value.isprintable():
        raise Exit(
            f"{prefix}.{key} must be a non-empty line of text, not {value!r}: fix it "
            f"in {CONFIG_FILES}",
            code=1,
        )
    return value


#: Keys under ``diskette`` that :mod:`diskette.remote` reads.
REMOTE_KEYS = ("protected_hosts", "remote")
_warned: set[str] = set()


def warn_unknown_keys(
    conf: Mapping[str, Any], known: Iterable[str], prefix: str = "diskette"
) -> dict[str, str | None]:
    """Warn, once per key, about configuration keys no task reads.

    A typo in ``invoke.yaml`` (``backupdir``) would otherwise be ignored
    without a word, and the default silently used instead.

    :returns: each unknown key with the known key it is closest to, if any.
    """
    known = list(known)
    unknown: dict[str, str | None] = {}
    for key in conf:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        unknown[key] = close[0] if close else None
        name = f"{prefix}.{key}"
        if name in _warned:
            continue
        _warned.add(name)
        hint = f"did you mean '{prefix}.{close[0]}'?" if close else "it is ignored"
        print(
            f"Warning: unknown configuration key '{name}' "
            f"(invoke.yaml, fabric.yaml or the environment): {hint}",
            file=sys.stderr,
        )
    return unknown


#: Bytes read from a command's output at a time. Invoke reads 1,000, decoding
#: and storing each piece: a list of 16,000 media (1.6 MB) took it 0.2 s to
#: read, against 0.01 s for this.
READ_CHUNK = 64 * 1024


class LocalOutput(Local):
    """Invoke's local runner, reading a command's output :data:`READ_CHUNK` at a time."""

    read_chunk_size = READ_CHUNK


def manage(c: Context, project: Project, *args: str, **run: Any) -> Result:
    """Run ``manage.py`` with ``args``; ``run`` goes to ``c.run`` (``hide``, ``warn``)."""
    return finished(c.run(project.command(*args), **run))


def finished(result: Result | None) -> Result:
    """The result of a command run in the foreground (``run`` returns ``None``
    only for ``disown``, which these tasks never ask for)."""
    if result is None:
        raise Exit("a command ran in the background; diskette needs its result", code=1)
    return result


class CommandFailed(Exit):
    """A management command run with ``--json`` failed; ``message`` is its error."""

    def __init__(
        self, message: str, result: Result, answer: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, code=1)
        self.result = result
        #: The whole ``{"error": ...}`` object (``diskette_load --reset``
        #: adds whether it dropped the database), or empty.
        self.answer = answer or {}


def run_json(
    c: Context, project: Project, *args: str, relay: bool = True, **run: Any
) -> dict[str, Any]:
    """Run a diskette command with ``--json``; return the object it printed.

    The commands' JSON output is the contract between them and these
    tasks (``docs/commands.md``): the human messages are free to change.
    Progress is asked for when our standard error is a terminal: the
    command's standard error is relayed to it as it comes.

    :param relay: ``False`` for a command run beside other work, whose
        progress would cut into that work's: its standard error is then
        captured, not shown.

    :raises CommandFailed: with the command's one-line error, read from its
        ``{"error": ...}`` answer (or, for a command that could not even
        start, the last line of its standard error).
    """
    # in_stream=False: an answer typed ahead belongs to our question, not
    # to the command (which asks nothing under --json).
    result = manage(
        c,
        project,
        *args,
        "--json",
        *(progress_flag() if relay else []),
        hide="out" if relay else True,
        warn=True,
        in_stream=False,
        **run,
    )
    return json_answer(result)


def json_answer(result: Result) -> dict[str, Any]:
    """The object a diskette command run with ``--json`` printed.

    :raises CommandFailed: as :func:`run_json` says.
    """
    answer = _last_json_object(result.stdout)
    if result.failed or answer is None or "error" in answer:
        raise CommandFailed(_error(result, answer), result, answer)
    return answer


def progress_flag() -> list[str]:
    """``--progress`` when our standard error is a terminal to relay progress to."""
    return ["--progress"] if sys.stderr.isatty() else []


def _last_json_object(output: str) -> dict[str, Any] | None:
    """The object on the last line of ``output``, if it is one.

    On a push or a pull, ``output`` comes from another host: it is parsed
    strictly (no ``NaN``, no nesting deep enough to exhaust the stack).
    """
    lines = output.strip().splitlines()
    try:
        answer = json.loads(lines[-1], parse_constant=_refuse) if lines else None
    except (ValueError, RecursionError):
        return None
    return answer if isinstance(answer, dict) else None


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _error(result: Result, answer: dict[str, Any] | None) -> str:
    """The one-line error of a failed command, made safe to print."""
    if answer is not None and isinstance(answer.get("error"), str):
        return one_line(answer["error"])
    if result.ok:
        return f"{result.command!r} printed no JSON answer"
    return last_error(result, f"exit status {result.exited}")


def last_error(result: Result, fallback: str) -> str:
    """The last line a command wrote on its standard error, made safe to print.

    That line is its error (a ``CommandError``, a shell's complaint); on a
    remote host it is the host's text, so it goes through :func:`one_line`.
    """
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return one_line(lines[-1].removeprefix("CommandError: ")) if lines else fallback


#: Longest message from a command (maybe on another host) passed on as is.
MESSAGE_LIMIT = 500


def one_line(text: str) -> str:
    """``text`` as one printable line: no terminal escapes, no newline, bounded."""
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 1] + "…"


@dataclass(frozen=True)
class Dumped:
    """An archive ``diskette_dump`` wrote: its path where it ran, size, sha256,
    and the command's whole ``--json`` answer."""

    path: str
    sha256: str | None
    size: int = 0
    answer: dict[str, Any] = field(default_factory=dict)


def dump_archive(c: Context, project: Project, *options: str, **run: Any) -> Dumped:
    """Run ``diskette_dump`` with ``options``; return where the archive is.

    :raises Exit: when the answer lacks what a pull relies on (it may come
        from another host: it is checked, not trusted).
    """
    return dumped_answer(run_json(c, project, "diskette_dump", *options, **run))


def dumped_answer(answer: dict[str, Any]) -> Dumped:
    """What ``diskette_dump``'s ``--json`` answer says it wrote.

    :raises Exit: as :func:`dump_archive` says.
    """
    sha256 = answer.get("sha256")
    if sha256 is not None:  # None with --no-checksum
        sha256 = expect(answer, "sha256", str, "diskette_dump")
    path = expect(answer, "archive", str, "diskette_dump")
    return Dumped(path, sha256, expect(answer, "size", int, "diskette_dump"), answer)


@dataclass(frozen=True)
class ResetTarget:
    """The database a reset would drop, as ``diskette_reset --check --json`` says."""

    database: str
    holds_data: bool
    #: Its dumps anonymize, and its loads refuse raw archives (a diskette
    #: older than these keys does neither: both ``False``).
    anonymizes: bool = False
    requires_anonymized: bool = False
    #: What its storage folders hold, read once any interrupted load was
    #: settled (as :func:`media_list` says it), when asked for; ``None``
    #: when it could not be made.
    media: str | None = None


def reset_target(
    c: Context, project: Project, force: bool, *, with_media: bool = False
) -> ResetTarget:
    """What a reset would drop, or :class:`Exit` if the project refuses it.

    :param with_media: list the media too (``--media-list``), for a delta:
        one Django start where a pull needs both before it reaches the host.
    """
    try:
        answer = run_json(
            c,
            project,
            "diskette_reset",
            "--check",
            *flags(force=force, media_list=with_media),
        )
    except CommandFailed as exc:
        if not (with_media and lacks_option(exc, "--media-list")):
            raise
        # An older diskette here: the list from its own command, as it was.
        return dataclasses.replace(
            reset_target(c, project, force), media=media_list(c, project)
        )
    return ResetTarget(
        expect(answer, "database", str, "diskette_reset"),
        expect(answer, "holds_data", bool, "diskette_reset"),
        anonymizes=answer.get("anonymizes") is True,
        requires_anonymized=answer.get("requires_anonymized") is True,
        media=_listed_media(answer) if with_media else None,
    )


def _listed_media(answer: dict[str, Any]) -> str | None:
    """The list a reset check made, as text for the host (``None``, said in
    one line, when it could not be made: the media are then sent whole)."""
    listed = answer.get("media")
    if listed is None:
        _sent_whole("here", one_line(str(answer.get("media_error") or "none made")))
        return None
    return _usable_list(json.dumps(listed, separators=(",", ":")), "here", listed)


def planned(c: Context, project: Project, archive: str) -> dict[str, Any]:
    """What loading ``archive`` into a reset database would change
    (``diskette_load --plan``), printed; nothing is changed, a download
    is removed.

    :raises Exit: naming the archive and what is wrong with it.
    """
    try:
        answer = run_json(c, project, "diskette_load", archive, "--plan")
    except CommandFailed as exc:
        raise Exit(f"{archive} cannot be loaded: {exc.message}", code=1) from exc
    plan = expect(answer, "plan", dict, "diskette_load")
    print_plan(f"Resetting the database and loading {archive}", plan)
    return {"archive": archive, "plan": plan, "dry_run": True}


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


def print_plan(what: str, plan: dict[str, Any]) -> None:
    """Print a plan (``diskette_load --plan``'s, or one a pull or push puts
    together from both sides): rows per model now and after, files per storage.

    The plan may come from another host: its values are printed as one line each.
    """
    print(f"{what} would change:")
    for change in _listed(plan, "models"):
        if isinstance(change, dict):
            now = "?" if change.get("now") is None else change.get("now")
            print(
                "  "
                + one_line(
                    f"{change.get('model')}: {now} rows now, {change.get('after')} after"
                )
            )
    for change in _listed(plan, "storages"):
        if isinstance(change, dict):
            sent = change.get("bytes_sent")
            moved = f"; {human_size(sent)} to send" if type(sent) is int else ""
            print(
                "  "
                + one_line(
                    f"{change.get('storage')}: {change.get('added')} files added, "
                    f"{change.get('changed')} changed, {change.get('removed')} removed{moved}"
                )
            )
    print("Dry run: nothing was changed.")


def media_list(
    c: Context, project: Project, *, read_only: bool = False, host: str | None = None
) -> str | None:
    """What the storages of ``project`` hold, per file (``diskette_index``),
    for a dump on the other side to send only what this side lacks.

    :param read_only: keep no sha256 for next time, and settle no
        interrupted load first (a dry run writes nothing).
    :returns: the list, as JSON text; ``None``, said in one line, when it
        cannot be made (an older diskette, an unreadable folder): the media
        then go whole, as they always could.
    """
    result = manage(
        c,
        project,
        "diskette_index",
        "--output",
        "-",
        *flags(read_only=read_only),
        hide=True,
        warn=True,
        in_stream=False,
    )
    where = f"on {host}" if host else "here"
    if not result.ok:
        _sent_whole(where, last_error(result, f"exit status {result.exited}"))
        return None
    # The list is the last line: settings that print come before it.
    return _usable_list((result.stdout.strip().splitlines() or [""])[-1], where)


def _usable_list(listed: str, where: str, parsed: Any = None) -> str | None:
    """``listed`` (a list of media, as text; ``parsed``, when it was read
    from JSON already) if a dump can use it; else ``None``, said in one line."""
    if len(listed) > HAVE_LIMIT:
        problem = "more files than a list may hold"
    else:
        try:
            if parsed is None:
                read_base(io.BytesIO(listed.encode()), "the list")
            else:
                checked_base(parsed, "the list")
            return listed
        except ConfigurationError as exc:
            problem = one_line(str(exc))
    _sent_whole(where, problem)
    return None


def _sent_whole(where: str, problem: str) -> None:
    """Say in one line that the media listed ``where`` go whole, and why."""
    print(
        f"Could not list the media {where} ({problem}): they are sent whole",
        file=sys.stderr,
    )


def _listed(answer: dict[str, Any], key: str) -> list[Any]:
    value = answer.get(key)
    return value if isinstance(value, list) else []


def expect(answer: dict[str, Any], key: str, kind: type[_Value], command: str) -> _Value:
    """``answer[key]``, checked to be a ``kind``.

    On a push the answer comes from another host, whose diskette may be
    older or not diskette at all: checked, it fails in one line rather than
    with a ``KeyError`` traceback.
    """
    value = answer.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not _printable(value)):
        raise Exit(
            f"{command} --json answered without a valid {key!r} "
            f"({one_line(reprlib.repr(answer))}); is the same diskette version "
            "installed there?",
            code=1,
        )
    return value


def _printable(text: str) -> bool:
    """Whether ``text`` is one line of UTF-8: a path or a name to pass on."""
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: bytes that were not UTF-8
        return False
    return text.isprintable()


def confirm(question: str, yes: bool) -> None:
    """Ask ``question`` on a terminal; ``yes`` answers it for scripts.

    :raises Exit: when the answer is not yes, or there is no terminal to ask on.
    """
    if yes:
        return
    can_ask(question, yes)
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:  # Ctrl-D: no answer is not a yes
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise Exit("cancelled", code=1)


def can_ask(question: str, yes: bool) -> None:
    """Refuse now, before any work, what :func:`confirm` would refuse later.

    :raises Exit: without ``yes`` and without a terminal to ask on.
    """
    if not yes and not sys.stdin.isatty():
        raise Exit(
            f"refusing without confirmation ({question}): no terminal to ask on; "
            "pass --yes to confirm from a script",
            code=1,
        )


@contextlib.contextmanager
def answering(enabled: bool) -> Iterator[dict[str, Any]]:
    """``--json`` for a task: one JSON object on the standard output, nothing else.

    Inside the block, whatever the task prints (its messages, the
    commands' relayed output, a question) goes to the standard error; the
    dict the block fills is printed at the end as one JSON object, or
    ``{"error": ...}`` when the task fails with :class:`Exit`.
    """
    answer: dict[str, Any] = {}
    if not enabled:
        yield answer
        return
    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield answer
    except Exit as exc:
        print(json.dumps({"error": str(exc.message or exc)}), file=stdout, flush=True)
        raise
    except KeyboardInterrupt:
        print(json.dumps({"error": "interrupted"}), file=stdout, flush=True)
        raise
    print(json.dumps(answer, sort_keys=True), file=stdout, flush=True)


def safety_snapshot(
    c: Context,
    project: Project,
    folder: str,
    host: str | None = None,
    *,
    raw: bool = False,
) -> str:
    """Dump the whole database into ``folder``, and hard-link the storages beside it.

    The media are not archived again: ``--link-media`` links each file into
    a folder beside the archive (``NAME.media``), which takes no time and no
    space, and the load that puts the snapshot back finds them there. The
    reset that follows replaces the media folder rather than writing into
    its files, so the links keep the old content.
    Names carry the date, then a random part: two resets within a second
    must not overwrite each other's snapshot.

    :param raw: the project anonymizes its dumps (:class:`ResetTarget`): this
        one holds its own data, which must come back as it was, so it is not.
    :raises Exit: naming the problem and ``--no-backup``, if the dump fails.
    """
    path = take_safety_snapshot(c, project, folder, raw=raw).path
    announce_snapshot(path, host)
    return path


def take_safety_snapshot(
    c: Context, project: Project, folder: str, *, raw: bool = False, relay: bool = True
) -> Dumped:
    """:func:`safety_snapshot`, silently (``relay``: as :func:`run_json`);
    its answer says what it left out (``skipped``)."""
    try:
        dumped = dump_archive(
            c,
            project,
            "--everything",
            "--link-media",
            *flags(no_anonymize=raw),
            "--destination",
            folder,
            "--filename",
            f"{BACKUP_PREFIX}{{date}}_{secrets.token_hex(3)}{{features}}.tar.gz",
            relay=relay,
        )
    except CommandFailed as exc:
        raise Exit(
            f"could not save a safety snapshot first: {exc.message} "
            "(pass --no-backup to go on without one)",
            code=1,
        ) from exc
    return dumped


def announce_snapshot(path: str, host: str | None = None, *, when: str = "") -> None:
    """Say where the safety snapshot is (on ``host``, for a push).

    :param when: when it was taken, if not just now.
    """
    where = f"{host}:{path}" if host else path
    what = (
        f"the database and media as they were {when}"
        if when
        else "the current database and media"
    )
    print(f"Safety snapshot of {what}: {where}")


def needs_snapshot(target: ResetTarget, safety: SafetyNet, on: str = "") -> bool:
    """Whether a reset of ``target`` is preceded by a safety snapshot: when
    enabled, and the database holds data (an empty snapshot must never push
    out a real one), which is said.

    :param on: where the database is, for the message (" on HOST").
    """
    if safety.enabled and not target.holds_data:
        print(f"The database{on} holds no data yet: no safety snapshot needed")
    return safety.enabled and target.holds_data


def restore_steps(
    snapshot: str, force: bool, allow_raw: bool = False
) -> list[tuple[str, ...]]:
    """The ``manage.py`` commands that put ``snapshot`` back, keeping the file.

    Only here does a task pass ``--everything`` (and, where the project
    refuses raw archives, ``--allow-raw``): the snapshot is the project's
    own, made by :func:`safety_snapshot`, and holds every model. Nor are
    hooks run: its data had its fix-ups, and a hook that failed the load
    would fail this one too, leaving the database empty.
    The same list is run by :func:`restore_snapshot` and printed for a
    person when that fails, so the two never differ.
    """
    return [
        ("diskette_reset", "--noinput", *flags(force=force)),
        (
            "diskette_load",
            snapshot,
            "--everything",
            "--keep",
            "--no-hooks",
            *flags(allow_raw=allow_raw, force=force),
        ),
    ]


def restore_snapshot(
    c: Context, project: Project, snapshot: str, force: bool, allow_raw: bool = False
) -> None:
    """Reset the database and load ``snapshot`` back; the first failure stops it.

    :raises CommandFailed: naming what failed.
    """
    for step in restore_steps(snapshot, force, allow_raw):
        run_json(c, project, *step)


def prune_backups(
    c: Context, project: Project, folder: str, keep: int, *, wait: bool = True
) -> None:
    """Keep the newest ``keep`` safety snapshots in ``folder``, with their media.

    Called only once a reset-and-load succeeded: a failed attempt never
    pushes out the snapshot that holds the data from before it. A media
    folder (``NAME.media``) goes with its archive, and one whose archive is
    gone (a dump killed before its archive was written) once it is older
    than the oldest snapshot kept.

    :param wait: ``False`` leaves the removal running (a media folder of
        tens of thousands of links takes a while) while the task ends: the
        load is done, and nothing reads what goes.
    """
    listing = finished(
        c.run(project.shell(f"ls -1 -- {shlex.quote(folder)}"), hide=True, warn=True)
    )
    # Names carry the date: the newest sort last.
    names = [n for n in listing.stdout.split() if n.startswith(BACKUP_PREFIX)]
    backups = sorted(n.removesuffix(".tar.gz") for n in names if n.endswith(".tar.gz"))
    kept = backups[max(len(backups) - keep, 0) :]
    old = [f"{stem}.tar.gz" for stem in backups if stem not in kept]
    oldest = min(kept, default="")
    old += [
        n
        for n in names
        if n.endswith(SIDECAR_SUFFIX) and n.removesuffix(SIDECAR_SUFFIX) < oldest
    ]
    remove_files(c, project, [f"{folder}/{n}" for n in old], wait=wait)


def remove_files(
    c: Context, project: Project, paths: list[str], *, wait: bool = True
) -> None:
    """``rm -rf`` ``paths`` where the project runs (here, or on its host).

    Best effort: a clean-up that fails must not hide what the task reports.

    :param wait: ``False`` returns at once, the removal left running
        (``disown``: for this machine only, as a host's would end with the
        connection).
    """
    if paths:
        c.run(
            project.shell(shlex.join(["rm", "-rf", "--", *paths])),
            hide=True,
            warn=True,
            in_stream=False,
            disown=not wait,
        )


JSON_HELP = (
    "Print one JSON object with the result (or the error) on the standard output; "
    "messages go to the standard error."
)
LOADDATA_HELP = (
    "Load with Django's loaddata, one object at a time: the same rows and signals, "
    f"many times slower ({DOCS_URL}commands.md#how-data-loads-and---loaddata)."
)
FAST_HELP = "Accepted for older scripts: batched loading is the default."
DRY_RUN_HELP = (
    "Say what would change (rows per model now and after; files added, changed, "
    "removed) and change nothing: no snapshot, no reset, no load."
)
NO_ANONYMIZE_HELP = (
    "Write personal data raw although the project has anonymization rules "
    f"(refused where DISKETTE_ANONYMIZE_REQUIRED is set; {DOCS_URL}anonymize.md)."
)


@dataclass(frozen=True)
class SafetyNet:
    """The safety snapshot a reset-and-load saves first: whether, where, how many kept."""

    enabled: bool = True
    folder: str = BACKUP_DIR
    keep: int = BACKUP_KEEP

    @classmethod
    def from_config(cls, c: Context, *, no_backup: bool = False) -> SafetyNet:
        """From ``diskette.backup_dir`` and ``backup_keep``, and the ``--no-backup`` flag."""
        conf = c.config.diskette
        keep = conf.backup_keep
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise Exit(
                f"diskette.backup_keep must be a whole number of snapshots, 1 or more, "
                f"not {keep!r}: fix it in {CONFIG_FILES}",
                code=1,
            )
        return cls(not no_backup, str(config_text(conf, "backup_dir")), keep)


def reset_and_load_archive(
    c: Context,
    project: Project,
    archive: str,
    *,
    yes: bool = False,
    force: bool = False,
    safety: SafetyNet = SafetyNet(),  # noqa: B008 - frozen, never mutated
    load_options: tuple[str, ...] = (),
    host: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Save a safety snapshot, then reset the database and load ``archive``.

    All or nothing as a whole. One command, ``diskette_load --reset``,
    verifies the archive (a URL downloaded), resets the database only then,
    and loads: an archive that cannot be loaded drops nothing. If loading
    still fails once the database was reset, the safety snapshot is loaded
    back before the task reports the failure. Old snapshots are pruned only
    after a success.

    :param host: the host's name, for messages, when ``c`` is a Connection.
    :param name: how messages name the archive (default: ``archive``), for
        one uploaded to a temporary path.
    :returns: what was done, for ``--json``: the ``archive``, the
        ``database`` dropped, the ``snapshot`` saved first (or ``None``), and
        the ``loaded`` data, ``restored`` storages and ``objects`` the load
        reports.
    """
    target = reset_target(c, project, force)
    on = f" on {host}" if host else ""
    confirm(f"Drop the {target.database}{on} and load {archive} into it?", yes)
    snapshot = None
    if needs_snapshot(target, safety, on):
        snapshot = safety_snapshot(c, project, safety.folder, host, raw=target.anonymizes)
    return load_replacing(
        c,
        project,
        archive,
        target,
        snapshot,
        force=force,
        safety=safety,
        load_options=load_options,
        host=host,
        name=name,
    )


def load_replacing(
    c: Context,
    project: Project,
    archive: str,
    target: ResetTarget,
    snapshot: str | None,
    *,
    force: bool,
    safety: SafetyNet,
    load_options: tuple[str, ...],
    host: str | None = None,
    name: str | None = None,
    answer: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """:func:`reset_and_load_archive` once the question was answered and the
    safety snapshot (if any) taken: ``diskette_load --reset``, the
    snapshot put back (or removed) after a failure, pruned after a success.

    :param answer: the ``--json`` answer of that load, run already (fed
        as it downloads, :class:`diskette.feed.LoadFeed`), with
        :func:`load_arguments`; raising :class:`CommandFailed` as
        :func:`run_json` does. Without it the load runs here and now.
    """
    on = f" on {host}" if host else ""
    try:
        if answer is not None:
            loaded = answer()
        else:
            arguments = load_arguments(archive, load_options, force=force)
            loaded = run_json(c, project, *arguments)
    except CommandFailed as exc:
        shown = name or archive
        # Only the command's own word that it dropped nothing is taken: a
        # load that crashed, or was killed, may have emptied the database.
        older = lacks_option(exc, "--reset")
        if older or exc.answer.get("dropped") is False:
            if snapshot is not None:  # of what is still there: no use
                drop_snapshot(c, project, snapshot, safety.folder)
            if older:
                raise Exit(f"the diskette{on} {NO_RESET}", code=1) from exc
            raise Exit(f"{shown} cannot be loaded: {exc.message}", code=1) from exc
        failure = f"loading {shown} failed: {exc.message}"
        put_back(c, project, failure, snapshot, target, force=force, on=on)
    print(
        f"Reset {target.database}{on}: {loaded.get('reset')}, then applied all migrations"
    )
    removed = " (archive removed)" if loaded.get("removed") is True else ""
    print(f"Loaded {name or archive}{on}: {loaded_summary(loaded)}{removed}")
    if snapshot is not None:
        # Here, the old snapshots go while the task ends; on a host, now.
        prune_backups(c, project, safety.folder, safety.keep, wait=host is not None)
    return {
        "archive": archive,
        "database": target.database,
        "snapshot": snapshot,
        **{key: loaded.get(key) for key in ("reset", "loaded", "restored", "objects")},
    }


def load_arguments(
    archive: str, load_options: tuple[str, ...], *, force: bool
) -> list[str]:
    """``diskette_load`` verifying, resetting and loading ``archive`` in one
    command, for :func:`load_replacing` (``--json`` is added by the runner)."""
    return [
        "diskette_load",
        archive,
        "--reset",
        "--noinput",
        *load_options,
        *flags(force=force),
    ]


#: What a host whose diskette cannot reset and load in one command is told.
NO_RESET = (
    "cannot reset and load in one command (diskette_load --reset): update it to this "
    "version; nothing was changed"
)


def drop_snapshot(c: Context, project: Project, snapshot: str, folder: str) -> None:
    """Remove a safety snapshot that turned out not to be needed (the load
    was refused before anything changed), its media folder, and the backup
    folder if that left it empty: nothing is left of the attempt."""
    remove_files(c, project, [snapshot, str(sidecar_of(Path(snapshot)))])
    c.run(
        project.shell(shlex.join(["rmdir", "--", folder])),
        hide=True,
        warn=True,
        in_stream=False,
    )


def lacks_option(failed: CommandFailed, option: str) -> bool:
    """Whether a command failed for not knowing ``option`` (an older diskette)."""
    return f"unrecognized arguments: {option}" in str(failed.message)


def put_back(
    c: Context,
    project: Project,
    failure: str,
    snapshot: str | None,
    target: ResetTarget,
    *,
    force: bool,
    on: str,
) -> NoReturn:
    """After a load that failed once the database was reset: load the safety
    snapshot back, and say so (or how to do it by hand).

    :raises Exit: always, with ``failure`` and what became of the data.
    """
    if snapshot is None:
        raise Exit(
            f"{failure}; the database is now empty (no safety snapshot was taken) and "
            "the media unchanged",
            code=1,
        )
    try:
        restore_snapshot(c, project, snapshot, force, target.requires_anonymized)
    except CommandFailed as failed:
        by_hand = project.shell(
            " && ".join(
                project.manage_line(*step)
                for step in restore_steps(snapshot, force, target.requires_anonymized)
            )
        )
        raise Exit(
            f"{failure}; putting the safety snapshot back failed too "
            f"({failed.message}): your data and media are in {snapshot}, "
            f"put them back{on} with: {by_hand}",
            code=1,
        ) from None
    raise Exit(
        f"{failure}; your data and media were put back from the safety snapshot {snapshot}",
        code=1,
    )


def reset_database(c: Context, project: Project, force: bool) -> dict[str, Any]:
    """Drop the database, create it again and migrate (``diskette_reset``).

    :returns: ``diskette_reset``'s JSON answer.
    """
    answer = run_json(c, project, "diskette_reset", "--noinput", *flags(force=force))
    print(
        f"Reset {answer.get('database')}: {answer.get('reset')}, then applied all migrations"
    )
    return answer


def loaded_summary(answer: dict[str, Any]) -> str:
    """What ``diskette_load --json`` says it did, in a few words.

    Read defensively: on a push, the answer comes from another host.
    """
    per_application = answer.get("objects")
    objects = sum(
        count
        for counts in (
            per_application.values() if isinstance(per_application, dict) else ()
        )
        if isinstance(counts, dict)
        for count in counts.values()
        if isinstance(count, int)
    )
    loaded, restored = answer.get("loaded"), answer.get("restored")
    files = len(loaded) if isinstance(loaded, list) else 0
    storages = ", ".join(map(str, restored)) if isinstance(restored, list) else ""
    return f"{objects:,} objects from {files} data files, storages restored: {storages or 'none'}"


@task(
    help={
        "destination": "Folder to write the archive into (default: DISKETTE_DUMP_PATH).",
        "filename": "Archive file name, with {features} and {date} fields.",
        "no_data": "Leave data out.",
        "no_storages": "Leave storages out.",
        "no_anonymize": NO_ANONYMIZE_HELP,
        "publish": "Upload the archive to the snapshot registry, then remove it here.",
        "json": JSON_HELP,
    }
)
def dump(
    c: Context,
    destination: str | None = None,
    filename: str | None = None,
    no_data: bool = False,
    no_storages: bool = False,
    no_anonymize: bool = False,
    publish: bool = False,
    json: bool = False,
) -> None:
    """Dump the project's data and media into an archive (diskette_dump)."""
    options = [*_option("--destination", destination), *_option("--filename", filename)]
    options += flags(
        no_data=no_data, no_storages=no_storages, no_anonymize=no_anonymize, publish=publish
    )
    with answering(json) as answer:
        try:
            dumped = dump_archive(c, Project.from_config(c), *options)
        except CommandFailed as exc:
            raise Exit(f"dump failed: {exc.message}", code=1) from exc
        snapshot = dumped.answer.get("snapshot")
        if isinstance(snapshot, dict):
            print(
                f"Published snapshot {snapshot.get('id')} ({human_size(dumped.size)}); "
                f"load it with: inv pull-snapshot --snapshot {snapshot.get('id')}"
            )
        else:
            print(f"Dump archive was created at: {dumped.path} ({human_size(dumped.size)})")
        if dumped.sha256:
            print(f"Archive checksum (sha256): {dumped.sha256}")
        answer.update(dumped.answer)


@task(
    help={
        "archive": "Archive path or http(s):// URL.",
        "keep": "Keep the archive once loaded.",
        "no_data": "Restore storages only.",
        "no_storages": "Load data only.",
        "loaddata": LOADDATA_HELP,
        "fast": FAST_HELP,
        "overwrite": "Load into a database that already holds data (rows overwritten by "
        "primary key, others kept).",
        "force": "Load even though the project's DEBUG is False.",
        "json": JSON_HELP,
    }
)
def load(
    c: Context,
    archive: str,
    keep: bool = False,
    no_data: bool = False,
    no_storages: bool = False,
    loaddata: bool = False,
    fast: bool = False,
    overwrite: bool = False,
    force: bool = False,
    json: bool = False,
) -> None:
    """Load an archive into the project's (freshly migrated) database (diskette_load)."""
    options = flags(
        keep=keep,
        no_data=no_data,
        no_storages=no_storages,
        loaddata=loaddata,
        fast=fast,
        overwrite=overwrite,
        force=force,
    )
    if not json:
        manage(
            c, Project.from_config(c), "diskette_load", archive, *options, *progress_flag()
        )
        return
    with answering(json) as answer:
        answer.update(
            run_json(c, Project.from_config(c), "diskette_load", archive, *options)
        )


@task(help={"format": "json (default) or python."})
def apps(c: Context, format: str = "json") -> None:
    """Print starter definitions for the project's installed apps (diskette_apps)."""
    manage(c, Project.from_config(c), "diskette_apps", "--format", format)


@task(
    help={
        "yes": "Do not ask for confirmation (for scripts).",
        "force": "Reset even though the project's DEBUG is False.",
        "json": JSON_HELP,
    }
)
def reset_db(
    c: Context, yes: bool = False, force: bool = False, json: bool = False
) -> None:
    """Drop the project's database, create it empty and migrate (diskette_reset)."""
    with answering(json) as answer:
        project = Project.from_config(c)
        target = reset_target(c, project, force)
        confirm(f"Drop and recreate the {target.database}?", yes)
        answer.update(reset_database(c, project, force))


@task(
    help={
        "archive": "Archive path or http(s):// URL.",
        "yes": "Do not ask for confirmation (for scripts).",
        "force": "Reset even though the project's DEBUG is False.",
        "no_backup": "Do not save a safety snapshot of the current data and media first.",
        "keep": "Keep the archive once loaded.",
        "loaddata": LOADDATA_HELP,
        "fast": FAST_HELP,
        "dry_run": DRY_RUN_HELP,
        "json": JSON_HELP,
    }
)
def reset_and_load(
    c: Context,
    archive: str,
    yes: bool = False,
    force: bool = False,
    no_backup: bool = False,
    keep: bool = False,
    loaddata: bool = False,
    fast: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Snapshot the current data, then verify the archive, reset the database
    and load the archive (in one command: a broken archive drops nothing)."""
    with answering(json) as answer:
        if dry_run:
            answer.update(planned(c, Project.from_config(c), archive))
            return
        done = reset_and_load_archive(
            c,
            Project.from_config(c),
            archive,
            yes=yes,
            force=force,
            safety=SafetyNet.from_config(c, no_backup=no_backup),
            load_options=tuple(flags(keep=keep, loaddata=loaddata, fast=fast)),
        )
        answer.update(done)


@task(
    help={
        "snapshot": "The snapshot to load: latest (default), or its id (a unique start "
        "of it will do; `inv snapshots` lists them).",
        "url": "Load from a site's HTTP endpoints instead of the registry: a URL such "
        "as https://example.com/diskette/snapshots/latest/ (the API key comes from "
        "DISKETTE_API_KEY).",
        "yes": "Do not ask for confirmation (for scripts).",
        "force": "Reset even though the project's DEBUG is False.",
        "no_backup": "Do not save a safety snapshot of the current data and media first.",
        "keep": "Keep the downloaded archive once loaded.",
        "loaddata": LOADDATA_HELP,
        "dry_run": DRY_RUN_HELP,
        "json": JSON_HELP,
    }
)
def pull_snapshot(
    c: Context,
    snapshot: str = "latest",
    url: str | None = None,
    yes: bool = False,
    force: bool = False,
    no_backup: bool = False,
    keep: bool = False,
    loaddata: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Load a snapshot of the team's registry, or of a site's HTTP endpoints
    (--url), here without SSH: snapshot the current data, then download and
    verify it, reset the database, load it."""
    with answering(json) as answer:
        if url is not None and snapshot != "latest":
            raise Exit(
                "give --snapshot or --url, not both: the URL names the snapshot", code=1
            )
        source = url if url is not None else f"{REGISTRY_SCHEME}{snapshot}"
        if dry_run:
            answer.update(planned(c, Project.from_config(c), source))
            return
        done = reset_and_load_archive(
            c,
            Project.from_config(c),
            source,
            yes=yes,
            force=force,
            safety=SafetyNet.from_config(c, no_backup=no_backup),
            load_options=tuple(flags(keep=keep, loaddata=loaddata)),
        )
        answer.update(done)


@task(help={"json": JSON_HELP})
def snapshots(c: Context, json: bool = False) -> None:
    """List the snapshots of the team's registry, newest first (diskette_snapshots)."""
    if not json:
        manage(c, Project.from_config(c), "diskette_snapshots")
        return
    with answering(json) as answer:
        answer.update(run_json(c, Project.from_config(c), "diskette_snapshots"))


def _option(name: str, value: str | None) -> list[str]:
    return [name, value] if value is not None else []


def flags(**flags: bool) -> list[str]:
    return [f"--{name.replace('_', '-')}" for name, on in flags.items() if on]


#: The configuration these tasks read, under ``diskette``.
DEFAULTS: dict[str, Any] = {
    "manage": "manage.py",
    "python": None,
    "settings": None,
    "backup_dir": BACKUP_DIR,
    "backup_keep": BACKUP_KEEP,
}

ns = Collection(dump, load, apps, reset_db, reset_and_load, pull_snapshot, snapshots)
ns.configure({"diskette": DEFAULTS, "runners": {"local": LocalOutput}})
