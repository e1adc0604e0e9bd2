"""Test settings: the sandbox project, on SQLite, PostgreSQL or MariaDB.

``DISKETTE_TEST_DB`` selects the database (see :mod:`tests.databases`):
``sqlite`` (default), ``postgres`` (:mod:`tests.postgres`) or ``mariadb``
(:mod:`tests.mariadb`). Storages and the dump path are left empty here;
tests set what they need.
"""

from project.settings import *  # noqa: F403 - the sandbox is the project under test
from tests.databases import database_settings

DATABASES = {"default": database_settings()}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = None  # set by the fixtures, never the sandbox's own var/media
DISKETTE_STORAGES = []
DISKETTE_DUMP_PATH = None
