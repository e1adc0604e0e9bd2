"""The snapshot registry on the suite's S3 server: publish, list, load, prune, encrypt.

``STORAGES["diskette"]`` is a django-storages ``S3Storage`` on a bucket of
the loopback S3 server (``tests/s3server.py``), reached with real keys; what
the bucket holds is read back with boto3, as an administrator would.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from demo.models import Book
from demo.state import data_state
from diskette.conf import get_settings
from diskette.registry import ORPHAN_AGE, Registry
from tests.conftest import run_command, tree_state
from tests.s3server import Keys, S3Server
from tests.test_load_command import wipe_database

pytestmark = pytest.mark.django_db


def use_registry(settings, s3: S3Server, bucket: str, keys: Keys | None = None, **extra):
    settings.STORAGES = {
        **settings.STORAGES,
        "diskette": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3.options(bucket, keys, **extra),
        },
    }


@pytest.fixture
def registry(demo: Path, settings, s3: S3Server, bucket: str) -> str:
    """The demo project with a registry on an empty bucket."""
    use_registry(settings, s3, bucket)
    return bucket


def publish(*args: str) -> dict:
    return json.loads(run_command("diskette_dump", "--publish", "--json", *args).stdout)


def snapshots() -> list[dict]:
    return json.loads(run_command("diskette_snapshots", "--json").stdout)["snapshots"]


@pytest.mark.django_db(transaction=True)
def test_a_published_snapshot_is_listed_and_loads_by_latest(registry, demo, s3):
    for excluded in ("cache/generated.txt", "public/thumbnails/generated.txt"):
        (demo / "var" / "media" / excluded).unlink()  # never archived: not restored
    data, media = data_state(), tree_state(demo / "var" / "media")
    answer = publish()
    assert answer["removed"] is True
    assert not Path(answer["archive"]).exists()
    snapshot = answer["snapshot"]
    assert snapshots() == [snapshot]
    stored = s3.objects(registry)
    assert set(stored) == {snapshot["object"], f"index/{snapshot['id']}.json"}
    assert json.loads(stored[f"index/{snapshot['id']}.json"]) == snapshot
    assert snapshot["size"] == len(stored[snapshot["object"]])
    assert snapshot["applications"] == [name for name, _ in get_settings().apps]
    assert snapshot["recipients"] == [] and snapshot["anonymized"] is False
    wipe_database()
    run_command("diskette_load", "snapshot:latest")
    assert data_state() == data
    assert tree_state(demo / "var" / "media") == media
    assert not list(demo.glob("diskette-snapshot-*"))  # removed once loaded


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_damaged_object_is_refused_before_anything_is_touched(registry, demo, s3, damage):
    snapshot = publish()["snapshot"]
    client = s3.client()
    body = client.get_object(Bucket=registry, Key=snapshot["object"])["Body"].read()
    if damage == "flipped":
        middle = len(body) // 2
        body = body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1 :]
    else:
        body = body[: len(body) // 2]
    client.put_object(Bucket=registry, Key=snapshot["object"], Body=body)
    Book.objects.filter(pk=Book.objects.first().pk).update(title="Local edit")
    data, media = data_state(), tree_state(demo / "var" / "media")
    with pytest.raises(
        CommandError, match=rf"snapshot {snapshot['id']} .* is damaged.*nothing was loaded"
    ):
        run_command("diskette_load", f"snapshot:{snapshot['id'][:12]}", "--overwrite")
    assert data_state() == data
    assert tree_state(demo / "var" / "media") == media
    assert not [p for p in demo.iterdir() if "snapshot" in p.name]


def test_retention_keeps_exactly_what_it_says_and_a_dry_run_removes_nothing(
    registry, demo, s3, settings
):
    archive = Path(publish("--keep")["archive"])
    hub = Registry.from_settings(get_settings())
    now = datetime.now(timezone.utc)
    published = [hub.publish(archive, now=now - timedelta(days=days)) for days in (9, 5, 3)]
    newest = snapshots()[0]
    assert [s["id"] for s in snapshots()[1:]] == [s.id for s in reversed(published)]
    before = s3.objects(registry)

    dry = json.loads(
        run_command(
            "diskette_snapshots",
            "--prune",
            "--keep-last",
            "1",
            "--keep-days",
            "4",
            "--dry-run",
            "--json",
        ).stdout
    )
    assert dry["removed"] == [published[1].id, published[0].id]
    assert s3.objects(registry) == before

    run_command("diskette_snapshots", "--prune", "--keep-last", "1", "--keep-days", "4")
    assert [s["id"] for s in snapshots()] == [newest["id"], published[2].id]
    assert set(s3.objects(registry)) == {
        name
        for kept in (newest["id"], published[2].id)
        for name in (f"index/{kept}.json", f"archives/{kept}.tar.gz")
    }
    run_command("diskette_snapshots", "--prune", "--keep-last", "1")
    assert [s["id"] for s in snapshots()] == [newest["id"]]


def test_an_archive_without_index_is_never_listed_and_pruned_once_old(registry, demo, s3):
    """An interrupted publish (killed for real in test_registry_project.py)."""
    snapshot = publish("--keep")["snapshot"]
    s3.client().delete_object(Bucket=registry, Key=f"index/{snapshot['id']}.json")
    assert snapshots() == []
    hub = Registry.from_settings(get_settings())
    assert hub.prune(keep_last=5, keep_days=None) == ([], [])  # young: maybe at work
    later = datetime.now(timezone.utc) + ORPHAN_AGE + timedelta(minutes=1)
    assert hub.prune(keep_last=5, keep_days=None, now=later) == ([], [snapshot["object"]])
    assert s3.objects(registry) == {}


def test_a_denied_write_is_one_line_and_leaves_no_index(demo, settings, s3, bucket):
    use_registry(settings, s3, bucket, keys=s3.reader)
    with pytest.raises(CommandError) as raised:
        run_command("diskette_dump", "--publish")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("storage 'diskette' (STORAGES['diskette']): cannot upload")
    assert "access was denied; grant these credentials access to the bucket" in message
    assert "the archive is kept at" in message
    assert s3.objects(bucket) == {}


def test_a_missing_registry_names_the_setting(demo, settings):
    with pytest.raises(
        CommandError,
        match=r"DISKETTE_REGISTRY_STORAGE names storage 'diskette', which STORAGES does not define",
    ):
        run_command("diskette_snapshots")


def test_no_snapshot_yet_says_how_to_publish_one(registry):
    with pytest.raises(CommandError, match=r"holds no snapshot yet: publish one"):
        run_command("diskette_load", "snapshot:latest")
    assert "holds no snapshot yet" in run_command("diskette_snapshots").stdout


@pytest.mark.django_db(transaction=True)
def test_an_encrypted_snapshot_is_ciphertext_in_the_bucket_and_loads_with_the_key(
    registry, demo, s3, settings, tmp_path
):
    key = tmp_path / "keys" / "me.txt"
    settings.DISKETTE_REGISTRY_IDENTITY = str(key)
    recipient = json.loads(run_command("diskette_snapshots", "--new-key", "--json").stdout)
    assert key.stat().st_mode & 0o777 == 0o600
    other = tmp_path / "keys" / "colleague.txt"
    settings.DISKETTE_REGISTRY_IDENTITY = str(other)
    colleague = json.loads(run_command("diskette_snapshots", "--new-key", "--json").stdout)
    settings.DISKETTE_REGISTRY_RECIPIENTS = [recipient["recipient"]]

    data = data_state()
    snapshot = publish()["snapshot"]
    assert snapshot["object"].endswith(".tar.gz.age")
    stored = s3.objects(registry)[snapshot["object"]]
    assert stored.startswith(b"age-encryption.org/v1\n")
    assert b"\x1f\x8b" not in stored[:200]
    titles = [title.encode() for title in Book.objects.values_list("title", flat=True)]
    assert not any(title in stored for title in titles)
    wipe_database()

    # The colleague's key is not a recipient: refused, nothing loaded.
    with pytest.raises(CommandError, match=r"is not encrypted to the key in .*colleague"):
        run_command("diskette_load", "snapshot:latest")
    settings.DISKETTE_REGISTRY_IDENTITY = str(tmp_path / "keys" / "none.txt")
    with pytest.raises(CommandError, match=r"cannot read the age key .*none.txt"):
        run_command("diskette_load", "snapshot:latest")
    assert Book.objects.count() == 0
    assert not [p for p in demo.iterdir() if "snapshot" in p.name]

    settings.DISKETTE_REGISTRY_IDENTITY = str(key)
    run_command("diskette_load", "snapshot:latest")
    assert data_state() == data
    assert colleague["recipient"] != recipient["recipient"]


def test_recipients_are_checked_as_settings(settings):
    settings.DISKETTE_REGISTRY_RECIPIENTS = ["age1notakey"]
    with pytest.raises(
        CommandError, match=r"DISKETTE_REGISTRY_RECIPIENTS\[0\] must be an age public key"
    ):
        run_command("diskette_snapshots")


def test_check_with_publish_proves_the_registry_answers(registry, settings, s3):
    answer = json.loads(
        run_command("diskette_dump", "--check", "--publish", "--json").stdout
    )
    assert answer["registry"] == {"storage": "diskette", "snapshots": 0}
    use_registry(settings, s3, registry, keys=Keys("AKIANOBODY", "nothing"))
    with pytest.raises(
        CommandError, match=r"^storage 'diskette' .*the access key was refused"
    ):
        run_command("diskette_dump", "--check", "--publish")


def test_a_download_never_replaces_a_file_already_there(registry, demo):
    snapshot = publish()["snapshot"]
    there = demo / f"diskette-snapshot-{snapshot['id']}.tar.gz"
    there.write_bytes(b"mine")
    with pytest.raises(CommandError, match=r"already exists; move it, or choose another"):
        run_command("diskette_load", "snapshot:latest", "--overwrite")
    assert there.read_bytes() == b"mine"


DAMAGES = {
    "no time zone": {"created": "2020-01-01T00:00:00"},
    "size as a string": {"archive_size": "12"},
    "size as a bool": {"size": True},
    "negative size": {"size": -5},
    "applications not strings": {"applications": [1, 2]},
    "applications null": {"applications": None},
    "anonymized as a string": {"anonymized": "false"},
    "object elsewhere": {"object": "../../etc/passwd"},
    "format as a bool": {"format": True},
}


def test_damaged_index_objects_are_reported_and_never_break_the_registry(
    registry, demo, s3
):
    """A bucket's content is not trusted: each damaged index is named once,
    and the good snapshot still lists and loads."""
    good = publish("--keep")["snapshot"]
    client = s3.client()
    for number, change in enumerate(DAMAGES.values()):
        other = {**good, "id": f"20200101T00000{number}Z-abcdef", **change}
        other.setdefault("object", f"archives/{other['id']}.tar.gz")
        client.put_object(
            Bucket=registry, Key=f"index/{other['id']}.json", Body=json.dumps(other)
        )
    deep = "[" * 100_000 + "]" * 100_000
    client.put_object(Bucket=registry, Key="index/20200102T000000Z-abcdef.json", Body=deep)
    client.put_object(Bucket=registry, Key="index/../x.json", Body=b"{}")
    client.put_object(Bucket=registry, Key="index/notes.txt", Body=b"not ours")

    answer = json.loads(run_command("diskette_snapshots", "--json").stdout)

    assert [s["id"] for s in answer["snapshots"]] == [good["id"]]
    assert len(answer["damaged"]) == len(DAMAGES) + 1
    assert all(line.startswith("index object 'index/") for line in answer["damaged"])
    assert run_command("diskette_snapshots").stdout.count(good["id"]) == 1
    dry = json.loads(
        run_command("diskette_snapshots", "--prune", "--keep-last", "1", "--dry-run", "--json").stdout
    )
    assert dry["removed"] == []


def test_prune_removes_only_what_a_publish_writes(registry, demo, s3):
    client = s3.client()
    for key in ("archives/README.txt", "archives/manual/backup.tar.gz", "elsewhere.bin"):
        client.put_object(Bucket=registry, Key=key, Body=b"not diskette's")
    orphan = "archives/20200101T000000Z-abcdef.tar.gz"
    client.put_object(Bucket=registry, Key=orphan, Body=b"an interrupted publish")
    hub = Registry.from_settings(get_settings())
    later = datetime.now(timezone.utc) + ORPHAN_AGE + timedelta(minutes=1)
    assert hub.prune(keep_last=1, keep_days=None, now=later) == ([], [orphan])
    assert set(s3.objects(registry)) == {
        "archives/README.txt",
        "archives/manual/backup.tar.gz",
        "elsewhere.bin",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep-days", "inf"], r"--keep-days: 'inf': give a number of days above 0"),
        (["--keep-last", "0"], r"--keep-last: '0': keep 1 or more snapshots"),
        ([], r"say what to keep"),
    ],
)
def test_retention_refuses_what_it_cannot_keep(registry, args, message):
    with pytest.raises(CommandError, match=message):
        run_command("diskette_snapshots", "--prune", *args)


def test_an_empty_snapshot_reference_is_refused(registry, demo):
    publish()
    with pytest.raises(CommandError, match=r"name a snapshot: snapshot:latest"):
        run_command("diskette_load", "snapshot:")


def test_a_key_path_on_a_file_is_one_line(tmp_path, settings):
    (tmp_path / "file").write_text("")
    settings.DISKETTE_REGISTRY_IDENTITY = str(tmp_path / "file" / "key.txt")
    with pytest.raises(CommandError, match=r"a file stands where a folder of it should be"):
        run_command("diskette_snapshots", "--new-key")
    settings.DISKETTE_REGISTRY_IDENTITY = str(tmp_path)
    with pytest.raises(CommandError, match=r"is a folder: set DISKETTE_REGISTRY_IDENTITY"):
        run_command("diskette_snapshots", "--new-key")
