"""Media in a Django storage on S3, dumped and loaded, against a real S3 server.

Production keeps its media in ``STORAGES["default"]``, a django-storages
``S3Storage`` on the suite's loopback S3 server (``tests/s3server.py``); the
laptop's ``STORAGES["default"]`` is a ``FileSystemStorage``, as a
``startproject`` has it. The same ``DISKETTE_STORAGES`` entry,
``{"storage": "default"}``, serves both sides.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import django
import pytest
from django.contrib.auth.models import User
from django.core.management.base import CommandError

from tests.conftest import archive_file, archive_members, run_command, tree_state
from tests.s3server import Keys, S3Server
from tests.test_load_command import wipe_database

pytestmark = pytest.mark.django_db

#: What production's bucket holds: nested folders, an empty file, a file of
#: several megabytes, and what the entry's excludes leave out.
OBJECTS = {
    "covers/dune.jpg": os.urandom(300_000),
    "covers/empty.txt": b"",
    "docs/2026/11/report.pdf": os.urandom(6 * 1024 * 1024 + 3),
    "avatars/été.png": os.urandom(1000),
    "cache/thumb.tmp": b"regenerated",
}
EXCLUDED = {"cache/thumb.tmp"}


#: Django 4.2 drops the OPTIONS of a STORAGES["default"] overridden while it
#: runs (its DEFAULT_FILE_STORAGE compatibility keeps only the BACKEND): there
#: the default storage takes its settings as older projects gave them.
OPTIONS_DROPPED = django.VERSION < (5, 0)
AWS_SETTINGS = {
    "bucket_name": "AWS_STORAGE_BUCKET_NAME",
    "endpoint_url": "AWS_S3_ENDPOINT_URL",
    "access_key": "AWS_S3_ACCESS_KEY_ID",
    "secret_key": "AWS_S3_SECRET_ACCESS_KEY",
    "region_name": "AWS_S3_REGION_NAME",
    "file_overwrite": "AWS_S3_FILE_OVERWRITE",
    "gzip": "AWS_IS_GZIPPED",
}


def use_s3(
    settings, s3: S3Server, alias: str, bucket: str, keys: Keys | None = None, **extra
):
    options = s3.options(bucket, keys, **extra)
    backend = "storages.backends.s3.S3Storage"
    if alias == "default" and OPTIONS_DROPPED:
        for name, value in options.items():
            setattr(settings, AWS_SETTINGS[name], value)
        options = {}
    settings.STORAGES = {
        **settings.STORAGES,
        alias: {"BACKEND": backend, "OPTIONS": options},
    }


def use_folder(settings, alias: str, folder: Path) -> None:
    backend = "django.core.files.storage.FileSystemStorage"
    options = {"location": str(folder)}
    if alias == "default" and OPTIONS_DROPPED:
        settings.MEDIA_ROOT, options = folder, {}
    settings.STORAGES = {
        **settings.STORAGES,
        alias: {"BACKEND": backend, "OPTIONS": options},
    }


def fill(s3: S3Server, bucket: str, objects: dict[str, bytes], prefix: str = "") -> None:
    client = s3.client()
    for name, content in objects.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}{name}", Body=content)


def files_below(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def production(project: Path, settings, s3: S3Server, bucket: str) -> str:
    """The project as production has it: media in S3, declared by alias."""
    fill(s3, bucket, OBJECTS)
    s3.client().put_object(Bucket=bucket, Key="folder-marker/", Body=b"")
    use_s3(settings, s3, "default", bucket)
    settings.DISKETTE_STORAGES = [{"storage": "default", "excludes": ["cache/*"]}]
    return bucket


def test_media_on_s3_dumps_and_loads_into_the_laptops_media_folder_byte_for_byte(
    production, project, settings
):
    run_command("diskette_dump", "--no-data")
    archive = project / "var" / "diskette_storages.tar.gz"
    members = archive_members(archive)
    expected = {name: content for name, content in OBJECTS.items() if name not in EXCLUDED}
    assert {
        name.removeprefix("diskette-storages/default/")
        for name, member in members.items()
        if member.isfile() and name != "manifest.json"
    } == set(expected)
    # The laptop: the same alias is a folder there, which the load fills.
    media = project / "var" / "uploads"
    use_folder(settings, "default", media)
    run_command("diskette_load", str(archive))
    assert files_below(media) == expected


def test_a_prefix_dumps_one_folder_of_the_bucket_and_load_to_chooses_the_folder(
    project, settings, s3, bucket
):
    fill(s3, bucket, OBJECTS, prefix="media/")
    fill(s3, bucket, {"static/app.css": b"body {}"})
    use_s3(settings, s3, "default", bucket)
    settings.DISKETTE_STORAGES = [{"storage": "default", "prefix": "media/covers"}]
    run_command("diskette_dump", "--no-data")
    archive = project / "var" / "diskette_storages.tar.gz"
    settings.DISKETTE_STORAGES = [
        {"storage": "default", "prefix": "media/covers", "load_to": "var/covers"}
    ]
    run_command("diskette_load", str(archive))
    assert files_below(project / "var" / "covers") == {
        "dune.jpg": OBJECTS["covers/dune.jpg"],
        "empty.txt": b"",
    }


def test_a_storage_with_no_local_folder_is_refused_before_anything_changes(
    production, project, settings
):
    run_command("diskette_dump", "--no-data")
    archive = project / "var" / "diskette_storages.tar.gz"
    before = tree_state(project)
    # A host whose default storage is S3 too, and no load_to: where would it go?
    with pytest.raises(CommandError, match=r"storage 'default'.*load_to.*--no-storages"):
        run_command("diskette_load", str(archive))
    assert tree_state(project) == before


@pytest.mark.django_db(transaction=True)
def test_a_load_that_fails_leaves_the_local_media_as_it_was(demo, settings, s3, bucket):
    fill(s3, bucket, {"new.txt": b"new"})
    use_s3(settings, s3, "default", bucket)
    settings.DISKETTE_STORAGES = [{"storage": "default"}]
    run_command("diskette_dump")
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    media = demo / "var" / "uploads"
    media.mkdir()
    (media / "old.txt").write_text("old")
    use_folder(settings, "default", media)
    # A user holding one of the archive's usernames under another id: the
    # data fails at the database, after the media was unpacked beside its folder.
    taken = User.objects.order_by("pk").first().username
    wipe_database()
    User.objects.create(pk=99_999, username=taken)
    with pytest.raises(CommandError, match="could not be loaded"):
        run_command("diskette_load", str(archive), "--overwrite", "--keep")
    assert files_below(media) == {"old.txt": b"old"}
    assert list(User.objects.values_list("pk", flat=True)) == [99_999]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (
            lambda s3, b: {"endpoint_url": f"http://127.0.0.1:{closed_port()}"},
            r"endpoint cannot be reached .*; check endpoint_url in its OPTIONS",
        ),
        (
            lambda s3, b: {"access_key": "AKIANOBODY", "secret_key": "nothing"},
            r"the access key was refused; fix access_key and secret_key",
        ),
        (
            lambda s3, b: {"secret_key": "not-the-secret"},
            r"the secret key was refused; fix access_key and secret_key",
        ),
        (
            lambda s3, b: {"bucket_name": f"{b}-gone"},
            r"bucket '.*-gone' does not exist; create it, or fix bucket_name",
        ),
    ],
    ids=["unreachable", "unknown key", "wrong secret", "no bucket"],
)
def test_storage_failures_are_one_line_naming_the_alias_and_the_option(
    project, settings, s3, bucket, break_it, message
):
    use_s3(settings, s3, "default", bucket, **break_it(s3, bucket))
    settings.DISKETTE_STORAGES = [{"storage": "default"}]
    with pytest.raises(CommandError) as raised:
        run_command("diskette_dump", "--no-data")
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(
        "storage 'default' (STORAGES['default']): cannot list its files: "
    )
    assert re.search(message, text), text
    assert not list((project / "var").glob("*.tar.gz"))


def test_an_object_changed_between_listing_and_reading_fails_the_dump(
    production, project, settings, s3, monkeypatch
):
    """The listing's entity tag guards the read: a file replaced meanwhile is
    not archived with another file's size."""
    from diskette import objectstorage

    listed = objectstorage.list_files

    def list_then_change(storage, prefix=""):
        for stored in listed(storage, prefix):
            if stored.name == "covers/dune.jpg":
                s3.client().put_object(Bucket=production, Key=stored.name, Body=b"changed")
            yield stored

    monkeypatch.setattr("diskette.storages.list_files", list_then_change)
    with pytest.raises(
        CommandError, match=r"cannot read 'covers/dune.jpg': the object changed"
    ):
        run_command("diskette_dump", "--no-data")
    assert not list((project / "var").glob("*.tar.gz"))


def test_check_counts_the_files_of_the_bucket(production, settings):
    out = run_command("diskette_dump", "--check", "--no-data", "--json")
    answer = json.loads(out.stdout)
    expected = [c for n, c in OBJECTS.items() if n not in EXCLUDED]
    assert answer["storages"] == {
        "diskette-storages/default": {
            "files": len(expected),
            "size": sum(map(len, expected)),
        }
    }


def test_files_of_a_dropped_file_field_are_left_out_of_the_bucket_dump(
    project, settings, s3, bucket
):
    """``id_scan: drop`` names files of the S3 storage: they never reach the archive."""
    run_command("shop_seed_customers", users=3)
    scans = {f"customers/scan-{i:05d}.txt": b"Passport" for i in range(3)}
    fill(s3, bucket, {**scans, "covers/kept.jpg": b"cover"})
    use_s3(settings, s3, "default", bucket)
    settings.DISKETTE_STORAGES = [{"storage": "default"}]
    settings.DISKETTE_ANONYMIZE = {"shop.Customer": {"id_scan": "drop"}}
    settings.DISKETTE_ANONYMIZE_SECRET = "a-test-secret-of-some-length"
    answer = json.loads(run_command("diskette_dump", "--json").stdout)
    assert answer["files_left_out"] == len(scans)
    members = archive_members(Path(answer["archive"]))
    assert "diskette-storages/default/covers/kept.jpg" in members
    assert not [name for name in members if "/customers/" in name]


def test_a_local_storage_on_the_project_itself_is_refused(project, settings):
    """``MEDIA_ROOT = ""`` makes the default storage the current folder: the
    project, its database included, is not media."""
    use_folder(settings, "default", project)
    settings.DISKETTE_STORAGES = [{"storage": "default"}]
    with pytest.raises(
        CommandError,
        match=r"storage 'default' keeps its files in .*holds the project itself",
    ):
        run_command("diskette_dump", "--no-data")
    use_folder(settings, "default", project / "var" / "media")
    run_command("diskette_dump", "--no-data")
    use_folder(settings, "default", project)
    with pytest.raises(
        CommandError,
        match=r"holds 'diskette-storages/default', but storage 'default' would load "
        r"into .*, which holds the project itself",
    ):
        run_command("diskette_load", "var/diskette_storages.tar.gz")


def test_files_stored_gzip_compressed_are_archived_as_the_application_reads_them(
    project, settings, s3, bucket
):
    """django-storages' ``gzip`` option compresses a stylesheet on the way in
    and ``S3File`` inflates it on the way out: the archive holds the latter."""
    use_s3(settings, s3, "default", bucket, gzip=True)
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    css = b"body { color: red; }\n" * 500
    storages["default"].save("site/style.css", ContentFile(css))
    stored = s3.client().get_object(Bucket=bucket, Key="site/style.css")
    assert stored["ContentEncoding"] == "gzip" and stored["Body"].read() != css
    settings.DISKETTE_STORAGES = [{"storage": "default"}]
    run_command("diskette_dump", "--no-data")
    archive = project / "var" / "diskette_storages.tar.gz"
    assert archive_file(archive, "diskette-storages/default/site/style.css") == css


def test_names_no_folder_can_hold_are_skipped_so_the_archive_loads(
    project, settings, s3, bucket
):
    fill(
        s3,
        bucket,
        {
            "x": b"a file",
            "x-other": b"between them in S3's order",
            "x/y": b"below a file",
            "a/../b": b"climbs",
            "long/" + "n" * 300: b"too long a name",
            "fine/z": b"kept",
        },
    )
    use_s3(settings, s3, "default", bucket)
    settings.DISKETTE_STORAGES = [{"storage": "default"}]
    answer = json.loads(run_command("diskette_dump", "--no-data", "--json").stdout)
    assert sorted(answer["skipped"]) == sorted(["x/y", "a/../b", "long/" + "n" * 300])
    media = project / "var" / "uploads"
    use_folder(settings, "default", media)
    run_command("diskette_load", answer["archive"])
    assert files_below(media) == {
        "x": b"a file",
        "x-other": b"between them in S3's order",
        "fine/z": b"kept",
    }


def test_a_load_target_overlapping_another_storage_is_refused_up_front(
    production, project, settings
):
    run_command("diskette_dump", "--no-data")
    media = project / "var" / "media"
    settings.DISKETTE_STORAGES = [media, {"storage": "default", "load_to": "var/media/s3"}]
    before = tree_state(project / "var" / "media")
    with pytest.raises(
        CommandError, match=r"would load into .*, which overlaps storage 'var/media'"
    ):
        run_command("diskette_load", "var/diskette_storages.tar.gz")
    assert tree_state(project / "var" / "media") == before
