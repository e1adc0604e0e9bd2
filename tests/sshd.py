"""A real OpenSSH server for the test suite, on 127.0.0.1 with throwaway keys.

The server runs from a private folder with its own ``sshd_config``, host key,
user key and ``authorized_keys``; it never reads the system's SSH setup, and
the client side gets an ``ssh_config`` of its own that maps host aliases
(``remote``, ``staging``, ``prod``) to it, the way users name their servers.
The daemon listens on two ports: ``prod`` (and its other alias ``live``) is
the second one, a host of its own as far as ssh and diskette's
``protected_hosts`` guard can tell, so ``staging`` stays pushable while
``prod`` is protected.
``.ci/run`` installs ``openssh-server`` when ``sshd`` is missing.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ALIASES = ("remote", "staging")
PROD_ALIASES = ("prod", "live")


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

    def cut_connections(self) -> None:
        """Kill every session process, as a dropped network would; the daemon stays."""
        subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid)], check=False)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


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
    config = root / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nPort {prod_port}\n"
        f"HostKey {root / 'host_key'}\n"
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
    client.write_text(
        f"Host {' '.join(ALIASES)}\n    HostName 127.0.0.1\n    Port {port}\n{common}"
        f"Host {' '.join(PROD_ALIASES)}\n    HostName 127.0.0.1\n    Port {prod_port}\n"
        f"{common}"
    )
    server = SSHServer(port, user, root / "client_key", client, process, prod_port)
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
