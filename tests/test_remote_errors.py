"""What the Fabric tasks say when something is wrong, through the real ``fab``.

A new user met 23 to 38 lines of traceback for an unknown host, a closed
port or a refused key, and a bare ``bash: cd: ...`` or exit 127 for a wrong
``project_dir`` or interpreter. Each case here is the real thing against the
real ``sshd`` of ``tests/sshd.py`` (or a port nothing listens on, or a name
that cannot resolve): the task must exit non-zero with ONE line on its
standard error, no traceback, naming the host and the setting to fix.

Also here: the host's output, relayed live with its name on a terminal
(a real pseudo-terminal) and held back from scripts; the short flags.
"""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import test_remote
from tests.projects import BIN, SANDBOX
from tests.sshd import SSHServer, find_sshd
from tests.test_remote import fab

# The fixtures of tests/test_remote.py, shared by name.
sshd, remote, local = test_remote.sshd, test_remote.remote, test_remote.local

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(
        find_sshd() is None, reason="needs OpenSSH's sshd (.ci/run installs it)"
    ),
]


def closed_port() -> int:
    """A loopback port nothing listens on (free when asked)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Laptop:
    """A folder with the one-line fabfile and a fabric.yaml; no Django needed.

    Its ``ssh_config`` adds hosts that fail to the server's aliases; ``fab``
    runs with no SSH agent and an empty home, so only the keys named here
    are offered.
    """

    def __init__(self, root: Path, server: SSHServer) -> None:
        self.root, self.server = root, server
        (root / "home").mkdir(parents=True)
        (root / "fabfile.py").write_text("from diskette.remote import ns\n")
        (root / "fabric.yaml").write_text(
            f"diskette:\n  remote:\n    project_dir: {SANDBOX}\n"
            f"    python: {sys.executable}\n"
        )
        stranger = root / "stranger_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
            check=True,
        )
        self.closed_port = closed_port()
        here = f"    HostName 127.0.0.1\n    User {server.user}\n"
        self.ssh_config = root / "ssh_config"
        self.ssh_config.write_text(
            server.ssh_config.read_text()
            + "Host ghost\n    HostName no!such-host\n"
            + f"Host closed\n{here}    Port {self.closed_port}\n"
            + f"Host stranger\n{here}    Port {server.port}\n"
            f"    IdentityFile {stranger}\n    IdentitiesOnly yes\n"
            + f"Host keyless\n{here}    Port {server.port}\n"
        )

    def fab(self, *args: str) -> subprocess.CompletedProcess:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("SSH_AUTH_SOCK", "DJANGO_SETTINGS_MODULE")
        }
        env["HOME"] = str(self.root / "home")
        return subprocess.run(
            [str(BIN / "fab"), "-S", str(self.ssh_config), *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )


@pytest.fixture
def laptop(tmp_path: Path, sshd: SSHServer) -> Laptop:
    return Laptop(tmp_path / "laptop", sshd)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The only line of a failed task's standard error."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# Connecting.


def test_a_host_name_that_does_not_resolve(laptop):
    # glibc refuses such a name before asking any DNS server: nothing leaves
    # the machine, and the lookup fails as an unknown name would.
    line = one_line(laptop.fab("-H", "no!such-host", "remote-dump"))
    assert line == (
        "no!such-host: cannot resolve host 'no!such-host' (from -H no!such-host): "
        f"check the name, or its HostName in {laptop.ssh_config}"
    )


def test_an_alias_whose_host_name_does_not_resolve(laptop):
    line = one_line(laptop.fab("-H", "ghost", "pull-snapshot", "--no-load"))
    assert line == (
        f"ghost: cannot resolve host 'no!such-host' (the HostName of ghost in "
        f"{laptop.ssh_config}): check the name, or its HostName in {laptop.ssh_config}"
    )


@pytest.mark.parametrize("host", ["closed", "127.0.0.1:{port}"])
def test_a_port_nothing_listens_on(laptop, host):
    host = host.format(port=laptop.closed_port)
    line = one_line(laptop.fab("-H", host, "remote-dump"))
    assert line == (
        f"{host.partition(':')[0]}: 127.0.0.1 port {laptop.closed_port} refused the connection: is sshd "
        f"running there, and is the port right (Port in {laptop.ssh_config}, or "
        "-H 127.0.0.1:PORT)?"
    )


def test_a_key_the_server_does_not_accept(laptop):
    line = one_line(laptop.fab("-H", "stranger", "push-snapshot", "fabfile.py", "--yes"))
    user, port = laptop.server.user, laptop.server.port
    assert line == (
        f"stranger: cannot log in as {user}@127.0.0.1 port {port}: none of the keys "
        "offered (agent, IdentityFile, ~/.ssh/id_*) was accepted; load your key with "
        f"ssh-add, or set IdentityFile (and User) for stranger in {laptop.ssh_config}; "
        "`ssh stranger` tests the same login"
    )


def test_no_key_at_all(laptop):
    line = one_line(laptop.fab("-H", "keyless", "remote-dump"))
    user, port = laptop.server.user, laptop.server.port
    assert line.startswith(
        f"keyless: cannot log in as {user}@127.0.0.1 port {port}: no key was offered "
        "(no agent, no IdentityFile, no ~/.ssh/id_*); load your key with ssh-add"
    )


# The project on the host.


def test_a_project_folder_that_does_not_exist(laptop):
    line = one_line(
        laptop.fab("-H", "remote", "remote-dump", "--project-dir", "/srv/nosuch")
    )
    assert line == (
        "remote: project folder /srv/nosuch does not exist: set "
        "diskette.remote.project_dir in fabric.yaml or pass --project-dir"
    )


def test_a_folder_without_manage_py(laptop):
    line = one_line(
        laptop.fab(
            "-H", "remote", "pull-snapshot", "--no-load", "--project-dir", str(laptop.root)
        )
    )
    assert line == (
        f"remote: no manage.py in {laptop.root}: set diskette.remote.project_dir to the "
        "folder of manage.py (or pass --project-dir)"
    )


def test_a_python_that_does_not_exist(laptop):
    line = one_line(laptop.fab("-H", "remote", "remote-dump", "--python", "python3.99"))
    assert line == (
        "remote: python3.99 not found: set diskette.remote.python in fabric.yaml "
        "(or pass --python) to the project's interpreter"
    )


def test_the_default_python_that_does_not_exist(laptop):
    """No python in the configuration, no .venv in the project: python3, missing."""
    (laptop.root / "fabric.yaml").write_text(
        f"diskette:\n  remote:\n    project_dir: {SANDBOX}\n"
        "run:\n  env:\n    PATH: /nonexistent\n"
    )
    line = one_line(laptop.fab("-H", "remote", "remote-dump"))
    assert line == (
        f"remote: python3 not found (no .venv/bin/python in {SANDBOX} either): set "
        "diskette.remote.python in fabric.yaml (or pass --python) to the project's "
        "interpreter"
    )


def test_a_python_without_diskette(laptop):
    venv = laptop.root / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    line = one_line(laptop.fab("-H", "remote", "remote-dump", "--python", str(python)))
    assert line == (
        f"remote: diskette is not installed for {python}: pip install django-diskette "
        "there, or point diskette.remote.python at the project's virtualenv"
    )


# Output: live and named on a terminal, results only elsewhere.


def run_on_a_terminal(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run ``command`` with a pseudo-terminal as its stdout and stderr; its output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: every writer is gone
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    assert process.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_the_hosts_output_is_live_and_named_on_a_terminal(local, remote):
    """Progress lines redrawn with ``\\r`` keep the host's name at each redraw."""
    env = {k: v for k, v in local.env.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = [str(BIN / "fab"), "-S", str(local.sshd.ssh_config), "-H", "remote"]
    shown = run_on_a_terminal([*command, "remote-dump", "--no-storages"], local.root, env)
    archive = remote.root / "var" / "diskette_data.tar.gz"
    drawn = [part for part in re.split(r"[\r\n]", shown) if part.strip()]
    assert any(part.startswith("remote: Dumping demo") for part in drawn), shown
    assert all(part.startswith("remote:") for part in drawn), shown
    assert re.fullmatch(
        rf"remote:{re.escape(str(archive))} \(sha256 [0-9a-f]{{64}}\)", drawn[-1]
    )


def test_a_script_gets_the_results_only(local, remote):
    result = fab(local, "-H", "remote", "remote-dump", "--no-storages")
    archive = remote.root / "var" / "diskette_data.tar.gz"
    (line,) = result.stdout.splitlines()
    assert re.fullmatch(
        rf"remote:{re.escape(str(archive))} \(sha256 [0-9a-f]{{64}}\)", line
    )
    assert result.stderr == ""


def test_a_remote_command_that_fails_is_one_line_naming_the_host(local, remote):
    settings = remote.root / (remote.settings.replace(".", "/") + ".py")
    settings.write_text(settings.read_text() + 'DISKETTE_DUMP_PATH = "/dev/null/var"\n')
    result = fab(local, "-H", "remote", "remote-dump", "--no-storages", check=False)
    assert one_line(result).startswith("remote: ")
    assert "/dev/null/var" in one_line(result)


# Short flags.


def test_short_flags_mean_the_same_in_every_task(laptop):
    helps = {
        name: laptop.fab("--help", name).stdout
        for name in ("remote-dump", "pull-snapshot", "push-snapshot")
    }
    for name, text in helps.items():
        options = text.split("Options:")[1]
        shorts = set(re.findall(r"^\s+(-\w|--),", options, re.M))
        assert shorts <= {"-y", "-f"}, (name, shorts)
    for name in ("pull-snapshot", "push-snapshot"):
        assert re.search(r"^\s+-y, --yes\b", helps[name], re.M)
        assert re.search(r"^\s+-f, --force\b", helps[name], re.M)
    assert re.search(r"^\s+--python=STRING", helps["remote-dump"], re.M)


# The configuration.


def test_a_misspelled_protected_hosts_key_refuses_the_push(laptop):
    """``protected_host: [remote]`` would leave the guard empty without a word."""
    (laptop.root / "fabric.yaml").write_text(
        f"diskette:\n  protected_host: [remote]\n  remote:\n    project_dir: {SANDBOX}\n"
    )
    result = laptop.fab("-H", "remote", "push-snapshot", "fabfile.py", "--yes")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "Warning: unknown configuration key 'diskette.protected_host' (invoke.yaml, "
        "fabric.yaml or the environment): did you mean 'diskette.protected_hosts'?",
        "diskette.protected_host is not a key diskette reads (did you mean "
        "diskette.protected_hosts?): fix it in fabric.yaml, so that the hosts it lists "
        "are protected",
    ]


def test_a_misspelled_remote_key_is_pointed_out(laptop):
    (laptop.root / "fabric.yaml").write_text(
        f"diskette:\n  remote:\n    project-dir: {SANDBOX}\n"
    )
    result = laptop.fab("-H", "remote", "remote-dump")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Warning: unknown configuration key 'diskette.remote.project-dir' (invoke.yaml, "
        "fabric.yaml or the environment): did you mean 'diskette.remote.project_dir'?",
        "where is the project on remote? Set diskette.remote.project_dir in fabric.yaml, "
        "or pass --project-dir",
    ]


def test_a_settings_module_the_host_does_not_have(laptop):
    (laptop.root / "fabric.yaml").write_text(
        f"diskette:\n  remote:\n    project_dir: {SANDBOX}\n"
        f"    python: {sys.executable}\n    settings: project.settingz\n"
    )
    line = one_line(laptop.fab("-H", "remote", "remote-dump"))
    assert line == (
        f"remote: settings module project.settingz not found in {SANDBOX}: fix "
        "diskette.remote.settings in fabric.yaml"
    )


def test_a_pull_that_could_not_ask_refuses_before_dumping(local, remote):
    """No terminal, no --yes: refused before the host dumps anything."""
    before = sorted(p.name for p in local.sshd.tmpdir.iterdir())
    result = fab(local, "-H", "remote", "pull-snapshot", check=False)
    line = one_line(result)
    assert line.startswith("refusing without confirmation (Drop the local database and load")
    assert line.endswith("pass --yes to confirm from a script")
    assert sorted(p.name for p in local.sshd.tmpdir.iterdir()) == before
    assert not (local.root / "var" / "diskette-snapshots").exists()


def test_a_protected_hosts_value_that_is_not_a_list_refuses_the_push(laptop):
    """``protected_hosts: remote`` (no brackets) would be read letter by letter."""
    (laptop.root / "fabric.yaml").write_text(
        f"diskette:\n  protected_hosts: remote\n  remote:\n    project_dir: {SANDBOX}\n"
    )
    line = one_line(laptop.fab("-H", "remote", "push-snapshot", "fabfile.py", "--yes"))
    assert line == (
        "diskette.protected_hosts must be a list of hosts, such as [prod], not 'remote': "
        "fix it in fabric.yaml"
    )


@pytest.mark.parametrize("entry", ["remote,staging"])  # other shapes: test_remote_guards
def test_a_protected_hosts_entry_that_is_not_one_host_refuses_the_push(laptop, entry):
    (laptop.root / "fabric.yaml").write_text(
        f'diskette:\n  protected_hosts: ["{entry}"]\n  remote:\n    project_dir: {SANDBOX}\n'
    )
    line = one_line(laptop.fab("-H", "remote", "push-snapshot", "fabfile.py", "--yes"))
    assert line.startswith(f"diskette.protected_hosts entry {entry!r} is not [user@]host[:port]")
    assert line.endswith("fix it in fabric.yaml")


def test_a_hosts_output_cannot_drive_the_terminal():
    from diskette.ssh import harmless

    assert harmless("a\x1b[31mred\x1b]0;title\x07 \r50%\x1b[K\n\tok") == (
        "a[31mred]0;title \r50%\x1b[K\n\tok"
    )
