"""The host of a Fabric task: its project checked, its temporary folder, its
protected names.

:func:`remote_project` checks in one round trip that the host has the
project's ``manage.py``, its interpreter and diskette, before any work
there; the tasks of :mod:`diskette.remote` take what it answers.
"""

from __future__ import annotations

import re
import shlex
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fabric import Connection
from invoke import Exit

from .ssh import connect
from .tasks import SETTINGS_CHECK, Project, config_text, last_error
from .transfer import RECEIVE_SCRIPT, upload

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
