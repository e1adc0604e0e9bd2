"""Copies of the sandbox project, driven through ``manage.py`` and ``inv``.

Tests that need a project of their own (cross-version, Invoke tasks, resets)
copy the sandbox into a temporary folder and run real commands in it, in
child processes, with the environment a user's shell would have.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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

    @classmethod
    def create(cls, root: Path, **kwargs) -> SandboxCopy:
        shutil.copytree(SANDBOX, root, ignore=shutil.ignore_patterns("var", "__pycache__"))
        (root / "var" / "media").mkdir(parents=True)
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


def postgres_settings_body() -> str:
    """Settings lines pointing the copy at a new database on the test cluster."""
    from tests.postgres import postgres_settings

    database = {**postgres_settings(), "NAME": f"copy_{uuid.uuid4().hex[:10]}"}
    return f"DATABASES = {{'default': {database!r}}}\n"


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
