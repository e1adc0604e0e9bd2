"""A real OpenSSH server for the test suite, on 127.0.0.1 with throwaway keys.

The server runs from a private folder with its own ``sshd_config``, host key,
user key and ``authorized_keys``; it never reads the system's SSH setup, and
the client side gets an ``ssh_config`` of its own that maps host aliases
(``remote``, ``staging``, ``prod``) to it, the way users name their servers.
The daemon listens on two ports: ``prod`` (and its other alias ``live``) is
the second one, a host of its own as far as ssh and diskette's
``protected_hosts`` guard can tell, so ``staging`` stays pushable while
``prod`` is protected.

Two more things make the remote tests cheap and independent of the machine:

- the sessions get a ``TMPDIR`` of their own (``SetEnv`` in ``sshd_config``),
  so what diskette leaves in the "remote" host's temporary folder is read in
  :attr:`SSHServer.tmpdir`, never in the machine's ``/tmp`` that anything
  else may write to;
- the ``slow`` alias reaches the same daemon through :class:`ThrottledLink`,
  a relay on loopback whose server-to-client direction is limited to
  :data:`SLOW_RATE` bytes a second: a transfer lasts long enough to be cut in
  the middle without a file of hundreds of megabytes.

``.ci/run`` installs ``openssh-server`` when ``sshd`` is missing.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ALIASES = ("remote", "staging")
PROD_ALIASES = ("prod", "live")
SLOW_ALIAS = "slow"
#: Bytes a second from the server through the ``slow`` alias: 4 MiB take 8 s.
SLOW_RATE = 512 * 1024


@dataclass
class SSHServer:
    """A running ``sshd`` and how to reach it."""

    port: int
    user: str
    key: Path
    ssh_config: Path
    process: subprocess.Popen
    #: The port of the ``prod`` and ``live`` aliases.
    prod_port: int
    #: The sessions' ``TMPDIR``: the "remote" host's temporary folder.
    tmpdir: Path
    #: The throttled relay behind the ``slow`` alias.
    slow: ThrottledLink

    def cut_connections(self) -> None:
        """Kill every session process, as a dropped network would; the daemon stays.

        Bytes that the ``slow`` relay holds in its buffers are dropped too:
        on a real network they would be lost with the link. (Sessions first:
        a client that reconnects once its link is dropped must find a server.)
        """
        subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid)], check=False)
        self.slow.drop()

    def stop(self) -> None:
        self.slow.close()
        self.process.terminate()
        self.process.wait(timeout=10)


class ThrottledLink:
    """A TCP relay from a loopback port to ``target``, slow towards the client.

    Each accepted connection is relayed by two threads; the one carrying the
    server's bytes sleeps after each chunk so that no more than ``rate`` bytes
    a second go through, as on a slow network. When either side closes (a
    session killed by :meth:`SSHServer.cut_connections`), both are shut down,
    so the client sees the connection drop at once.
    """

    def __init__(self, target: int, rate: int) -> None:
        self.target, self.rate = target, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.live: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        self.drop()

    def drop(self) -> None:
        """Cut every relayed connection now, whatever is still in transit."""
        for end in list(self.live):
            _shut(end)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            self.live.update((client, server))
            for source, sink, rate in ((client, server, 0), (server, client, self.rate)):
                threading.Thread(
                    target=self._pipe, args=(source, sink, rate), daemon=True
                ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, rate: int) -> None:
        chunk = max(rate // 16, 1024) if rate else 256 * 1024
        try:
            while data := source.recv(chunk):
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            _shut(source)  # and wake the other direction's thread
            _shut(sink)
            self.live.discard(source)
            source.close()  # each thread closes the socket it reads


def _shut(end: socket.socket) -> None:
    with contextlib.suppress(OSError):
        end.shutdown(socket.SHUT_RDWR)


def find_sshd() -> str | None:
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)),
        None,
    )


def start_sshd(root: Path) -> SSHServer:
    """Start ``sshd`` from ``root`` (created, mode 0700) on a free loopback port."""
    sshd = find_sshd()
    if sshd is None:
        raise RuntimeError("OpenSSH server not installed (apt-get install openssh-server)")
    root.mkdir(mode=0o700, parents=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)],
            check=True,
        )
    authorized = root / "authorized_keys"
    authorized.write_text((root / "client_key.pub").read_text())
    authorized.chmod(0o600)
    (port, prod_port), user = _free_ports(2), getpass.getuser()
    tmpdir = root / "tmp"
    tmpdir.mkdir(mode=0o700)
    config = root / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nPort {prod_port}\n"
        f"HostKey {root / 'host_key'}\nSetEnv TMPDIR={tmpdir} XDG_CACHE_HOME={root / 'cache'}\n"
        f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nStrictModes no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
    process = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "sshd.log", "wb"),  # noqa: SIM115 - lives as long as sshd
    )
    client = root / "ssh_config"
    common = (
        f"    User {user}\n    IdentityFile {root / 'client_key'}\n"
        "    IdentitiesOnly yes\n    StrictHostKeyChecking no\n"
        "    UserKnownHostsFile /dev/null\n"
    )
    slow = ThrottledLink(port, SLOW_RATE)
    client.write_text(
        f"Host {' '.join(ALIASES)}\n    HostName 127.0.0.1\n    Port {port}\n{common}"
        f"Host {' '.join(PROD_ALIASES)}\n    HostName 127.0.0.1\n    Port {prod_port}\n"
        f"{common}"
        f"Host {SLOW_ALIAS}\n    HostName 127.0.0.1\n    Port {slow.port}\n{common}"
    )
    server = SSHServer(
        port, user, root / "client_key", client, process, prod_port, tmpdir, slow
    )
    _wait_for_banner(server, root / "sshd.log")
    return server


def _wait_for_banner(server: SSHServer, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1) as probe:
                if probe.recv(64).startswith(b"SSH-2.0"):
                    return
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("sshd did not answer within 15 seconds")


def _free_ports(count: int) -> list[int]:
    # sshd takes no "Port 0": ask the kernel for free ports (distinct, as
    # all probes stay open until each has one) and hand them over; another
    # process could take one meanwhile, which is rare.
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()
