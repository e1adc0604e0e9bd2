"""The built distribution works without the checkout.

Everything else in the suite imports diskette from the repository (the
editable install), so a module left out of the wheel, a missing ``py.typed``
or a hint pointing at ``docs/`` would pass there and break for a user. Here
``python -m build`` makes the sdist and, from it, the wheel; the wheel goes
into a fresh virtualenv, and the sandbox's round trip (``inv demo``'s steps)
runs with that virtualenv's python in a copy of the sandbox outside the
checkout.

The build is offline (``--no-isolation``: the setuptools and ``build`` of the
``dev`` extra). The fresh virtualenv has no pip and borrows Django, Invoke and
Fabric from this one through a plain path line in a ``.pth`` file; such a
line does not run the editable-install finder that lives in this
virtualenv's ``site-packages``, which the test checks before it installs the
wheel.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

from diskette import DOCS_URL
from tests.databases import ON_SERVER
from tests.projects import SandboxCopy

pytestmark = [
    pytest.mark.subprocess,
    # The package is the same whatever database the suite runs on: build it once.
    pytest.mark.skipif(
        ON_SERVER,
        reason="packaging is checked in the SQLite run",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
DIST = "django-diskette"
EXTRAS = {
    "fast",
    "tasks",
    "remote",
    "postgres",
    "mysql",
    "anonymize",
    "s3",
    "encrypt",
    "test",
    "dev",
}
#: Files a user's install needs that are not plain modules.
REQUIRED = [
    "diskette/py.typed",
    "diskette/migrations/0001_load.py",
    "diskette/migrations/0002_apikey_capture_snapshot.py",
    "diskette/templates/admin/diskette/snapshot/change_list.html",
    "diskette/templates/admin/diskette/snapshot/delete_confirmation.html",
    "diskette/templates/admin/diskette/apikey/created.html",
]
#: Top-level folders of the repository that are not part of the package.
NOT_SHIPPED = ("tests/", "sandbox/", "benchmarks/", "scripts/", "docs/")
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass
class Built:
    wheel: Path
    sdist: Path


def run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, **kwargs
    )
    if result.returncode:
        raise AssertionError(
            f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """The sdist, and the wheel ``build`` makes from it, of a copy of the checkout.

    A copy, so the build's ``build/`` and ``*.egg-info`` never land in the
    checkout other work is running in.
    """
    if importlib.util.find_spec("build") is None:
        pytest.fail("python -m build is missing: pip install -e '.[dev]'")
    setuptools = importlib.metadata.version("setuptools")
    if int(setuptools.split(".")[0]) < 77:
        pytest.fail(f"setuptools {setuptools} is older than 77: pip install -e '.[dev]'")
    source = tmp_path_factory.mktemp("source") / "django-diskette"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".*_cache", "__pycache__", "*.egg-info", "build", "dist", "var"
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Built(wheel, sdist)


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def test_the_wheel_says_what_it_is(built):
    metadata = wheel_metadata(built.wheel)

    assert metadata["Name"] == DIST
    assert set(metadata.get_all("Provides-Extra")) == EXTRAS
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(
        u.startswith("https://github.com/diskette-dev/django-diskette")
        for u in urls.values()
    )
    requires = metadata.get_all("Requires-Dist")
    assert any(r.startswith("invoke") and 'extra == "tasks"' in r for r in requires)
    assert any(r.startswith("fabric") and 'extra == "remote"' in r for r in requires)
    assert any(r.startswith(f"{DIST}[") and 'extra == "test"' in r for r in requires)
    assert "Typing :: Typed" in metadata.get_all("Classifier")


def test_the_wheel_and_sdist_hold_the_package_and_nothing_else(built):
    with zipfile.ZipFile(built.wheel) as archive:
        wheel_files = archive.namelist()
    with tarfile.open(built.sdist) as archive:
        prefix = archive.getnames()[0].split("/")[0] + "/"
        sdist_files = [n.removeprefix(prefix) for n in archive.getnames()]
    licenses = [p.name for p in ROOT.glob("LICEN[CS]E*")]

    for files in (wheel_files, sdist_files):
        assert set(REQUIRED) <= set(files)
        assert "diskette/management/commands/diskette_dump.py" in files
        assert not [f for f in files if f.startswith(NOT_SHIPPED)]
    assert {"README.md", "pyproject.toml", "PKG-INFO", *licenses} <= set(sdist_files)


def wheel_strings(wheel: Path) -> Iterator[tuple[str, str, bool]]:
    """``(where, text, is_docstring)`` for every string literal the wheel's modules hold."""
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.endswith(".py"):
                continue
            tree = ast.parse(archive.read(name), name)
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, DOCUMENTED)
                and node.body
                and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    yield f"{name}:{node.lineno}", node.value, id(node) in docstrings


def test_hints_point_at_the_documentation_url_not_at_repository_files(built):
    """An installed copy has no ``docs/`` folder: messages and help name the URL."""
    relative = [
        where
        for where, text, is_docstring in wheel_strings(built.wheel)
        if "docs/" in text.replace(DOCS_URL, "") and not is_docstring
    ]
    assert not relative, f"strings naming docs/ instead of diskette.DOCS_URL: {relative}"


def test_install_hints_name_this_distribution(built):
    """``pip install diskette[...]`` installs another project (emencia's, on PyPI)."""
    wrong = [
        where
        for where, text, _ in wheel_strings(built.wheel)
        if re.search(r"(?<!django-)diskette\[", text)
    ]
    assert not wrong, f"install hints naming diskette[...], not {DIST}[...]: {wrong}"


def test_the_installed_wheel_runs_the_demo_round_trip_outside_the_checkout(built, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", PURELIB).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    demo = SandboxCopy.create(tmp_path / "site", python=python)
    for leak in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        demo.env.pop(leak, None)
    demo.env["PYTHONNOUSERSITE"] = "1"

    # Before the wheel: the borrowed site-packages does not bring the checkout.
    missing = demo.run(str(python), "-c", "import diskette", check=False)
    assert "No module named 'diskette'" in missing.stderr, missing.stderr
    run(
        sys.executable, "-m", "pip", "--python", python, "install",
        "--no-deps", "--no-index", "--quiet", built.wheel,
    )  # fmt: skip
    # The last line: Django 5.2 first says what the shell imported by itself.
    where = demo.manage("shell", "-c", WHERE).stdout.splitlines()[-1].split()
    assert len(where) == 2, where
    assert all(Path(p).resolve().is_relative_to(venv.resolve()) for p in where), where

    demo.manage("migrate", "--verbosity", "0")
    demo.manage("demo_seed")
    before = demo.manage("demo_fingerprint").stdout.strip()
    demo.manage("diskette_dump")
    archive = demo.root / "var" / "diskette_data_storages.tar.gz"
    kept = archive.rename(tmp_path / archive.name)
    shutil.rmtree(demo.root / "var")
    (demo.root / "var" / "media").mkdir(parents=True)
    demo.manage("migrate", "--verbosity", "0")
    demo.manage("diskette_load", str(kept))

    assert demo.manage("demo_fingerprint").stdout.strip() == before
    assert os.listdir(demo.root / "var" / "media"), "the load restored no media"


PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
#: The package Python imports and the app Django runs, in the fresh virtualenv.
WHERE = (
    "import diskette; from django.apps import apps; "
    "print(diskette.__file__, apps.get_app_config('diskette').path)"
)
