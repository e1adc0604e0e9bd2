"""Shared fixtures: a project folder as working directory, demo data, helpers."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.projects import Templates
from tests.s3server import S3Server, moto_installed, start_s3


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Media indexes (:mod:`diskette.mediaindex`) go to the user's cache
    folder: this session's own, for it and the commands it starts, never
    the ``~/.cache`` of whoever runs the suite."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(autouse=True)
def _forget_content_types() -> Iterator[None]:
    """Empty Django's content type cache after each test.

    A test that flushes the database inside its transaction caches content
    types with new ids, which its rollback takes back. PostgreSQL and SQLite
    check foreign keys at commit, which a test never reaches; MySQL checks
    them at once, so the next test's first row naming a content type (a
    polymorphic model's) would fail.
    """
    yield
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings) -> Path:
    """A project root as the current directory, ``var/media`` as its storage."""
    root = tmp_path / "project"
    media = root / "var" / "media"
    media.mkdir(parents=True)
    monkeypatch.chdir(root)
    # A developer's laptop: pytest-django runs tests with DEBUG off, which
    # diskette_load refuses (the production guard, tested on its own).
    settings.DEBUG = True
    settings.BASE_DIR = root  # as startproject writes it: storages are archived below it
    settings.MEDIA_ROOT = media
    settings.DISKETTE_STORAGES = [media]
    settings.DISKETTE_DUMP_PATH = root / "var"
    return root


@pytest.fixture
def demo(project: Path, db) -> Path:
    """The project with the sandbox's demo data and media."""
    call_command("demo_seed", books=12, users=4, stdout=io.StringIO())
    return project


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    """Copies of the sandbox, migrated and seeded once a session (``tests/projects.py``).

    ``seeded.copy(root, books=12, seed=1)`` is a project at ``root`` as
    ``diskette_reset`` and ``demo_seed`` in a fresh copy would leave it.
    """
    return Templates(tmp_path_factory.mktemp("templates"))


@dataclass
class Output:
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def run_command(name: str, *args: str, **options) -> Output:
    """Run a management command in process, capturing what it prints."""
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=stdout, stderr=stderr, **options)
    return Output(stdout.getvalue(), stderr.getvalue())


def archive_members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {member.name: member for member in tar.getmembers()}


def archive_file(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def tree_state(root: Path) -> dict[str, object]:
    """Every entry below ``root``: file bytes, link targets, folders, modes."""
    state: dict[str, object] = {}
    if not root.exists():
        return state
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif path.is_dir():
                state[key] = ("dir", path.stat().st_mode & 0o777)
            else:
                state[key] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return state


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"48m"``) mounted on ``folder``: a real small disk.

    Skips the test where mounting is not permitted (not root, no privileges
    in a container).
    """
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3-compatible server on loopback for the session (``tests/s3server.py``)."""
    if not moto_installed():
        pytest.skip("needs moto's S3 server (the test extra installs moto[server])")
    server = start_s3(tmp_path_factory.mktemp("s3") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket for one test."""
    name = f"t{uuid.uuid4().hex[:20]}"
    s3.create_bucket(name)
    return name


def use_folder_registry(settings, folder: Path) -> Path:
    """Make ``folder`` the snapshot registry (``STORAGES["diskette"]``, a
    ``FileSystemStorage``): the simplest registry, for the endpoints and the
    admin, which read it as they read S3's; its path."""
    settings.STORAGES = {
        **settings.STORAGES,
        "diskette": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    return folder
