"""A throwaway PostgreSQL cluster for the test suite.

``DISKETTE_TEST_DB=postgres`` runs the suite on PostgreSQL. With
``DISKETTE_TEST_POSTGRES_URL`` (``postgresql://user:password@host:port/name``)
it uses that server; otherwise it starts its own cluster on 127.0.0.1 with a
random port, fast and unsafe settings (no fsync), and removes it at exit.
PostgreSQL refuses to run as root, so under root the cluster runs as
``nobody``. The binaries come from Debian's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``) or the ``PATH``.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.databases import url_settings

SERVER_USER = "nobody"


def postgres_settings() -> dict[str, Any]:
    """A Django ``DATABASES`` entry for the server the suite should use."""
    url = os.environ.get("DISKETTE_TEST_POSTGRES_URL") or start_cluster()
    return url_settings(url, "django.db.backends.postgresql", user="postgres", port=5432)


def find_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are, newest version first."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])
    )
    for folder in reversed(candidates):
        if Path(folder, "initdb").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError(
        "PostgreSQL is not installed (apt-get install postgresql), or set "
        "DISKETTE_TEST_POSTGRES_URL"
    )


def start_cluster() -> str:
    """Start a cluster for this process; return its URL and export it.

    Child processes (tests that run ``manage.py``) inherit the URL through
    the environment and reuse the cluster instead of starting their own.
    """
    bindir = find_bindir()
    as_user: dict[str, Any] = {}
    # Under root the server user must reach the folder: /tmp, not $TMPDIR.
    root = Path(
        tempfile.mkdtemp(prefix="diskette-pg-", dir="/tmp" if os.geteuid() == 0 else None)
    )
    if os.geteuid() == 0:
        account = pwd.getpwnam(SERVER_USER)
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data, port = root / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, cwd=root, **as_user)

    atexit.register(shutil.rmtree, root, ignore_errors=True)
    run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "server.log"),
        "-o",
        options,
        "-w",
        "start",
    )
    atexit.register(
        subprocess.run,
        [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
        capture_output=True,
        cwd=root,
        **as_user,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/diskette"
    os.environ["DISKETTE_TEST_POSTGRES_URL"] = url
    return url


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (also for :mod:`tests.mariadb`)."""
    # sshd, postgres and mariadbd take no "port 0": ask the kernel for a free
    # port and hand it over; another process could take it meanwhile, which
    # is rare.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clone_database(name: str, *, template: str) -> None:
    """``CREATE DATABASE name TEMPLATE template`` on the test cluster.

    A backend may outlive its client by a few milliseconds: while the
    template is still "being accessed by other users", try again.
    """
    import psycopg
    from psycopg import errors

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
