"""The registry end to end: real ``fab``, ``inv`` and ``manage.py`` over real S3 and SSH.

Production (a copy of the sandbox behind the suite's ``sshd``) keeps its
media in S3 and publishes to a registry bucket; an ops checkout runs
``fab -H remote publish-snapshot``; a developer's checkout with no SSH
access at all, and read-only keys to the registry, runs ``inv
pull-snapshot``. A publish killed in the middle of its multipart upload
leaves nothing a listing shows.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.databases import ON_SERVER, server_settings_body
from tests.projects import BIN, SandboxCopy
from tests.s3server import S3Server
from tests.sshd import SSHServer, find_sshd, start_sshd

pytestmark = pytest.mark.subprocess

KILLAT = Path(__file__).with_name("killat.py")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> SSHServer:
    if find_sshd() is None:
        pytest.skip("needs OpenSSH's sshd (.ci/run installs it)")
    server = start_sshd(tmp_path_factory.mktemp("sshd") / "server")
    yield server
    server.stop()


def media_files(root: Path) -> dict[str, bytes]:
    """The sandbox's media a dump carries (its excludes left out)."""
    media = root / "var" / "media"
    return {
        str(p.relative_to(media)): p.read_bytes()
        for p in sorted(media.rglob("*"))
        if p.is_file() and "cache" not in p.parts and "thumbnails" not in p.parts
    }


def test_a_snapshot_published_from_the_host_loads_on_a_checkout_without_ssh(
    tmp_path, seeded, sshd, s3: S3Server, bucket
):
    media_bucket = f"{bucket}-media"
    s3.create_bucket(media_bucket)
    production = seeded.copy(tmp_path / "prod site", books=12, seed=1)
    for name, content in media_files(production.root).items():  # production's S3 media
        s3.client().put_object(Bucket=media_bucket, Key=name, Body=content)
    production.use_settings(
        production.write_settings(
            "settings_s3",
            production.database
            + s3.settings_body(
                {"default": {"bucket": media_bucket}, "diskette": {"bucket": bucket}}
            )
            + 'DISKETTE_STORAGES = [{"storage": "default"}]\n',
        )
    )
    wanted = production.fingerprint()  # its data, and (var/media) the media it put in S3

    ops = tmp_path / "ops"
    ops.mkdir()
    (ops / "fabfile.py").write_text("from diskette.remote import ns\n")
    (ops / "fabric.yaml").write_text(
        f"diskette:\n  remote:\n    project_dir: {production.root}\n"
        f"    python: {sys.executable}\n    settings: {production.settings}\n"
    )
    published = SandboxCopy.at(ops).run(
        str(BIN / "fab"), "-S", str(sshd.ssh_config), "-H", "remote", "publish-snapshot"
    )
    assert "remote: published snapshot " in published.stdout
    assert not list((production.root / "var").glob("*.tar.gz"))  # removed once published
    assert not list(sshd.tmpdir.iterdir())

    laptop = seeded.copy(tmp_path / "laptop", books=5, seed=2)
    assert laptop.fingerprint() != wanted
    (laptop.root / "tasks.py").write_text("from diskette.tasks import ns\n")
    laptop.use_settings(
        laptop.write_settings(
            "settings_registry",
            laptop.database
            + s3.settings_body({"diskette": {"bucket": bucket, "keys": s3.reader}})
            + 'DISKETTE_STORAGES = [{"storage": "default"}]\n',
        )
    )
    listed = json.loads(laptop.inv("snapshots", "--json").stdout)["snapshots"]
    assert len(listed) == 1 and listed[0]["host"]

    pulled = laptop.inv("pull-snapshot", "--yes")

    assert "Loaded snapshot:latest" in pulled.stdout
    assert laptop.fingerprint() == wanted
    assert not [p for p in laptop.root.iterdir() if p.name.startswith("diskette-snapshot-")]


def test_a_publish_killed_during_its_upload_leaves_nothing_listed(
    tmp_path, seeded, s3: S3Server, bucket
):
    site = seeded.copy(tmp_path / "site", books=None)
    big = site.root / "var" / "media" / "video.bin"
    big.write_bytes(os.urandom(40 * 1024 * 1024))
    site.use_settings(
        site.write_settings(
            "settings_registry",
            site.database + s3.settings_body({"diskette": {"bucket": bucket}}),
        )
    )
    dumped = json.loads(site.manage("diskette_dump", "--no-data", "--json").stdout)

    killed = site.run(
        str(site.python),
        str(KILLAT),
        "uploading",
        "manage.py",
        "diskette_snapshots",
        "--publish",
        dumped["archive"],
        check=False,
    )

    assert killed.returncode == -9, killed.stderr
    client = s3.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # cut mid-way
    assert s3.objects(bucket) == {}  # no archive object, no index
    listing = json.loads(site.manage("diskette_snapshots", "--json").stdout)
    assert listing["snapshots"] == []

    again = json.loads(
        site.manage("diskette_snapshots", "--publish", dumped["archive"], "--json").stdout
    )
    assert json.loads(site.manage("diskette_snapshots", "--json").stdout)["snapshots"] == [
        again["snapshot"]
    ]


def test_onboarding_from_the_registry_takes_a_fresh_clone_to_the_latest_snapshot(
    tmp_path, seeded, s3: S3Server, bucket
):
    """scripts/onboard.sh --registry on a checkout with no database, no media,
    no SSH configuration: only read-only keys to the registry."""
    production = seeded.copy(tmp_path / "production", books=12, seed=1)
    production.use_settings(
        production.write_settings(
            "settings_registry",
            production.database + s3.settings_body({"diskette": {"bucket": bucket}}),
        )
    )
    production.manage("diskette_dump", "--publish")

    clone = SandboxCopy.create(tmp_path / "new-developer")
    clone.use_settings(
        clone.write_settings(
            "settings_registry",
            (server_settings_body() if ON_SERVER else "")  # a database not made yet
            + s3.settings_body({"diskette": {"bucket": bucket, "keys": s3.reader}}),
        )
    )
    (clone.root / "tasks.py").write_text("from diskette.tasks import ns\n")
    clone.as_fresh_clone("inv")  # the venv the script would make: this one

    result = clone.run("scripts/onboard.sh", "--registry")

    assert result.stdout.strip().splitlines()[-1] == (
        "=== Done: this checkout now has the data and media of snapshot latest ==="
    )
    assert clone.fingerprint() == production.fingerprint()
