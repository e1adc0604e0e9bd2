"""Test settings: the sandbox project, on SQLite or PostgreSQL.

``DISKETTE_TEST_DB=postgres`` selects PostgreSQL (see :mod:`tests.postgres`).
Storages and the dump path are left empty here; tests set what they need.
"""

import os

from project.settings import *  # noqa: F403 - the sandbox is the project under test
from tests.postgres import postgres_settings

if os.environ.get("DISKETTE_TEST_DB", "sqlite") == "postgres":
    DATABASES = {"default": postgres_settings()}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = None  # set by the fixtures, never the sandbox's own var/media
DISKETTE_STORAGES = []
DISKETTE_DUMP_PATH = None
