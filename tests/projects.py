"""Copies of the sandbox project, driven through ``manage.py`` and ``inv``.

Tests that need a project of their own (cross-version, Invoke tasks, resets)
copy the sandbox into a temporary folder and run real commands in it, in
child processes, with the environment a user's shell would have.

Migrating and seeding such a copy takes a few child processes and seconds;
:class:`Templates` does it once a session for each kind of project (how many
books, which random seed) and hands each test a copy: the folder, with its
SQLite file and media, and on PostgreSQL a database created from the
template's (``CREATE DATABASE ... TEMPLATE``). The copies are the same as
freshly seeded ones, down to the fingerprint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX = Path(__file__).resolve().parents[1] / "sandbox"
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

    def run(self, *command: str, check: bool = True, cwd: Path | None = None):
        result = subprocess.run(
            command,
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode:
            raise AssertionError(
                f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def manage(self, *args: str, check: bool = True):
        return self.run(str(self.python), "manage.py", *args, check=check)

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

    def write_settings(self, name: str, body: str) -> str:
        """Add ``project/<name>.py`` starting from the sandbox settings."""
        (self.root / "project" / f"{name}.py").write_text(
            "from project.settings import *  # noqa: F403\n" + body
        )
        return f"project.{name}"


def postgres_settings_body(name: str | None = None) -> str:
    """Settings lines pointing the copy at database ``name`` (default: a new
    name) on the test cluster."""
    from tests.postgres import postgres_settings

    database = {**postgres_settings(), "NAME": name or f"copy_{uuid.uuid4().hex[:10]}"}
    return f"DATABASES = {{'default': {database!r}}}\n"


class Templates:
    """Sandbox projects migrated (and seeded) once a session, copied per test.

    A template is made the way tests made each project before: a copy of the
    sandbox, ``diskette_reset --noinput`` (creates the database, migrates)
    and, unless ``books`` is ``None``, ``demo_seed``, all in child processes.
    Handing out a copy is a folder copy (the SQLite file lives in ``var/``)
    and, on PostgreSQL, ``CREATE DATABASE ... TEMPLATE`` of the template's
    database, which no process holds open once its ``manage.py`` has exited.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        #: Template project and the name of its PostgreSQL database, by kind.
        self.made: dict[tuple[int | None, int, bool], tuple[SandboxCopy, str]] = {}

    def copy(
        self,
        root: Path,
        *,
        books: int | None = None,
        seed: int = 7,
        postgres: bool | None = None,
    ) -> SandboxCopy:
        """A project at ``root`` with ``books`` demo books made with ``seed``
        (``None``: migrated, no data), on PostgreSQL if ``postgres`` (default:
        the database the suite runs on)."""
        if postgres is None:
            postgres = os.environ.get("DISKETTE_TEST_DB") == "postgres"
        key = (books, seed, postgres)
        template, database = self.made.get(key) or self._make(key)
        shutil.copytree(
            template.root, root, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
        copy = SandboxCopy.at(root)
        if postgres:
            name = f"copy_{uuid.uuid4().hex[:10]}"
            _create_database(name, template=database)
            copy.database = postgres_settings_body(name)
            copy.use_settings(copy.write_settings("settings_db", copy.database))
        return copy

    def _make(self, key: tuple[int | None, int, bool]) -> tuple[SandboxCopy, str]:
        books, seed, postgres = key
        name = f"tpl_{uuid.uuid4().hex[:10]}"
        template = SandboxCopy.create(self.folder / name)
        if postgres:
            template.database = postgres_settings_body(name)
            template.use_settings(template.write_settings("settings_db", template.database))
        template.manage("diskette_reset", "--noinput")
        if books is not None:
            template.manage("demo_seed", "--books", str(books), "--seed", str(seed))
        self.made[key] = (template, name)
        return self.made[key]


def _create_database(name: str, *, template: str) -> None:
    """``CREATE DATABASE name TEMPLATE template`` on the test cluster.

    A backend may outlive its client by a few milliseconds: while the
    template is still "being accessed by other users", try again.
    """
    import psycopg
    from psycopg import errors

    from tests.postgres import postgres_settings

    admin = postgres_settings()
    deadline = time.monotonic() + 10
    with psycopg.connect(
        host=admin["HOST"],
        port=admin["PORT"],
        user=admin["USER"],
        password=admin["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as connection:
        while True:
            try:
                connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return
            except errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


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
