"""What the Fabric tasks say about SSH: one line naming the host, and live output.

Left alone, Fabric lets Paramiko's exceptions through as 20 to 40 lines of
traceback: a ``socket.gaierror`` that does not name the host it could not
resolve, ``NoValidConnectionsError``, "No authentication methods
available". :func:`speaking_for` turns each into one line that names the
``-H`` host, what ssh resolved it to (``HostName``, ``Port``, user) and what
to do about it, as :class:`invoke.Exit`: a non-zero exit and no traceback.
Diskette's own errors (:class:`~diskette.exceptions.DisketteError`) and a
remote command's failure become one line too.

:class:`HostOutput` relays what the remote management commands print while
they run, each line prefixed with the host (``prod: ...``) so that nothing
from the host looks local. Only a person watching gets it: where the
standard output (or error) is not a terminal, a script or a log gets the
results the tasks print themselves, plus the host's warnings.
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import threading
from collections.abc import Iterator
from typing import IO, Any

from fabric import Connection
from fabric.runners import Remote
from invoke import Exit
from invoke.exceptions import UnexpectedExit
from paramiko import Transport
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    NoValidConnectionsError,
    PasswordRequiredException,
    SSHException,
)

from .exceptions import DisketteError, LocalWriteError
from .tasks import READ_CHUNK, last_error

#: Errors of ``connect()`` that mean the host cannot be reached at all.
UNREACHABLE = {
    errno.ETIMEDOUT: "did not answer",
    errno.EHOSTUNREACH: "is unreachable",
    errno.ENETUNREACH: "is unreachable (no route to its network)",
    errno.ECONNREFUSED: "refused the connection",
}


def ssh_config_name(c: Connection) -> str:
    """The ssh_config file a person should look at for ``c``: ``-S``'s, else theirs."""
    given = getattr(c.config, "_runtime_ssh_path", None)  # fab -S; no public name
    return str(given or c.config.get("ssh_config_path") or "~/.ssh/config")


def connection_error(c: Connection, exc: BaseException) -> str | None:
    """One line saying why ``c`` could not connect, or ``None`` if ``exc`` is another error.

    Every line starts with the ``-H`` name, says what ssh made of it (host,
    port, user) when that differs, and ends with the fix.
    """
    name, config = c.original_host, ssh_config_name(c)
    where = f"{c.host} port {c.port}"
    if isinstance(exc, socket.gaierror):
        origin = (
            f"from -H {name}"
            if c.host == name.rpartition("@")[2].partition(":")[0]
            else f"the HostName of {name} in {config}"
        )
        return (
            f"{name}: cannot resolve host '{c.host}' ({origin}): check the name, "
            f"or its HostName in {config}"
        )
    if isinstance(exc, NoValidConnectionsError):
        codes = sorted(int(getattr(e, "errno", None) or 0) for e in exc.errors.values())
        # One address refusing says more (sshd is not there) than another
        # being unreachable (often IPv6 without a route).
        code = errno.ECONNREFUSED if errno.ECONNREFUSED in codes else codes[0]
        refused = UNREACHABLE.get(code, "refused the connection")
        return (
            f"{name}: {where} {refused}: is sshd running there, and is the port right "
            f"(Port in {config}, or -H {c.host}:PORT)?"
        )
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, OSError) and exc.errno in UNREACHABLE
    ):
        how = UNREACHABLE.get(exc.errno or errno.ETIMEDOUT, "did not answer")
        return (
            f"{name}: {where} {how}: check the name, the network (VPN, firewall) "
            f"and the Port in {config}"
        )
    login = f"{c.user}@{where}"
    test = f"`ssh {name}` tests the same login"
    if isinstance(exc, PasswordRequiredException):
        return (
            f"{name}: the key for {login} is protected by a passphrase, which diskette "
            f"does not ask for: load it into your agent with ssh-add; {test}"
        )
    if isinstance(exc, AuthenticationException) or (
        isinstance(exc, SSHException) and "No authentication methods" in str(exc)
    ):
        offered = (
            "no key was offered (no agent, no IdentityFile, no ~/.ssh/id_*)"
            if "No authentication methods" in str(exc)
            else "none of the keys offered (agent, IdentityFile, ~/.ssh/id_*) was accepted"
        )
        return (
            f"{name}: cannot log in as {login}: {offered}; load your key with ssh-add, "
            f"or set IdentityFile (and User) for {name} in {config}; {test}"
        )
    if isinstance(exc, BadHostKeyException):
        return (
            f"{name}: the host key of {where} is not the one in your known_hosts: if the "
            f"server was reinstalled, remove the old key (ssh-keygen -R {c.host}) and "
            "connect again; if not, do not: someone may be in between"
        )
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return (
            f"{name}: cannot read the SSH key {exc.filename}: fix IdentityFile for "
            f"{name} in {config}"
        )
    return None


def command_failure(exc: UnexpectedExit) -> str:
    """One line for a command that exited non-zero: which one, where, its last error."""
    result = exc.result
    found = re.search(r"\bdiskette_\w+", result.command)
    what = found.group(0) if found else result.command
    reason = last_error(result, "no message")
    connection = getattr(result, "connection", None)
    where = f"{connection.original_host}: " if connection is not None else ""
    return f"{where}{what} failed (exit {result.exited}): {reason}"


def connect(c: Connection) -> None:
    """Open ``c`` now, so that a failure to connect is told as one (:func:`connection_error`).

    Connecting first, rather than on the first command, keeps local errors
    of the task (a folder that cannot be created) from being blamed on SSH.
    The transport offers AES-GCM first (:class:`GcmFirst`), unless
    ``connect_kwargs`` name a transport of their own.
    """
    c.connect_kwargs.setdefault("transport_factory", GcmFirst)
    try:
        c.open()
    except (OSError, EOFError, SSHException) as exc:
        raise Exit(connection_error(c, exc) or _dropped(c, exc), code=1) from exc
    leave_rekeying_to_the_server(c.transport)


#: The ciphers with their own integrity check, which Paramiko offers last.
GCM = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class GcmFirst(Transport):
    """Paramiko's transport, offering AES-GCM before the others.

    Paramiko's own order puts AES-CTR first, whose packets then carry an
    HMAC-SHA2 computed apart: measured here, receiving 1 GB over loopback
    took 1.9 s of this side's CPU with it, 0.9 s with AES-GCM, which the
    processor's AES instructions do in one pass. Every other cipher is still
    offered after them, in Paramiko's order, for a server without GCM
    (OpenSSH has it since 6.2).
    """

    _preferred_ciphers = (
        *GCM,
        *(name for name in Transport._preferred_ciphers if name not in GCM),
    )


#: Bytes after which Paramiko would ask for new keys: out of reach.
REKEY_BYTES = 2**50


def leave_rekeying_to_the_server(transport: Any) -> None:
    """Keep Paramiko from asking for new keys every 512 MB of a transfer.

    When a channel closes while the exchange it asked for is under way,
    Paramiko waits on itself for 30 s and then fails the connection
    ("Key-exchange timed out waiting for key negotiation", paramiko#822):
    measured here, a 1 GB download ending near its second exchange took 26 s
    longer, and removing the host's temporary folder after it failed. The
    server still renews the keys when its cipher needs it (OpenSSH's
    ``RekeyLimit``), and Paramiko answers that side correctly.
    """
    packetizer = getattr(transport, "packetizer", None)
    if packetizer is not None:
        packetizer.REKEY_BYTES = REKEY_BYTES


def _dropped(c: Connection, exc: BaseException) -> str:
    reason = str(exc) or type(exc).__name__
    return (
        f"{c.original_host}: the SSH connection to {c.host} port {c.port} "
        f"failed or dropped ({reason}): run the task again"
    )


@contextlib.contextmanager
def speaking_for(c: Connection) -> Iterator[None]:
    """Turn what goes wrong in a task on ``c`` into one line and a non-zero exit.

    Diskette's own errors and a command's non-zero exit become their
    one-line message; a local file that cannot be written is named; the
    connection dropping (or failing to reconnect) says so, and names the fix
    where :func:`connection_error` knows it.
    """
    try:
        yield
    except Exit:
        raise
    except DisketteError as exc:
        raise Exit(str(exc), code=1) from exc
    except UnexpectedExit as exc:
        raise Exit(command_failure(exc), code=1) from exc
    except OSError as exc:
        if exc.filename is None:
            raise Exit(connection_error(c, exc) or _dropped(c, exc), code=1) from exc
        raise Exit(f"{exc.filename}: {exc.strerror or exc}", code=1) from exc
    except (EOFError, SSHException) as exc:
        raise Exit(connection_error(c, exc) or _dropped(c, exc), code=1) from exc


@contextlib.contextmanager
def on_host(c: Connection) -> Iterator[None]:
    """Name ``c``'s host in a failure of the work done there.

    The functions of :mod:`diskette.tasks` say what failed, not where: on a
    push they run on the host, and "the database holds data" must say which.
    """
    prefix = f"{c.original_host}: "
    try:
        yield
    except LocalWriteError as exc:  # this machine's disk: not the host's doing
        raise Exit(str(exc), code=1) from exc
    except Exit as exc:
        message = exc.message or ""
        if message and not message.startswith(prefix):
            raise Exit(prefix + message, code=exc.code) from exc
        raise
    except DisketteError as exc:
        message = str(exc)
        raise Exit(
            message if message.startswith(prefix) else prefix + message, code=1
        ) from exc


class HostOutput(Remote):
    """Fabric's remote runner, relaying output live with the host's name on each line.

    Set as ``runners.remote`` in a connection's configuration, it changes
    nothing of what a command returns (``hide`` still hides: JSON answers
    are parsed, never shown). Where the local stream is a terminal, every
    line is relayed as it comes, a progress line redrawn with ``\\r`` keeping
    its prefix; elsewhere the standard output is not relayed at all, and of
    the standard error only the warnings (``Warning: ...``), so that a
    script reads results, not chatter.
    """

    lock = threading.Lock()
    read_chunk_size = READ_CHUNK  # Fabric's 1,000 bytes: slow on a list of media

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at_line_start: dict[int, bool] = {}
        self.pending: dict[int, str] = {}

    def write_our_output(self, stream: IO[str], string: str) -> None:
        prefix = f"{self.context.original_host}: "
        string = harmless(string)
        if _isatty(stream):
            with self.lock:
                stream.write(self._prefixed(id(stream), string, prefix))
                stream.flush()
            return
        if stream is not self.streams.get("err"):
            return
        text = self.pending.get(id(stream), "") + string
        *lines, self.pending[id(stream)] = text.split("\n")
        warnings = [line for line in lines if line.lstrip().startswith("Warning:")]
        if warnings:
            with self.lock:
                stream.write("".join(f"{prefix}{line}\n" for line in warnings))
                stream.flush()

    def _prefixed(self, key: int, string: str, prefix: str) -> str:
        """``string`` with ``prefix`` after each line start (``\\n`` or ``\\r``)."""
        out, start = [], self.at_line_start.get(key, True)
        for piece in re.split(r"([\r\n])", string):
            if piece in ("\r", "\n"):
                out.append(piece)
                start = True
            elif piece:
                out.append(prefix + piece if start else piece)
                start = False
        self.at_line_start[key] = start
        return "".join(out)


#: Control characters a host's output may not send to our terminal: all but
#: tab, newline and carriage return, and of escape sequences all but the
#: "erase to the end of the line" progress lines use. A hostile host could
#: otherwise set the window title, move the cursor or hide text.
_CONTROL = re.compile(r"\x1b\[K|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def harmless(text: str) -> str:
    """``text`` without the control characters that could drive a terminal."""
    return _CONTROL.sub(lambda found: found[0] if found[0] == "\x1b[K" else "", text)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False
