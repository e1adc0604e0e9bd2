"""Copies of the sandbox project, driven through ``manage.py`` and ``inv``.

Tests that need a project of their own (cross-version, Invoke tasks, resets)
copy the sandbox into a temporary folder and run real commands in it, in
child processes, with the environment a user's shell would have.

Migrating and seeding such a copy takes a few child processes and seconds;
:class:`Templates` does it once a session for each kind of project (how many
books, which random seed) and hands each test a copy: the folder, with its
SQLite file and media, and on a database server a database cloned from the
template's (:func:`tests.databases.clone_database`: ``CREATE DATABASE ...
TEMPLATE`` on PostgreSQL, table by table on MariaDB). The copies are the
same as freshly seeded ones, down to the fingerprint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.databases import (
    ON_SERVER,
    clone_database,
    new_database_name,
    server_settings_body,
)

SANDBOX = Path(__file__).resolve().parents[1] / "sandbox"
#: Settings lines giving a copy a snapshot registry in its ``var/registry``
#: folder: a site that serves its snapshots (tests, benchmarks).
FOLDER_REGISTRY_SETTINGS = """
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "diskette": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_PATH / "registry")},
    },
}
"""
BIN = Path(sys.executable).parent


@dataclass
class SandboxCopy:
    """A copy of the sandbox at ``root``, run with ``python`` and ``settings``."""

    root: Path
    python: Path = Path(sys.executable)
    settings: str = "project.settings"
    env: dict[str, str] = field(default_factory=dict)
    #: Settings lines selecting the copy's own database ("" for the SQLite file).
    database: str = ""

    @classmethod
    def create(cls, root: Path, **kwargs) -> SandboxCopy:
        shutil.copytree(SANDBOX, root, ignore=shutil.ignore_patterns("var", "__pycache__"))
        (root / "var" / "media").mkdir(parents=True)
        return cls.at(root, **kwargs)

    @classmethod
    def at(cls, root: Path, **kwargs) -> SandboxCopy:
        """The project already at ``root``, run with a user's environment."""
        copy = cls(root, **kwargs)
        copy.env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        copy.env["DJANGO_SETTINGS_MODULE"] = copy.settings
        return copy

    def run(
        self,
        *command: str,
        check: bool = True,
        cwd: Path | None = None,
        timeout: float | None = None,
    ):
        """Run ``command`` in the copy; ``timeout`` (seconds) for one that
        could hang on a lock."""
        result = subprocess.run(
            command,
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        if check and result.returncode:
            raise AssertionError(
                f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def manage(self, *args: str, check: bool = True, timeout: float | None = None):
        return self.run(str(self.python), "manage.py", *args, check=check, timeout=timeout)

    def manage_measured(self, *args: str) -> tuple[subprocess.CompletedProcess, int]:
        """Run ``manage.py`` with ``args``; return its result and peak memory in bytes.

        The peak is the child's own ``VmHWM``, which starts again at exec:
        ``ru_maxrss`` (``wait4``, ``RUSAGE_CHILDREN``) would also count the
        memory of the pytest process it was forked from.
        """
        result = self.run(str(self.python), "-c", MEASURED, *args, check=False)
        error, _, peak = result.stderr.rstrip("\n").rpartition("\n")
        result.stderr = error + "\n" if error else ""
        return result, int(peak) * 1024

    def inv(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ):
        """Run the real ``inv`` as a user's shell would: no settings module in
        the environment, so only the project's Invoke configuration decides."""
        shell = {k: v for k, v in self.env.items() if k != "DJANGO_SETTINGS_MODULE"}
        result = subprocess.run(
            [str(BIN / "inv"), *args],
            cwd=cwd or self.root,
            env={**shell, **(env or {})},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode:
            raise AssertionError(
                f"inv {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def use_settings(self, settings: str) -> None:
        """Run ``manage.py`` with ``settings`` from now on, and tell Invoke too."""
        self.settings = self.env["DJANGO_SETTINGS_MODULE"] = settings
        (self.root / "invoke.yaml").write_text(f"diskette:\n  settings: {settings}\n")

    def fingerprint(self) -> str:
        return self.manage("demo_fingerprint").stdout.split()[0]

    def as_fresh_clone(self, *tools: str) -> None:
        """Give the copy ``scripts/onboard.sh`` and the ``.venv/bin`` it would
        make: wrappers of this suite's ``python`` and ``tools``."""
        (self.root / "scripts").mkdir()
        script = Path(__file__).resolve().parents[1] / "scripts" / "onboard.sh"
        (self.root / "scripts" / "onboard.sh").write_bytes(script.read_bytes())
        (self.root / "scripts" / "onboard.sh").chmod(0o755)
        for tool in ("python", *tools):
            wrapper = self.root / ".venv" / "bin" / tool
            wrapper.parent.mkdir(parents=True, exist_ok=True)
            wrapper.write_text(f'#!/bin/sh\nexec {BIN / tool} "$@"\n')
            wrapper.chmod(0o755)

    def write_settings(self, name: str, body: str) -> str:
        """Add ``project/<name>.py`` starting from the sandbox settings."""
        (self.root / "project" / f"{name}.py").write_text(
            "from project.settings import *  # noqa: F403\n" + body
        )
        return f"project.{name}"


class Templates:
    """Sandbox projects migrated (and seeded) once a session, copied per test.

    A template is made the way tests made each project before: a copy of the
    sandbox, ``diskette_reset --noinput`` (creates the database, migrates)
    and, unless ``books`` is ``None``, ``demo_seed``, all in child processes.
    Handing out a copy is a folder copy (the SQLite file lives in ``var/``)
    and, on a database server, a clone of the template's database, which no
    process holds open once its ``manage.py`` has exited.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        #: Template project and the name of its server database, by kind.
        self.made: dict[tuple[int | None, int, bool, bool], tuple[SandboxCopy, str]] = {}

    def copy(
        self,
        root: Path,
        *,
        books: int | None = None,
        seed: int = 7,
        server: bool | None = None,
        shop: bool = True,
    ) -> SandboxCopy:
        """A project at ``root`` with ``books`` demo books made with ``seed``
        (``None``: migrated, no data), and the shop's objects unless ``shop``
        is false, on the suite's database server if ``server`` (default: when
        the suite runs on one; ``False``: on the copy's own SQLite file
        whatever the suite runs on)."""
        if server is None:
            server = ON_SERVER
        key = (books, seed, server, shop)
        template, database = self.made.get(key) or self._make(key)
        shutil.copytree(
            template.root, root, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
        copy = SandboxCopy.at(root)
        if server:
            name = new_database_name("copy")
            clone_database(name, template=database)
            copy.database = server_settings_body(name)
            copy.use_settings(copy.write_settings("settings_db", copy.database))
        return copy

    def _make(self, key: tuple[int | None, int, bool, bool]) -> tuple[SandboxCopy, str]:
        books, seed, server, shop = key
        name = new_database_name("tpl")
        template = SandboxCopy.create(self.folder / name)
        if server:
            template.database = server_settings_body(name)
            template.use_settings(template.write_settings("settings_db", template.database))
        template.manage("diskette_reset", "--noinput")
        if books is not None:
            seeding = ["--books", str(books), "--seed", str(seed)]
            template.manage("demo_seed", *seeding, *([] if shop else ["--no-shop"]))
        self.made[key] = (template, name)
        return self.made[key]


#: Runs ``manage.py`` with the arguments, then prints VmHWM (KiB) last on stderr.
MEASURED = (
    "import os, sys\n"
    "sys.path.insert(0, os.getcwd())\n"
    "from django.core.management import execute_from_command_line\n"
    "try:\n"
    "    execute_from_command_line(['manage.py', *sys.argv[1:]])\n"
    "finally:\n"
    "    with open('/proc/self/status') as status:\n"
    "        peak = next(l for l in status if l.startswith('VmHWM:'))\n"
    "    print(peak.split()[1], file=sys.stderr)\n"
)


def running_in(project: Path, command: str) -> list[int]:
    """The processes running ``command`` (a management command's name) in
    ``project``, from Linux's ``/proc``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                os.readlink(entry / "cwd") == str(project)
                and command.encode() in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return found


def wait_until_none_run(project: Path, command: str, seconds: float = 60) -> None:
    """Wait for every ``command`` running in ``project`` to end; fail if one
    is still running after ``seconds`` (left behind, say)."""
    deadline = time.monotonic() + seconds
    while running_in(project, command) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_in(project, command) == []
