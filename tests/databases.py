"""Which database the suite runs on, and the databases of project copies.

``DISKETTE_TEST_DB`` says it: ``sqlite`` (the default, in memory), ``postgres``
(:mod:`tests.postgres`) or ``mariadb`` (:mod:`tests.mariadb`); the last two
are the "server" databases, on which each copy of the sandbox
(:mod:`tests.projects`) gets a database of its own on the same server. An
unknown name is refused rather than silently run on SQLite.

Tests read :data:`ON_POSTGRES`, :data:`ON_MARIADB` and :data:`ON_SERVER` at
import time; the servers themselves start only when settings are built.
"""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

DATABASES = ("sqlite", "postgres", "mariadb")
TEST_DB = os.environ.get("DISKETTE_TEST_DB") or "sqlite"
if TEST_DB not in DATABASES:
    raise RuntimeError(
        f"DISKETTE_TEST_DB={TEST_DB!r}: the suite runs on {', '.join(DATABASES)}"
    )
ON_SQLITE = TEST_DB == "sqlite"
ON_POSTGRES = TEST_DB == "postgres"
ON_MARIADB = TEST_DB == "mariadb"
#: The suite's database is a server, on which copies get databases of their own.
ON_SERVER = not ON_SQLITE


def database_settings() -> dict[str, Any]:
    """The ``DATABASES["default"]`` entry of the suite's own settings."""
    if ON_SQLITE:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    return server_settings()


def server_settings(server: str = TEST_DB) -> dict[str, Any]:
    """The ``DATABASES`` entry for the suite's server, or the one named
    ``server`` (``postgres``, ``mariadb``; the benchmarks choose), started
    if need be."""
    if server == "postgres":
        from tests.postgres import postgres_settings

        return postgres_settings()
    if server == "mariadb":
        from tests.mariadb import mariadb_settings

        return mariadb_settings()
    raise RuntimeError(f"{server!r} is no database server")


def server_settings_body(name: str | None = None, server: str = TEST_DB) -> str:
    """Settings lines pointing a copy at database ``name`` (default: a new
    name, not created yet) on the suite's server (or ``server``)."""
    database = {**server_settings(server), "NAME": name or new_database_name("copy")}
    return f"DATABASES = {{'default': {database!r}}}\n"


def url_settings(url: str, engine: str, *, user: str, port: int) -> dict[str, Any]:
    """A ``DATABASES`` entry from ``scheme://user:password@host:port/name``,
    with the server's default ``user`` and ``port`` where the URL has none."""
    parts = urlsplit(url)
    return {
        "ENGINE": engine,
        "NAME": parts.path.lstrip("/") or "diskette",
        "USER": unquote(parts.username or user),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or port),
    }


def new_database_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def clone_database(name: str, *, template: str) -> None:
    """Create database ``name`` on the suite's server as a copy of ``template``."""
    if ON_POSTGRES:
        from tests import postgres as server
    elif ON_MARIADB:
        from tests import mariadb as server
    else:
        raise RuntimeError("the suite runs on SQLite: there is no database server")
    server.clone_database(name, template=template)
