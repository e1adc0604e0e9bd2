"""The Fabric tasks, through the real ``fab`` and a real OpenSSH ``sshd``.

One ``sshd`` serves the session on 127.0.0.1 (``tests/sshd.py``). Each test
has a "remote" copy of the sandbox, in a folder whose path holds a space and
a quote, and a "local" copy whose ``fabfile.py`` is the one-liner users write
and whose ``fabric.yaml`` says where the remote project is. Hosts are named
by ``ssh_config`` aliases (``remote``, ``staging``, ``prod``), as users do.
Both copies come seeded from the session's templates (``seeded`` in
``tests/conftest.py``); what diskette leaves on the "remote" host is read in
the sshd sessions' own ``TMPDIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diskette.archive import read_manifest
from diskette.tasks import restore_steps
from tests.databases import ON_SERVER, server_settings_body
from tests.projects import BIN, SandboxCopy, wait_until_none_run
from tests.sshd import SLOW_ALIAS, SSHServer, find_sshd, start_sshd

KILLAT = Path(__file__).with_name("killat.py")

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(
        find_sshd() is None, reason="needs OpenSSH's sshd (.ci/run installs it)"
    ),
]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SSHServer:
    server = start_sshd(tmp_path_factory.mktemp("sshd") / "server")
    yield server
    server.stop()


@pytest.fixture
def remote(tmp_path, seeded) -> SandboxCopy:
    """The server's project, under a path with a space and a quote."""
    return seeded.copy(tmp_path / "srv" / "it's the remote" / "site", books=12, seed=1)


@pytest.fixture
def local(tmp_path, remote, sshd, seeded) -> SandboxCopy:
    """A developer's checkout whose fabfile is ``from diskette.remote import ns``."""
    copy = seeded.copy(tmp_path / "laptop", books=5, seed=2)
    (copy.root / "fabfile.py").write_text("from diskette.remote import ns\n")
    settings = f"  settings: {copy.settings}\n" if ON_SERVER else ""
    remote_settings = f"    settings: {remote.settings}\n" if ON_SERVER else ""
    (copy.root / "fabric.yaml").write_text(
        "diskette:\n"
        f"{settings}"
        "  protected_hosts: [prod]\n"
        "  remote:\n"
        f"    project_dir: {remote.root}\n"
        f"    python: {sys.executable}\n"
        f"{remote_settings}"
    )
    copy.sshd = sshd
    return copy


def fab(local: SandboxCopy, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return local.run(str(BIN / "fab"), "-S", str(local.sshd.ssh_config), *args, check=check)


def leftovers(local: SandboxCopy) -> list[str]:
    """Temporary folders diskette left on the "remote" host: in the sessions'
    own ``TMPDIR`` (``tests/sshd.py``), which nothing else on the machine uses."""
    return sorted(p.name for p in local.sshd.tmpdir.iterdir())


def loaded_rows(answer: dict) -> dict[str, int]:
    """Rows per model a load's ``--json`` answer says it loaded, models of
    no row left out."""
    loaded: dict[str, int] = {}
    for objects in answer["objects"].values():
        for label, count in objects.items():
            loaded[label] = loaded.get(label, 0) + count
    return {label: count for label, count in loaded.items() if count}


def planned_rows(rows: dict[str, dict]) -> dict[str, int]:
    """Rows per model a plan says there will be, models of no row left out
    (those the archive lacks, which the reset empties: 0 after)."""
    return {label: change["after"] for label, change in rows.items() if change["after"]}


def files(root: Path) -> set[str]:
    """Everything below ``root`` but Python's bytecode cache."""
    return {
        str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts
    }


def add_settings(copy: SandboxCopy, lines: str) -> None:
    """Append ``lines`` to the settings module ``copy`` runs with."""
    module = copy.root / (copy.settings.replace(".", "/") + ".py")
    module.write_text(module.read_text() + lines)


def wrapper_python(folder: Path, name: str, pattern: str, action: str) -> Path:
    """An interpreter running the shell ``action`` for command lines that
    match the ``case`` ``pattern``, the suite's Python for the others."""
    python = folder / name
    python.write_text(
        "#!/bin/sh\n"
        f'case " $* " in {pattern}) {action};; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    return python


def run_here_with(local: SandboxCopy, python: Path) -> None:
    """Run the laptop's own commands with ``python`` (``diskette.python``)."""
    yaml = local.root / "fabric.yaml"
    yaml.write_text(
        yaml.read_text().replace("diskette:\n", f"diskette:\n  python: {python}\n", 1)
    )


def test_pull_brings_the_remote_data_and_media_and_leaves_nothing_there(local, remote):
    wanted = remote.fingerprint()
    assert local.fingerprint() != wanted
    remote_files, temp = files(remote.root), leftovers(local)

    result = fab(local, "-H", "remote", "pull-snapshot", "--yes")

    assert local.fingerprint() == wanted
    assert remote.fingerprint() == wanted
    assert files(remote.root) == remote_files
    assert leftovers(local) == temp
    assert re.search(
        r"^Streamed remote's archive into the load here \(.+; the host's sha256 "
        r"[0-9a-f]{64}\)$",
        result.stdout,
        re.M,
    )
    assert not list(
        (local.root / "var" / "diskette-snapshots").iterdir()
    )  # fed to the load as it came: no file, not even a spool


def test_the_safety_snapshot_taken_while_the_host_dumps_puts_the_laptop_back(local, remote):
    before = local.fingerprint()

    fab(local, "-H", "remote", "pull-snapshot", "--yes")

    (snapshot,) = (local.root / "var" / "diskette-backups").glob("before-reset_*.tar.gz")
    for step in restore_steps(str(snapshot), force=False):
        local.manage(*step)
    assert local.fingerprint() == before


def test_a_pull_refused_here_ends_the_dump_it_started_on_the_host(local, remote, tmp_path):
    """The host's dump starts while this side checks itself, and waits for
    the list of media here: a pull refused here ends it, having sent nothing
    and left nothing on the host. (The check is slowed down here, so that
    the dump has surely started when it refuses.)"""
    log = tmp_path / "host-dumps.log"
    host_python = wrapper_python(
        tmp_path,
        "host-python",
        "*diskette_dump*",
        f'echo started >> {log}; {sys.executable} "$@"; status=$?; '
        f'echo "ended $status" >> {log}; exit $status',
    )
    waits_for_the_dump = (
        f"for _ in $(seq 300); do grep -qs started {log} && break; sleep 0.1; done"
    )
    run_here_with(
        local, wrapper_python(tmp_path, "slow", "*diskette_reset*", waits_for_the_dump)
    )
    add_settings(local, "DEBUG = False\n")
    before, host_before = local.fingerprint(), remote.fingerprint()

    result = fab(
        local,
        "-H",
        "remote",
        "pull-snapshot",
        "--yes",
        "--python",
        str(host_python),
        check=False,
    )

    assert result.returncode == 1
    assert "DEBUG is False" in result.stderr.strip().splitlines()[-1]
    assert log.exists(), "the host's dump was never started"
    deadline = time.monotonic() + 15
    while "ended" not in log.read_text():
        assert time.monotonic() < deadline, "the host's dump is still running"
        time.sleep(0.1)
    started, ended = log.read_text().splitlines()
    assert started == "started"
    assert ended != "ended 0"  # it refused an input that ended empty, or was hung up on
    assert local.fingerprint() == before
    assert remote.fingerprint() == host_before
    assert leftovers(local) == []


def test_a_pull_that_fails_on_the_host_leaves_no_snapshot_here(local, remote):
    """The snapshot taken while the host dumps goes when the dump fails:
    nothing here was changed."""
    add_settings(remote, "DISKETTE_ANONYMIZE_REQUIRED = True\n")
    before = local.fingerprint()

    failed = fab(local, "-H", "remote", "pull-snapshot", "--yes", check=False)

    assert failed.returncode == 1
    assert "DISKETTE_ANONYMIZE_REQUIRED is set but no rule is" in failed.stderr
    assert local.fingerprint() == before
    assert not (local.root / "var" / "diskette-backups").exists()


def test_a_host_whose_diskette_cannot_stream_is_pulled_through_a_file(
    local, remote, tmp_path
):
    """A host running a diskette older than ``diskette_dump --to-stdout``
    (argparse refuses the option) dumps to a transit folder, downloaded and
    removed as before."""
    older = wrapper_python(
        tmp_path,
        "older-python",
        '*" --to-stdout "*',
        "echo 'manage.py diskette_dump: error: unrecognized arguments: --to-stdout' >&2; "
        "exit 2",
    )
    wanted, temp = remote.fingerprint(), leftovers(local)

    fab(local, "-H", "remote", "pull-snapshot", "--yes", "--python", str(older))

    assert local.fingerprint() == wanted
    assert leftovers(local) == temp


def test_a_laptop_whose_diskette_cannot_list_in_its_check_lists_on_its_own(
    local, remote, tmp_path
):
    """A diskette here older than ``diskette_reset --media-list`` (the
    interpreter of diskette.python may be another one's): the media are
    listed by ``diskette_index`` as before, and the second pull is a delta."""
    older = wrapper_python(
        tmp_path,
        "older-python",
        '*" --media-list "*',
        "echo 'manage.py diskette_reset: error: unrecognized arguments: --media-list' "
        ">&2; exit 2",
    )
    run_here_with(local, older)
    fab(local, "-H", "remote", "pull-snapshot", "--yes")

    second = fab(local, "-H", "remote", "pull-snapshot", "--yes", "--json")

    assert json.loads(second.stdout)["kept"] > 0
    assert "Could not list" not in second.stderr
    assert local.fingerprint() == remote.fingerprint()


def test_a_host_that_prints_as_it_starts_fails_the_pull_in_one_line(local, remote):
    """Bytes before the archive's own (a ``print`` in the settings) cannot
    be told from it: the size and sha256 the dump answers catch them."""
    add_settings(remote, "print('settings loaded')\n")
    before = local.fingerprint()

    failed = fab(local, "-H", "remote", "pull-snapshot", "--yes", check=False)

    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("remote: received ")
    assert message.endswith(
        ": 16 bytes more than the archive's: the project prints on the standard "
        "output (as its settings load, or as it exits); remove that print, or pull "
        "with --keep-remote"
    )
    assert local.fingerprint() == before
    assert list((local.root / "var" / "diskette-snapshots").iterdir()) == []
    assert not (local.root / "var" / "diskette-backups").exists()


def test_a_pull_after_a_killed_load_lists_the_media_it_put_back(local, remote, tmp_path):
    """A load here was killed once it had swapped the host's media in: the
    pull's check of the database undoes it first, then lists the media. A
    list that read the swapped-in files (the host's very ones) would have
    the host keep files this side no longer has."""
    (remote.root / "var" / "media" / "only-there.bin").write_bytes(os.urandom(65536))
    remote.manage("diskette_dump", "--destination", str(tmp_path))
    killed = local.run(
        sys.executable,
        str(KILLAT),
        "swapped",
        "manage.py",
        "diskette_load",
        str(tmp_path / "diskette_data_storages.tar.gz"),
        "--keep",
        "--overwrite",
        check=False,
    )
    assert killed.returncode == -9, killed.stderr

    result = fab(local, "-H", "remote", "pull-snapshot", "--yes")

    assert "undid a load interrupted before its data committed" in result.stderr
    assert local.fingerprint() == remote.fingerprint()


def test_keep_remote_leaves_the_archive_on_the_host(local, remote):
    fab(
        local,
        "-H",
        "remote",
        "pull-snapshot",
        "--no-load",
        "--keep-remote",
        "--no-storages",
    )
    kept = remote.root / "var" / "diskette_data.tar.gz"  # the host's DISKETTE_DUMP_PATH
    from diskette.files import file_sha256

    (pulled,) = (local.root / "var" / "diskette-snapshots").iterdir()
    assert file_sha256(kept) == file_sha256(pulled)


def test_pull_through_loaddata(local, remote):
    """``--loaddata`` is accepted and passed on: the same data, loaded with loaddata."""
    wanted = remote.fingerprint()
    result = fab(
        local, "-H", "remote", "pull-snapshot", "--yes", "--loaddata", "--no-backup"
    )
    assert local.fingerprint() == wanted
    assert "Traceback" not in result.stderr


def test_pull_json_is_one_object_naming_what_was_pulled_and_loaded(local, remote):
    """``--json``: the standard output is one object; messages and the host's
    relayed output go to the standard error."""
    wanted = remote.fingerprint()
    result = fab(local, "-H", "remote", "pull-snapshot", "--yes", "--json")
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    answer = json.loads(lines[0])
    assert answer["host"] == "remote"
    assert answer["downloaded"] is None  # fed to the load as it came
    assert answer["restored"] == ["var/media"] and answer["loaded"]
    assert answer["snapshot"]  # the laptop's database held data
    assert local.fingerprint() == wanted
    assert "Streamed remote's archive into the load here" in result.stderr


def test_pull_no_load_only_downloads(local, remote):
    before = local.fingerprint()
    fab(local, "-H", "remote", "pull-snapshot", "--no-load", "--no-storages")
    (archive,) = (local.root / "var" / "diskette-snapshots").iterdir()
    assert archive.name == "remote_diskette_data.tar.gz"
    assert local.fingerprint() == before


def test_remote_dump_prints_path_and_checksum_on_every_host(local, remote):
    result = fab(local, "-H", "remote,staging", "remote-dump", "--no-storages")
    archive = remote.root / "var" / "diskette_data.tar.gz"
    lines = re.findall(
        r"^(remote|staging):(.+) \(sha256 ([0-9a-f]{64})\)$", result.stdout, re.M
    )
    assert [(host, path) for host, path, _ in lines] == [
        ("remote", str(archive)),
        ("staging", str(archive)),
    ]
    from diskette.files import file_sha256

    assert lines[-1][2] == file_sha256(archive)


def test_push_loads_the_archive_on_the_remote(local, remote):
    local.manage("diskette_dump", "--destination", str(local.root / "out"))
    wanted = local.fingerprint()
    temp = leftovers(local)

    result = fab(
        local,
        "-H",
        "staging",
        "push-snapshot",
        "out/diskette_data_storages.tar.gz",
        "--yes",
    )

    assert remote.fingerprint() == wanted
    uploaded = r"^Uploaded out/(\S+) to staging:/\S+/\1 \(sha256 [0-9a-f]{64}\)$"
    assert re.search(uploaded, result.stdout, re.M)
    assert leftovers(local) == temp
    assert list((remote.root / "var" / "diskette-backups").glob("before-reset_*"))
    assert (local.root / "out" / "diskette_data_storages.tar.gz").exists()


def test_a_second_push_sends_only_what_the_host_lacks(local, remote):
    local.manage("diskette_dump", "--destination", str(local.root / "out"))
    archive = local.root / "out" / "diskette_data_storages.tar.gz"
    push = ("-H", "staging", "push-snapshot", "out/diskette_data_storages.tar.gz", "--yes")
    first = json.loads(fab(local, *push, "--json").stdout)  # the host has other media
    media = {
        n: m
        for n, m in read_manifest(archive)["members"].items()
        if n.startswith("var/media/") and "size" in m
    }
    remote.manage(
        "shell", "-c", "from demo.models import Tag; Tag.objects.create(name='on the host')"
    )
    temp = leftovers(local)

    second = fab(local, *push, "--json")
    answer = json.loads(second.stdout)

    assert remote.fingerprint() == local.fingerprint()  # the tag is gone, the media whole
    assert answer["kept"] == len(media) > first["kept"]
    assert answer["kept_bytes"] == sum(m["size"] for m in media.values())
    assert answer["size"] < archive.stat().st_size == first["size"]
    assert "were not sent: staging has them" in second.stderr
    assert leftovers(local) == temp
    assert sorted(p.name for p in archive.parent.iterdir()) == [
        archive.name
    ]  # no work left
    full = json.loads(fab(local, *push, "--json", "--full").stdout)
    assert full["kept"] == 0 and full["size"] == archive.stat().st_size


def test_a_dry_run_push_plans_what_the_push_then_does_and_changes_nothing(local, remote):
    local.manage("diskette_dump", "--destination", str(local.root / "out"))
    archive = "out/diskette_data_storages.tar.gz"
    media = remote.root / "var" / "media"
    on_host = {
        p.relative_to(media).as_posix(): p.read_bytes()
        for p in media.rglob("*")
        if p.is_file()
    }
    shipped = {
        n.removeprefix("var/media/"): m
        for n, m in read_manifest(local.root / archive)["members"].items()
        if n.startswith("var/media/") and "size" in m
    }
    before, remote_files, local_files = (
        remote.fingerprint(),
        files(remote.root),
        files(local.root),
    )
    temp = leftovers(local)

    answer = json.loads(
        fab(local, "-H", "staging", "push-snapshot", archive, "--dry-run", "--json").stdout
    )

    assert remote.fingerprint() == before and files(remote.root) == remote_files
    assert files(local.root) == local_files and leftovers(local) == temp
    plan = answer["plan"]
    (change,) = plan["storages"]
    same = {
        n
        for n, m in shipped.items()
        if n in on_host
        and len(on_host[n]) == m["size"]
        and hashlib.sha256(on_host[n]).hexdigest() == m["sha256"]
    }
    assert change["added"] == len(shipped.keys() - on_host.keys())
    assert change["changed"] == len(shipped.keys() & on_host.keys()) - len(same)
    assert change["removed"] == len(on_host.keys() - shipped.keys())
    rows = {m["model"]: m for m in plan["models"]}
    assert (rows["demo.book"]["now"], rows["demo.book"]["after"]) == (
        12,
        5,
    )  # host's, laptop's

    done = json.loads(
        fab(local, "-H", "staging", "push-snapshot", archive, "--yes", "--json").stdout
    )
    assert loaded_rows(done) == planned_rows(rows)
    assert remote.fingerprint() == local.fingerprint()


def test_a_protected_host_refuses_a_push_and_stays_untouched(local, remote):
    local.manage("diskette_dump", "--destination", str(local.root / "out"))
    before, remote_files, temp = remote.fingerprint(), files(remote.root), leftovers(local)

    result = fab(
        local,
        "-H",
        "prod",
        "push-snapshot",
        "out/diskette_data_storages.tar.gz",
        "--yes",
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "prod is in diskette.protected_hosts: refusing to push there "
        "(add --override-protection if you mean it)"
    )
    assert remote.fingerprint() == before
    assert files(remote.root) == remote_files
    assert leftovers(local) == temp


def start_slow_pull(local: SandboxCopy, sshd: SSHServer, *options: str) -> subprocess.Popen:
    """``fab pull-snapshot --yes`` through the throttled link: 4 MiB of
    incompressible media in the host's folder make a transfer of 8 s."""
    env = {k: v for k, v in local.env.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.Popen(
        [
            str(BIN / "fab"),
            "-S",
            str(sshd.ssh_config),
            "-H",
            SLOW_ALIAS,  # the same sshd through a throttled link: a long download
            "pull-snapshot",
            "--yes",
            *options,
        ],
        cwd=local.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_staging(local: SandboxCopy, process: subprocess.Popen) -> bool:
    """Wait until the load here stages the archive's media as they arrive
    (its work folder in the media folder); ``False`` if the pull ended first."""
    media = local.root / "var" / "media"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(p.name.startswith(".diskette-load-") for p in media.iterdir()):
            return True
        time.sleep(0.02)
    return False


def test_a_connection_cut_mid_download_changes_nothing_and_a_rerun_works(
    local, remote, sshd
):
    big = remote.root / "var" / "media" / "video.bin"
    big.write_bytes(os.urandom(4 * 1024 * 1024))  # incompressible: 8 s through "slow"
    wanted, before, temp = remote.fingerprint(), local.fingerprint(), leftovers(local)
    downloads = local.root / "var" / "diskette-snapshots"
    # No snapshot to wait for: the load stages from the first bytes.
    process = start_slow_pull(local, sshd, "--no-backup")
    if wait_for_staging(local, process):
        sshd.cut_connections()
    _, stderr = process.communicate(timeout=120)

    assert process.returncode != 0, (
        "the download finished before the cut: make the file larger or SLOW_RATE lower"
    )
    assert "failed" in stderr.strip().splitlines()[-1]
    wait_until_none_run(local.root, "diskette_load")
    assert local.fingerprint() == before
    assert list(downloads.iterdir()) == []  # no file that looks complete, no spool
    assert not [
        p for p in (local.root / "var" / "media").iterdir() if p.name.startswith(".")
    ]
    assert leftovers(local) == temp

    fab(local, "-H", "remote", "pull-snapshot", "--yes")
    assert local.fingerprint() == wanted
    assert (local.root / "var" / "media" / "video.bin").read_bytes() == big.read_bytes()


def test_a_pull_killed_while_the_load_stages_changes_nothing_here(local, remote, sshd):
    """``kill -9`` of ``fab`` while its load stages the archive (the host's
    dump is done, the bytes still coming through the slow link): the load's
    input ends short, so it refuses the cut archive, and nothing was reset."""
    (remote.root / "var" / "media" / "video.bin").write_bytes(os.urandom(4 * 2**20))
    before = local.fingerprint()
    process = start_slow_pull(local, sshd, "--no-backup")
    staging = wait_for_staging(local, process)
    process.kill()  # kill -9: no clean-up of fab's runs
    process.communicate(timeout=60)

    assert staging, "the pull ended before the kill: make the file larger"
    wait_until_none_run(local.root, "diskette_load")
    assert local.fingerprint() == before
    assert not [
        p for p in (local.root / "var" / "media").iterdir() if p.name.startswith(".")
    ]

    fab(local, "-H", "remote", "pull-snapshot", "--yes")  # nothing in the way
    assert local.fingerprint() == remote.fingerprint()


def test_a_safety_snapshot_that_fails_keeps_the_streamed_load_from_resetting(local, remote):
    (local.root / "var" / "diskette-backups").write_text("a file where the folder goes")
    before = local.fingerprint()

    failed = fab(local, "-H", "remote", "pull-snapshot", "--yes", check=False)

    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("could not save a safety snapshot first: ")
    assert message.endswith("(pass --no-backup to go on without one)")
    wait_until_none_run(local.root, "diskette_load")
    assert local.fingerprint() == before


def test_a_load_that_stops_mid_stream_changes_nothing_and_says_why(local, remote, tmp_path):
    """The load here cannot write a file of the archive (a size limit, as a
    full disk would): it stops before the end, and the pull says so."""
    (remote.root / "var" / "media" / "video.bin").write_bytes(os.urandom(2 * 2**20))
    limited = wrapper_python(
        tmp_path, "limited-python", '*" diskette_load - "*', 'trap "" XFSZ; ulimit -f 1024'
    )
    run_here_with(local, limited)
    before = local.fingerprint()

    failed = fab(local, "-H", "remote", "pull-snapshot", "--yes", check=False)

    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    # Stopped while bytes came, or at the last ones (all of them were
    # waiting for the snapshot): either way before any reset.
    assert message.startswith(
        (
            "the load here stopped before remote's archive ended: ",
            "remote's archive cannot be loaded: ",
        )
    ), message
    assert "File too large" in message
    assert local.fingerprint() == before
    assert not (local.root / "var" / "diskette-backups").exists()


def test_ctrl_c_once_the_load_reset_gets_the_safety_snapshot_put_back(
    local, remote, tmp_path
):
    """Ctrl-C on a terminal reaches ``fab`` (the load, in a session of its
    own, does not): the task hands it on to the load, waits for its answer,
    which says it reset, and puts the snapshot back. Were it not handed on,
    the load would go on loading the host's data."""
    interrupted = wrapper_python(
        tmp_path,
        "interrupted-python",
        '*" diskette_load - "*',
        f'exec {sys.executable} {KILLAT} ctrl-c-after-reset "$@"',
    )
    run_here_with(local, interrupted)
    before = local.fingerprint()

    # Ctrl-C as on a terminal: a suite run in the background (CI) ignores it,
    # and so would fab and its load.
    failed = subprocess.run(
        [str(BIN / "fab"), "-S", str(local.sshd.ssh_config), "-H", "remote"]
        + ["pull-snapshot", "--yes"],
        cwd=local.root,
        env=local.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    assert failed.returncode == 1
    assert "Interrupted: waiting for the load here to stop" in failed.stderr
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("loading remote's archive failed: "), message
    assert "your data and media were put back from the safety snapshot" in message
    assert local.fingerprint() == before


def test_a_host_printing_after_its_archive_never_lets_the_load_reset(local, remote):
    """The bytes the load got may make a whole archive when the host prints
    after it: the pull fails on the size, and the load, cut short with a
    byte no archive ends with, refuses it."""
    add_settings(  # a moment after the archive: a block of its own
        remote,
        "import atexit, sys, time\n"
        "atexit.register(lambda: (time.sleep(0.5), sys.stdout.write('bye')))\n",
    )
    before = local.fingerprint()

    # No snapshot: the load is given every byte as it comes.
    failed = fab(
        local, "-H", "remote", "pull-snapshot", "--yes", "--no-backup", check=False
    )

    assert failed.returncode == 1
    assert "received " in failed.stderr.strip().splitlines()[-1]
    wait_until_none_run(local.root, "diskette_load")
    assert local.fingerprint() == before


def test_an_archive_the_laptop_refuses_changes_nothing_and_leaves_no_snapshot(
    local, remote
):
    """Refused once the whole archive is in (a raw archive where the laptop
    requires anonymized ones): the load had not reset yet."""
    add_settings(local, "DISKETTE_LOAD_REQUIRE_ANONYMIZED = True\n")
    before = local.fingerprint()

    failed = fab(local, "-H", "remote", "pull-snapshot", "--yes", check=False)

    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("remote's archive cannot be loaded: ")
    assert "DISKETTE_LOAD_REQUIRE_ANONYMIZED" in message
    assert local.fingerprint() == before
    assert not (local.root / "var" / "diskette-backups").exists()


def test_remote_python_defaults_to_the_project_venv(local, remote):
    venv_python = remote.root / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    # The test interpreter, as the project's venv (a symlink would lose its venv).
    venv_python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    venv_python.chmod(0o755)
    yaml = (local.root / "fabric.yaml").read_text()
    (local.root / "fabric.yaml").write_text(
        yaml.replace(f"    python: {sys.executable}\n", "")
    )
    result = fab(local, "-H", "remote", "remote-dump", "--no-storages")
    assert re.search(r"^remote:/.+ \(sha256 [0-9a-f]{64}\)$", result.stdout, re.M)


def test_flags_override_the_configuration(local, remote, tmp_path):
    (local.root / "fabric.yaml").write_text(
        (local.root / "fabric.yaml").read_text().replace(str(remote.root), "/nowhere")
    )
    result = fab(
        local,
        "-H",
        "remote",
        "remote-dump",
        "--no-storages",
        "--project-dir",
        str(remote.root),
        "--python",
        sys.executable,
    )
    assert re.search(r"^remote:/.+ \(sha256 [0-9a-f]{64}\)$", result.stdout, re.M)


def test_tasks_without_a_host_or_a_project_refuse(local):
    result = fab(local, "pull-snapshot", "--yes", check=False)
    assert result.returncode == 1
    assert "pull-snapshot needs a host: fab -H HOST pull-snapshot" in result.stderr
    (local.root / "fabric.yaml").write_text("diskette:\n  remote:\n    python: python3\n")
    result = fab(local, "-H", "remote", "remote-dump", check=False)
    assert result.returncode == 1
    assert (
        "where is the project on remote? Set diskette.remote.project_dir" in result.stderr
    )


def test_onboarding_script_takes_a_fresh_clone_to_the_remote_data(tmp_path, remote, sshd):
    """scripts/onboard.sh on a checkout with no database and no media yet."""
    clone = SandboxCopy.create(tmp_path / "new-developer")
    if ON_SERVER:  # a database the server does not have yet
        clone.use_settings(clone.write_settings("settings_db", server_settings_body()))
    (clone.root / "fabfile.py").write_text("from diskette.remote import ns\n")
    (clone.root / "fabric.yaml").write_text(
        f"ssh_config_path: {sshd.ssh_config}\n"
        "diskette:\n"
        + (f"  settings: {clone.settings}\n" if ON_SERVER else "")
        + f"  remote:\n    project_dir: {remote.root}\n    python: {sys.executable}\n"
        + (f"    settings: {remote.settings}\n" if ON_SERVER else "")
    )
    clone.as_fresh_clone("fab")  # the venv the script would make: this one

    result = clone.run("scripts/onboard.sh", "remote")

    assert result.stdout.strip().splitlines()[-1] == (
        "=== Done: this checkout now has the data and media of remote ==="
    )
    assert clone.fingerprint() == remote.fingerprint()


def test_pull_brings_data_anonymized_on_the_host(local, remote):
    """The host's settings hold the rules and the secret: the dump run there
    replaces the users' personal data before the archive is written, so the
    laptop never receives it."""
    usernames = (
        "import json; from django.contrib.auth.models import User; "
        "print(json.dumps(list(User.objects.values_list('username', flat=True))))"
    )
    remote.use_settings(
        remote.write_settings(
            "settings_anon",
            remote.database
            + 'DISKETTE_ANONYMIZE = {"auth.User": {"username": "user_name", '
            '"email": "email", "password": "password"}}\n'
            'DISKETTE_ANONYMIZE_SECRET = "the-production-secret"\n',
        )
    )
    fabric = (local.root / "fabric.yaml").read_text()
    (local.root / "fabric.yaml").write_text(
        re.sub(r"    settings: .*\n", "", fabric).replace(
            "  remote:\n", f"  remote:\n    settings: {remote.settings}\n"
        )
    )
    originals = json.loads(remote.manage("shell", "-c", usernames).stdout.splitlines()[-1])

    result = fab(local, "-H", "remote", "pull-snapshot", "--yes")

    assert "anonymized on the host" in result.stdout
    pulled = json.loads(local.manage("shell", "-c", usernames).stdout.splitlines()[-1])
    assert len(pulled) == len(originals) and not set(pulled) & set(originals)


def change_remote_media(remote: SandboxCopy) -> tuple[set[str], int]:
    """Change, add and remove one media file each on the host, and a row.

    :returns: the files a delta must carry (by path in the archive), and how
        many of the host's files it keeps.
    """
    media = remote.root / "var" / "media"
    covers = sorted((media / "covers").iterdir())
    covers[0].write_bytes(b"changed on the host")
    (media / "covers" / "added.bin").write_bytes(b"added on the host")
    covers[1].unlink()
    remote.manage(
        "shell", "-c", "from demo.models import Tag; Tag.objects.create(name='new')"
    )
    sent = {f"var/media/covers/{covers[0].name}", "var/media/covers/added.bin"}
    archived = [
        p
        for p in media.rglob("*")
        if p.is_file()
        and not p.relative_to(media).as_posix().startswith(("cache/", "public/thumbnails/"))
    ]
    return sent, len(archived) - len(sent)


def test_a_second_pull_sends_only_the_media_that_changed(local, remote):
    first = json.loads(
        fab(local, "-H", "remote", "pull-snapshot", "--yes", "--json").stdout
    )
    assert first["kept"] == 0  # nothing here was the host's yet
    _, kept = change_remote_media(remote)
    wanted = remote.fingerprint()
    remote_files, temp = files(remote.root), leftovers(local)

    second = fab(local, "-H", "remote", "pull-snapshot", "--yes", "--json")
    answer = json.loads(second.stdout)

    assert local.fingerprint() == wanted
    assert answer["kept"] == kept > 0
    assert answer["size"] < first["size"]
    assert f"{kept} files" in second.stderr and "were not sent" in second.stderr
    assert files(remote.root) == remote_files  # the host's tree as it was
    assert leftovers(local) == temp


@pytest.mark.parametrize("flag", ["--full", "--keep-remote"])
def test_full_and_keep_remote_pull_every_media_file(local, remote, flag):
    """``--keep-remote`` too: an archive left on the host must load anywhere."""
    fab(local, "-H", "remote", "pull-snapshot", "--yes")
    answer = json.loads(
        fab(local, "-H", "remote", "pull-snapshot", "--yes", "--json", flag).stdout
    )
    assert answer["kept"] == 0
    assert local.fingerprint() == remote.fingerprint()
    if flag == "--keep-remote":
        kept = read_manifest(remote.root / "var" / "diskette_data_storages.tar.gz")
        assert kept["format"] == 1 and "delta" not in kept


def test_a_dry_run_pull_plans_what_the_pull_then_does_and_changes_nothing(local, remote):
    fab(local, "-H", "remote", "pull-snapshot", "--yes")
    sent, kept = change_remote_media(remote)
    local.manage(
        "shell", "-c", "from demo.models import Book; Book.objects.first().delete()"
    )
    before, remote_before = local.fingerprint(), remote.fingerprint()
    remote_files, local_files, temp = (
        files(remote.root),
        files(local.root),
        leftovers(local),
    )

    planned = fab(local, "-H", "remote", "pull-snapshot", "--dry-run", "--json")
    shown = fab(
        local, "-H", "remote", "pull-snapshot", "--dry-run"
    )  # no --yes: asks nothing

    assert (local.fingerprint(), remote.fingerprint()) == (before, remote_before)
    assert files(remote.root) == remote_files and leftovers(local) == temp
    assert files(local.root) == local_files
    plan = json.loads(planned.stdout)["plan"]
    (media,) = plan["storages"]
    assert (media["added"], media["changed"], media["removed"], media["kept"]) == (
        1,
        1,
        1,
        kept,
    )
    assert "Dry run: nothing was changed." in shown.stdout
    rows = {m["model"]: m for m in plan["models"]}
    # The host's 12 books came with the first pull; one was deleted here since.
    assert (rows["demo.book"]["now"], rows["demo.book"]["after"]) == (11, 12)

    done = json.loads(fab(local, "-H", "remote", "pull-snapshot", "--yes", "--json").stdout)
    assert local.fingerprint() == remote_before
    assert done["kept"] == media["kept"] and done["size"] > 0
    assert loaded_rows(done) == planned_rows(rows)
