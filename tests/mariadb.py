"""A throwaway MariaDB server for the test suite.

``DISKETTE_TEST_DB=mariadb`` runs the suite on MariaDB. With
``DISKETTE_TEST_MARIADB_URL`` (``mysql://user:password@host:port/name``) it
uses that server; otherwise it starts its own: a data directory made by
``mariadb-install-db`` in a temporary folder, a server listening on
127.0.0.1 with a random port (and a socket in that folder), fast and unsafe
settings (no flushing, no doublewrite, no binary log), and a user with a
password that may create databases, as Django's test runner does
(``test_<name>``). The server is started once per pytest process, its URL
exported so that child processes (real ``manage.py``, ``inv``, ``fab``)
reuse it, and it is killed and removed at exit. ``mariadbd`` refuses to run
as root without ``--user``: under root it runs as ``nobody``, like the
PostgreSQL cluster. The binaries come from Debian's ``mariadb-server``
package (``/usr/sbin/mariadbd``) or the ``PATH``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.databases import url_settings
from tests.postgres import free_port

SERVER_USER = "nobody"
CHARSET = "utf8mb4"
COLLATION = "utf8mb4_unicode_ci"
#: The account the suite connects as, over TCP from 127.0.0.1 only.
ACCOUNT = "diskette"
#: How long a server may take to accept connections.
STARTUP_TIMEOUT = 60.0
#: Options of both ``mariadb-install-db`` (which passes them on to its
#: bootstrap server) and ``mariadbd``: the data lives as long as one pytest
#: process, so durability is traded for speed. Without a file per table,
#: CREATE, DROP and TRUNCATE TABLE (Django's flush, the copies' clones)
#: create and delete no files.
SERVER_OPTIONS = (
    f"--character-set-server={CHARSET}",
    f"--collation-server={COLLATION}",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--sync-binlog=0",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-file-per-table=0",
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=64M",
)


def mariadb_settings() -> dict[str, Any]:
    """A Django ``DATABASES`` entry for the server the suite should use."""
    url = os.environ.get("DISKETTE_TEST_MARIADB_URL") or start_server()
    return {
        **url_settings(url, "django.db.backends.mysql", user="root", port=3306),
        # The server's sql_mode is strict already (STRICT_TRANS_TABLES is
        # MariaDB's default): no init_command, one query less per connection.
        "OPTIONS": {"charset": CHARSET},
        "TEST": {"CHARSET": CHARSET, "COLLATION": COLLATION},
    }


def find_binaries() -> tuple[Path, Path]:
    """Where ``mariadbd`` and ``mariadb-install-db`` are."""
    found = []
    for name, folder in (("mariadbd", "/usr/sbin"), ("mariadb-install-db", "/usr/bin")):
        path = Path(folder, name)
        which = shutil.which(name)
        if path.exists() or which:
            found.append(path if path.exists() else Path(str(which)))
    if len(found) < 2:
        raise RuntimeError(
            "MariaDB is not installed (apt-get install mariadb-server), or set "
            "DISKETTE_TEST_MARIADB_URL"
        )
    return found[0], found[1]


def start_server() -> str:
    """Start a server for this process; return its URL and export it.

    Child processes (tests that run ``manage.py``) inherit the URL through
    the environment and reuse the server instead of starting their own.
    """
    mariadbd, install_db = find_binaries()
    as_user: dict[str, Any] = {}
    # Under root the server user must reach the folder: /tmp, not $TMPDIR.
    root = Path(
        tempfile.mkdtemp(
            prefix="diskette-mariadb-", dir="/tmp" if os.geteuid() == 0 else None
        )
    )
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    if os.geteuid() == 0:
        account = pwd.getpwnam(SERVER_USER)
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    password = secrets.token_hex(12)
    # Run at every start of the server, after the grant tables are loaded and
    # before the first connection: mariadb-install-db's bootstrap refuses
    # CREATE USER. Host 127.0.0.1 is the address itself (skip-name-resolve).
    init = root / "init.sql"
    init.write_text(
        f"CREATE USER IF NOT EXISTS '{ACCOUNT}'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{ACCOUNT}'@'127.0.0.1' WITH GRANT OPTION;\n"
    )
    init.chmod(0o644)
    installed = subprocess.run(
        [
            str(install_db),
            "--no-defaults",
            f"--datadir={root / 'data'}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *SERVER_OPTIONS,
        ],
        capture_output=True,
        text=True,
        cwd=root,
        **as_user,
    )
    if installed.returncode:
        # Its output ends with advice; the server's own ERROR lines say why.
        lines = (installed.stdout + installed.stderr).strip().splitlines()
        errors = [line for line in lines if "ERROR" in line] or lines[:3]
        raise RuntimeError(f"mariadb-install-db failed in {root}: {' | '.join(errors)}")
    for _ in range(3):  # the port may be taken between free_port() and bind()
        port = free_port()
        log = root / "error.log"
        log.unlink(missing_ok=True)
        server = subprocess.Popen(
            [
                str(mariadbd),
                "--no-defaults",
                f"--datadir={root / 'data'}",
                f"--socket={root / 'mysqld.sock'}",
                f"--pid-file={root / 'mysqld.pid'}",
                f"--log-error={log}",
                f"--tmpdir={root}",
                f"--init-file={init}",
                "--bind-address=127.0.0.1",
                f"--port={port}",
                "--performance-schema=OFF",
                "--max-connections=500",
                *SERVER_OPTIONS,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
            start_new_session=True,  # a ^C in the terminal is pytest's, not the server's
            **as_user,
        )
        # Killed, not shut down: the data directory goes right after.
        atexit.register(_stop, server)
        url = f"mysql://{ACCOUNT}:{quote(password)}@127.0.0.1:{port}/diskette"
        if _wait_until_ready(server, port, password):
            os.environ["DISKETTE_TEST_MARIADB_URL"] = url
            return url
        if "Address already in use" not in _tail(log):
            break
    raise RuntimeError(
        f"MariaDB did not start on 127.0.0.1:{port} ({mariadbd}, data in {root}); "
        f"the end of {log}: {_tail(log)}"
    )


def _wait_until_ready(server: subprocess.Popen[bytes], port: int, password: str) -> bool:
    """Whether the server accepts the suite's account, polled until it
    does, exits, or :data:`STARTUP_TIMEOUT` passes."""
    import MySQLdb

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and server.poll() is None:
        try:
            MySQLdb.connect(
                host="127.0.0.1",
                port=port,
                user=ACCOUNT,
                password=password,
                connect_timeout=2,
            ).close()
            return True
        except MySQLdb.OperationalError:
            time.sleep(0.05)
    _stop(server)
    return False


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.kill()
        server.wait()


def _tail(log: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of the error log, on one line."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


@contextlib.contextmanager
def admin_cursor() -> Iterator[Any]:
    """A cursor of the suite's account on the server, no database selected,
    in autocommit mode."""
    import MySQLdb

    admin = mariadb_settings()
    connection = MySQLdb.connect(
        host=admin["HOST"],
        port=int(admin["PORT"]),
        user=admin["USER"],
        password=admin["PASSWORD"],
        charset=CHARSET,
        autocommit=True,
    )
    try:
        yield connection.cursor()
    finally:
        connection.close()


def clone_database(name: str, *, template: str) -> None:
    """Create database ``name`` as a copy of ``template``: tables, their
    rows, keys and auto-increment counters.

    MariaDB has no ``CREATE DATABASE ... TEMPLATE``. ``CREATE TABLE ...
    LIKE`` would drop the foreign keys, so each table is created from its
    own ``SHOW CREATE TABLE`` in the new database (the references in it name
    no database), then filled with ``INSERT ... SELECT``, with foreign key
    checks off so that the order does not matter.
    """
    with admin_cursor() as cursor:
        cursor.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            [template],
        )
        charset, collation = cursor.fetchone()
        cursor.execute(
            f"CREATE DATABASE `{name}` CHARACTER SET {charset} COLLATE {collation}"
        )
        cursor.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            [template],
        )
        tables = [table for (table,) in cursor.fetchall()]
        cursor.execute(f"USE `{name}`")
        cursor.execute("SET SESSION foreign_key_checks = 0")
        for table in tables:
            cursor.execute(f"SHOW CREATE TABLE `{template}`.`{table}`")
            cursor.execute(cursor.fetchone()[1])
        for table in tables:
            cursor.execute(f"INSERT INTO `{table}` SELECT * FROM `{template}`.`{table}`")
