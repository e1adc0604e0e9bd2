"""Guards of the Fabric tasks that a red team got past, through the real ``fab``.

- ``diskette.protected_hosts`` held only the names typed after ``-H``: another
  ssh alias of the same server, its address or ``localhost`` pushed anyway.
- A pull whose local ``fab`` was killed left its remote temporary folder, a
  whole production archive inside, for ever (pulls now stream the host's
  dump; transit folders remain for pushes and older hosts).

The hosts are the real ``sshd`` of ``tests/sshd.py`` (fixtures shared with
``tests/test_remote.py``). Each test gives the "remote" side a temporary
folder of its own (``TMPDIR`` through Fabric's ``run.env``), so nothing here
reads or changes the machine's ``/tmp``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest
from fabric import Config, Connection
from invoke import Exit
from paramiko.packet import Packetizer

from diskette.host import TRANSIT_MARKER, protected_entry, remote_tempdir
from diskette.ssh import GCM
from diskette.ssh import connect as ssh_connect
from diskette.transfer import download
from tests import test_remote
from tests.projects import BIN, SandboxCopy, wait_until_none_run
from tests.sshd import SLOW_ALIAS, find_sshd
from tests.test_remote import add_settings, fab, files

# The fixtures of tests/test_remote.py, shared by name.
sshd, remote, local = test_remote.sshd, test_remote.remote, test_remote.local

needs_sshd = pytest.mark.skipif(
    find_sshd() is None, reason="needs OpenSSH's sshd (.ci/run installs it)"
)

DAY = 24 * 3600


@pytest.fixture
def remote_tmp(local: SandboxCopy, tmp_path: Path) -> Path:
    """The "remote" host's TMPDIR for this test, set in the local fabric.yaml."""
    folder = tmp_path / "remote-tmp"
    folder.mkdir()
    yaml = local.root / "fabric.yaml"
    yaml.write_text(yaml.read_text() + f"run:\n  env:\n    TMPDIR: {folder}\n")
    return folder


# Protected hosts, matched after ssh_config resolution.


@pytest.fixture
def ssh_config(tmp_path: Path) -> Path:
    """Aliases as a team would write them; nothing listens: nothing connects."""
    path = tmp_path / "ssh_config"
    path.write_text(
        "Host prod db-primary\n    HostName 127.0.0.1\n    Port 2222\n"
        "Host by-name\n    HostName localhost\n    Port 2222\n"
        "Host other-port\n    HostName 127.0.0.1\n    Port 2223\n"
    )
    return path


def connect(host: str, ssh_config: Path) -> Connection:
    return Connection(host, config=Config(runtime_ssh_path=str(ssh_config)))


@pytest.mark.parametrize(
    "host",
    ["prod", "db-primary", "by-name", "127.0.0.1:2222", "localhost:2222", "LOCALHOST:2222"],
)
def test_every_name_of_a_protected_host_is_protected(ssh_config, host):
    assert protected_entry(connect(host, ssh_config), ["prod"]) == "prod"


@pytest.mark.parametrize("host", ["other-port", "127.0.0.1", "localhost:2223"])
def test_the_same_address_on_another_port_is_another_host(ssh_config, host):
    assert protected_entry(connect(host, ssh_config), ["prod"]) is None


def test_an_entry_that_does_not_resolve_is_compared_by_name(ssh_config):
    # glibc refuses such a name before asking any DNS server: nothing leaves
    # the machine, and the lookup fails as an unknown name would.
    assert protected_entry(connect("prod", ssh_config), ["no!such-host"]) is None
    assert protected_entry(connect("no!such-host", ssh_config), ["no!such-host"]) == (
        "no!such-host"
    )


@pytest.mark.parametrize(
    "entry", ["prod:22x", "prod,live", "", "user@", "prod:99999", "prod:0", "a b", "x/y"]
)
def test_an_entry_that_is_not_a_host_refuses_in_one_line(ssh_config, entry):
    """A guard that cannot be read refuses: ``prod,live`` (as -H takes two
    hosts) would otherwise match neither, and let the push through."""
    with pytest.raises(Exit) as exc:
        protected_entry(connect("by-name", ssh_config), [entry])
    assert exc.value.message == (
        f"diskette.protected_hosts entry {entry!r} is not [user@]host[:port] "
        "(one host per entry, as -H takes it, such as deploy@prod:22); fix it in fabric.yaml"
    )


@pytest.mark.parametrize("entry", ["prod", "deploy@prod:22", "[::1]:2222", "10.0.0.5"])
def test_an_entry_of_one_host_is_read(ssh_config, entry):
    assert protected_entry(connect("other-port", ssh_config), [entry]) is None  # elsewhere


@needs_sshd
@pytest.mark.subprocess
@pytest.mark.parametrize("alias", ["live", "127.0.0.1", "localhost"])
def test_a_protected_host_refuses_a_push_by_any_of_its_names(
    local, remote, remote_tmp, alias
):
    """``prod`` is protected; ``live`` is another ssh_config alias of it."""
    port = local.sshd.prod_port
    host = alias if alias == "live" else f"{alias}:{port}"
    local.manage("diskette_dump", "--destination", str(local.root / "out"))
    before, remote_files = remote.fingerprint(), files(remote.root)

    result = fab(
        local,
        "-H",
        host,
        "push-snapshot",
        "out/diskette_data_storages.tar.gz",
        "--yes",
        check=False,
    )

    assert result.returncode == 1
    shown = "127.0.0.1" if alias != "localhost" else "localhost"
    assert result.stderr.strip().splitlines()[-1] == (
        f"{alias} is the same host as prod, which is in diskette.protected_hosts "
        f"({shown} port {port}): refusing to push there "
        "(add --override-protection if you mean it)"
    )
    assert remote.fingerprint() == before
    assert files(remote.root) == remote_files
    assert list(remote_tmp.iterdir()) == []  # not even a temporary folder


# Transit folders left on the host by a killed pull.


def transit_folder(tmp: Path, name: str, *, marked: bool, age: float) -> Path:
    """A folder as ``remote_tempdir`` makes them, ``age`` seconds old."""
    folder = tmp / name
    folder.mkdir(mode=0o700)
    (folder / "diskette_data.tar.gz").write_bytes(b"production data")
    if marked:
        (folder / TRANSIT_MARKER).touch()
    then = time.time() - age
    os.utime(folder, (then, then))
    return folder


@needs_sshd
@pytest.mark.subprocess
def test_a_pull_killed_mid_download_leaves_nothing_on_the_host(local, remote, remote_tmp):
    """The host's dump streams into the download (``--to-stdout``): killed, the
    pull leaves no archive there, and the dump ends with the connection."""
    (remote.root / "var" / "media" / "video.bin").write_bytes(os.urandom(4 * 2**20))
    downloads = local.root / "var" / "diskette-snapshots"
    env = {k: v for k, v in local.env.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = [str(BIN / "fab"), "-S", str(local.sshd.ssh_config), "-H"]
    process = subprocess.Popen(  # through the throttled link: a download of 8 s
        [*command, SLOW_ALIAS, "pull-snapshot", "--no-load"],
        cwd=local.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        partial = list(downloads.glob("*.part")) if downloads.exists() else []
        if partial and partial[0].stat().st_size > 0:
            process.kill()  # kill -9: no clean-up runs
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert process.returncode == -9, (
        "the pull ended before the kill: make the file larger or SLOW_RATE lower"
    )
    wait_until_none_run(remote.root, "diskette_dump")
    assert list(remote_tmp.iterdir()) == []
    assert not list(remote.root.rglob("*.tar.gz*"))


@needs_sshd
def test_stale_transit_folders_are_removed_and_others_kept(sshd, tmp_path, capsys):
    """A pull through a host whose diskette cannot stream (or a push) goes
    through a transit folder there: one left by a killed pull is removed by
    the next one once it is a day old, if it is diskette's own."""
    remote_tmp = tmp_path / "remote-tmp"
    remote_tmp.mkdir()
    left = transit_folder(remote_tmp, "diskette.Killed", marked=True, age=DAY + 600)
    kept = [
        transit_folder(remote_tmp, "diskette.Recent", marked=True, age=3600),
        transit_folder(remote_tmp, "diskette.NoMark", marked=False, age=2 * DAY),
        transit_folder(remote_tmp, "diskette.longer-name", marked=True, age=2 * DAY),
    ]
    elsewhere = transit_folder(tmp_path, "diskette.Target", marked=True, age=2 * DAY)
    (remote_tmp / "diskette.SymLnk").symlink_to(elsewhere)
    kept.append(remote_tmp / "diskette.SymLnk")
    if os.geteuid() == 0:  # only root can give a folder to another user
        other = transit_folder(remote_tmp, "diskette.Others", marked=True, age=2 * DAY)
        os.chown(other, 65534, 65534)
        kept.append(other)
    connection = Connection("remote", config=Config(runtime_ssh_path=str(sshd.ssh_config)))
    connection.config.run.env = {"TMPDIR": str(remote_tmp)}
    connection.config.run.in_stream = False  # pytest owns this process's stdin
    with connection:
        made = Path(remote_tempdir(connection))

    said = capsys.readouterr().out.splitlines()
    assert said == [
        f"remote: removed a stale transit folder {left} left by an interrupted transfer"
    ]
    assert sorted(remote_tmp.iterdir()) == sorted([*kept, made])
    assert (elsewhere / TRANSIT_MARKER).is_file()


@needs_sshd
def test_a_transit_folder_is_private_and_marked(sshd, tmp_path):
    """What the clean-up relies on, over a real connection: the marker."""
    connection = Connection("remote", config=Config(runtime_ssh_path=str(sshd.ssh_config)))
    connection.config.run.env = {"TMPDIR": str(tmp_path)}
    connection.config.run.in_stream = False  # pytest owns this process's stdin
    with connection:
        folder = Path(remote_tempdir(connection))
    assert folder.parent == tmp_path
    assert folder.name.startswith("diskette.") and len(folder.name) == 15
    assert sorted(p.name for p in folder.iterdir()) == [TRANSIT_MARKER]
    assert folder.stat().st_mode & 0o777 == 0o700


# The host's output is untrusted; a host protects itself.


@needs_sshd
@pytest.mark.subprocess
def test_a_hostile_host_cannot_replace_the_laptops_code(local, remote):
    """The host's archive carries its 'project' folder as a storage; the
    laptop declares only var/media, so the pull is refused before anything
    is dropped, and the laptop's own code stays its own."""
    add_settings(remote, 'DISKETTE_STORAGES = [MEDIA_ROOT, BASE_DIR / "project"]\n')
    (remote.root / "project" / "evil.py").write_text("raise SystemExit('pwned')\n")
    before, laptop = local.fingerprint(), files(local.root)

    result = fab(local, "-H", "remote", "pull-snapshot", "--yes", check=False)

    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "cannot be loaded: the archive holds storage 'project', which DISKETTE_STORAGES "
            "does not declare here (declared: 'var/media'): declare it, or load with "
            "--no-storages"
        )
    )
    assert local.fingerprint() == before
    assert {f for f in files(local.root) if "diskette-snapshots" not in f} == {
        f for f in laptop if "diskette-snapshots" not in f
    }
    assert not (local.root / "project" / "evil.py").exists()


@needs_sshd
@pytest.mark.subprocess
def test_a_host_that_protects_itself_refuses_a_forced_push(local, remote, remote_tmp):
    """DISKETTE_PROTECTED in the host's settings: --force and --override-protection
    from a laptop, which pass DEBUG's guard and the laptop's list, do not pass the
    host's own (no task sends the flag to the host)."""
    add_settings(remote, "DISKETTE_PROTECTED = True\n")
    local.manage("diskette_dump", "--destination", str(local.root / "out"))
    before, remote_files = remote.fingerprint(), files(remote.root)

    result = fab(
        local,
        "-H",
        "remote",
        "push-snapshot",
        "out/diskette_data_storages.tar.gz",
        "--yes",
        "--force",
        "--override-protection",
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "remote: this project sets DISKETTE_PROTECTED, so diskette will not reset its database, "
        "whatever a push asks; on this host, --override-protection passes the guard"
    )
    assert remote.fingerprint() == before
    assert files(remote.root) == remote_files
    assert list(remote_tmp.iterdir()) == []  # refused before anything was sent


# A push asks first, naming the host; the guards have a flag each.


@needs_sshd
@pytest.mark.subprocess
def test_a_push_asks_before_it_sends_anything(local, remote, remote_tmp):
    local.manage("diskette_dump", "--destination", str(local.root / "out"))
    before, remote_files = remote.fingerprint(), files(remote.root)

    result = fab(
        local,
        "-H",
        "staging",
        "push-snapshot",
        "out/diskette_data_storages.tar.gz",
        check=False,
    )

    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("refusing without confirmation (Drop the ")
    assert line.endswith(
        " on staging and load out/diskette_data_storages.tar.gz into it?): no terminal "
        "to ask on; pass --yes to confirm from a script"
    )
    assert "Uploaded" not in result.stdout
    assert list(remote_tmp.iterdir()) == []  # not even a temporary folder
    assert remote.fingerprint() == before
    assert files(remote.root) == remote_files


@needs_sshd
@pytest.mark.subprocess
def test_override_protection_passes_the_protected_list_and_force_does_not(
    local, remote, remote_tmp
):
    local.manage("diskette_dump", "--destination", str(local.root / "out"))
    wanted, before = local.fingerprint(), remote.fingerprint()
    push = ["-H", "prod", "push-snapshot", "out/diskette_data_storages.tar.gz", "--yes"]

    forced = fab(local, *push, "--force", check=False)
    assert forced.returncode == 1
    assert forced.stderr.strip().splitlines()[-1] == (
        "prod is in diskette.protected_hosts: refusing to push there "
        "(add --override-protection if you mean it)"
    )
    assert remote.fingerprint() == before

    fab(local, *push, "--override-protection")
    assert remote.fingerprint() == wanted
    assert list(remote_tmp.iterdir()) == []


@needs_sshd
@pytest.mark.parametrize(
    ("refused", "cipher"),
    [((), "aes128-gcm@openssh.com"), (GCM, "aes128-ctr")],
    ids=["gcm", "server-without-gcm"],
)
def test_the_connection_prefers_aes_gcm(sshd, refused, cipher):
    """AES-GCM halves the CPU a download costs this side; a server without it
    (played here by this side refusing it) still gets a connection."""
    connection = Connection(
        "remote",
        config=Config(runtime_ssh_path=str(sshd.ssh_config)),
        connect_kwargs={"disabled_algorithms": {"ciphers": list(refused)}},
    )
    connection.config.run.in_stream = False  # pytest owns this process's stdin
    with connection:
        ssh_connect(connection)
        assert connection.transport.remote_cipher == cipher
        assert connection.transport.local_cipher == cipher
        assert connection.run("echo reached", hide=True).stdout == "reached\n"


@needs_sshd
def test_a_long_download_asks_for_no_new_keys(sshd, tmp_path, monkeypatch, caplog):
    """Paramiko's own key renewal, every 512 MB, can stall a closing channel
    30 s and then fail (paramiko#822): diskette's connections leave it to
    the server. Here Paramiko's threshold is lowered to 64 KB, as though the
    download were ten thousand times longer."""
    monkeypatch.setattr(Packetizer, "REKEY_BYTES", 64 * 1024)
    served = tmp_path / "served.bin"
    served.write_bytes(os.urandom(4 * 1024 * 1024))
    connection = Connection("remote", config=Config(runtime_ssh_path=str(sshd.ssh_config)))
    connection.config.run.in_stream = False  # pytest owns this process's stdin
    caplog.set_level(logging.DEBUG, logger="paramiko.transport")
    with connection:
        ssh_connect(connection)
        digest = hashlib.sha256(served.read_bytes()).hexdigest()
        download(connection, str(served), tmp_path / "copy.bin", digest)
    assert (tmp_path / "copy.bin").read_bytes() == served.read_bytes()
    assert not [r for r in caplog.records if "Rekeying" in r.getMessage()]
