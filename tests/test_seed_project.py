"""The user guide's basic sample, for real: a project laid out and configured
exactly as it says, driven through ``manage.py`` in child processes."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diskette.archive import read_manifest

pytestmark = pytest.mark.subprocess

#: The guide's settings, verbatim.
SEED_SETTINGS = """
from pathlib import Path

BASE_DIR = Path(__file__).parents[1]
VAR_PATH = BASE_DIR / "var"
MEDIA_ROOT = VAR_PATH / "media"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.sites",
    "diskette",
]
DISKETTE_APPS = [
    [
        "django.contrib.auth", {
            "comments": "django.contrib.auth: user and groups, no perms",
            "natural_foreign": True,
            "models": ["auth.Group","auth.User"]
        }
    ],
    [
        "django.contrib.sites", {
            "comments": "django.contrib.sites",
            "natural_foreign": True,
            "models": "sites"
        }
    ]
]

DISKETTE_STORAGES = [MEDIA_ROOT]
DISKETTE_STORAGES_EXCLUDES = [
    "cache/*",
    "pil/*",
    "public/thumbnails/*",
]
"""

#: What any Django project has besides; the guide leaves it out.
PROJECT_BOILERPLATE = """
SECRET_KEY = "test"
DEBUG = True  # as startproject writes it: the guide's project is a developer's
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_PATH / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# The admin wants templates, messages and middleware for its pages; commands don't.
SILENCED_SYSTEM_CHECKS = ["admin.E403", "admin.E406", "admin.E408", "admin.E409", "admin.E410"]
"""

MANAGE_PY = """import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""

#: ``diskette_apps`` as the guide prints it (its contenttypes comment was in French).
SEED_APPS_OUTPUT = [
    [
        "django.contrib.admin",
        {
            "comments": "Administration",
            "natural_foreign": True,
            "models": ["admin.LogEntry"],
        },
    ],
    [
        "django.contrib.auth",
        {
            "comments": "Authentication and Authorization",
            "natural_foreign": True,
            "models": [
                "auth.Permission",
                "auth.Group_permissions",
                "auth.Group",
                "auth.User_groups",
                "auth.User_user_permissions",
                "auth.User",
            ],
        },
    ],
    [
        "django.contrib.contenttypes",
        {
            "comments": "Content Types",
            "natural_foreign": True,
            "models": ["contenttypes.ContentType"],
        },
    ],
    [
        "django.contrib.sessions",
        {"comments": "Sessions", "natural_foreign": True, "models": ["sessions.Session"]},
    ],
    [
        "django.contrib.sites",
        {"comments": "Sites", "natural_foreign": True, "models": ["sites.Site"]},
    ],
]


def manage(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # As a user's shell runs it: without the test run's own settings module.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    if check and result.returncode:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def myproject(tmp_path_factory) -> Path:
    """The guide's project with users and media, migrated."""
    root = tmp_path_factory.mktemp("home") / "myproject"
    (root / "project").mkdir(parents=True)
    (root / "project" / "__init__.py").write_text("")
    (root / "project" / "settings.py").write_text(SEED_SETTINGS + PROJECT_BOILERPLATE)
    (root / "manage.py").write_text(MANAGE_PY)
    media = root / "var" / "media"
    for name in ("uploads/avatar.png", "cache/c.png", "public/thumbnails/t.png", "doc.txt"):
        (media / name).parent.mkdir(parents=True, exist_ok=True)
        (media / name).write_bytes(name.encode() * 100)
    manage(root, "migrate", "-v0")
    manage(
        root,
        "shell",
        "-c",
        (
            "from django.contrib.auth.models import Group, User\n"
            "staff = Group.objects.create(name='staff')\n"
            "for name in ('ada', 'grace', 'linus'):\n"
            "    User.objects.create_user(name, f'{name}@example.com', 'pw').groups.add(staff)\n"
        ),
    )
    return root


def test_dump_prints_what_the_guide_shows(myproject):
    result = manage(myproject, "diskette_dump")
    lines = result.stdout.splitlines()
    archive = myproject / "diskette_data_storages.tar.gz"
    assert lines[:5] == [
        "=== Starting dump ===",
        "Dumping data for application 'django.contrib.auth'",
        "Dumping data for application 'django.contrib.sites'",
        "Appending data to the archive",
        "Appending storages to the archive",
    ]
    assert re.fullmatch(
        rf"Dump archive was created at: {re.escape(str(archive))} \(\d+(\.\d)? K?i?B\)",
        lines[5],
    )
    assert re.fullmatch(r"Archive checksum \(sha256\): [0-9a-f]{64}", lines[6])
    manifest = read_manifest(archive)
    assert manifest["datas"] == [
        "data/djangocontribauth.jsonl",
        "data/djangocontribsites.jsonl",
    ]
    assert manifest["storages"] == ["var/media"]
    files = {n for n, e in manifest["members"].items() if "sha256" in e}
    assert files == {
        "data/djangocontribauth.jsonl",
        "data/djangocontribsites.jsonl",
        "var/media/uploads/avatar.png",
        "var/media/doc.txt",
    }
    objects = {a["name"]: a["objects"] for a in manifest["applications"]}
    assert objects["django.contrib.auth"] == {"auth.group": 1, "auth.user": 3}


def test_no_archive_prints_the_guide_commands_and_they_run(myproject):
    result = manage(myproject, "diskette_dump", "--no-archive")
    data = myproject / "data"
    assert result.stdout.splitlines() == [
        "# django.contrib.auth",
        f"dumpdata auth.Group auth.User --natural-foreign --output={data}/djangocontribauth.json",
        "# django.contrib.sites",
        f"dumpdata sites.Site --natural-foreign --output={data}/djangocontribsites.json",
    ]
    commands = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    for line in commands:
        manage(myproject, *shlex.split(line))
    users = json.loads((data / "djangocontribauth.json").read_text())
    assert sorted(o["fields"]["username"] for o in users if o["model"] == "auth.user") == [
        "ada",
        "grace",
        "linus",
    ]
    sites = json.loads((data / "djangocontribsites.json").read_text())
    assert sites[0]["fields"]["domain"] == "example.com"


def test_apps_prints_the_guide_definitions(myproject):
    result = manage(myproject, "diskette_apps")
    assert json.loads(result.stdout) == SEED_APPS_OUTPUT


def test_check_passes_and_names_a_bad_definition(myproject):
    assert "no issues" in manage(myproject, "check").stdout
    settings = myproject / "project" / "settings.py"
    original = settings.read_text()
    try:
        settings.write_text(original.replace('"models": "sites"', '"models": "site"'))
        check = manage(myproject, "check", check=False)
        dump = manage(myproject, "diskette_dump", check=False)
    finally:
        settings.write_text(original)
    message = "DISKETTE_APPS[1] 'django.contrib.sites': models: unknown application label 'site' in 'site'"
    assert check.returncode == 1
    assert f"(diskette.E002) {message}" in check.stderr
    assert dump.returncode == 1
    assert dump.stderr == f"CommandError: {message}\n"


def test_loading_works_as_the_guide_says(myproject):
    """Dump, start again from an empty migrated database, load, all back."""
    manage(myproject, "diskette_dump")
    media = myproject / "var" / "media"
    files = {p.relative_to(media): p.read_bytes() for p in media.rglob("*") if p.is_file()}
    (myproject / "var" / "db.sqlite3").unlink()
    for child in media.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    manage(myproject, "migrate", "-v0")

    result = manage(myproject, "diskette_load", "diskette_data_storages.tar.gz")

    assert result.stdout.splitlines()[0] == "=== Starting restoration ==="
    assert "Loading data from dump 'djangocontribauth.jsonl'" in result.stdout
    assert "Restoring storage directory" in result.stdout
    assert not (myproject / "diskette_data_storages.tar.gz").exists()
    users = manage(
        myproject,
        "shell",
        "-c",
        (
            "from django.contrib.auth.models import User\n"
            "print(sorted((u.username, [g.name for g in u.groups.all()], u.check_password('pw'))"
            " for u in User.objects.all()))"
        ),
    )
    assert users.stdout.strip().splitlines()[-1] == (
        "[('ada', ['staff'], True), ('grace', ['staff'], True), ('linus', ['staff'], True)]"
    )
    restored = {
        p.relative_to(media): p.read_bytes() for p in media.rglob("*") if p.is_file()
    }
    excluded = {Path("cache/c.png"), Path("public/thumbnails/t.png")}
    assert restored == {k: v for k, v in files.items() if k not in excluded}
