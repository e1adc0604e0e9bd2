"""``diskette_load`` in process, against the real test database and real files."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import tarfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, reset_queries

from demo.models import Book, Review, Tag
from demo.state import data_state
from diskette import mediaindex
from diskette.archive import read_manifest
from shop.state import data_state as shop_state
from tests.conftest import run_command, tree_state

pytestmark = pytest.mark.django_db


def load(*args: str, **options):
    return run_command("diskette_load", *args, **options)


@pytest.fixture
def dumped(demo: Path) -> Path:
    """A dump of the demo project, written to its var/ folder.

    The files the sandbox excludes from dumps (``cache/*``,
    ``public/thumbnails/*``) are removed first: a restore replaces the whole
    storage, so they would rightly not come back.
    """
    for excluded in ("cache/generated.txt", "public/thumbnails/generated.txt"):
        (demo / "var" / "media" / excluded).unlink()
    run_command("diskette_dump")
    return demo / "var" / "diskette_data_storages.tar.gz"


def wipe(project: Path) -> None:
    """A freshly migrated database and no media, as before a first load."""
    wipe_database()
    for child in (project / "var" / "media").iterdir():
        child.unlink() if child.is_file() else shutil.rmtree(child)


def wipe_database() -> None:
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:  # pending FK checks would block TRUNCATE
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    # Resetting sequences, flush TRUNCATEs; on MySQL that is DDL, which commits
    # the test's transaction first: DELETE there, which its rollback undoes.
    reset_sequences = connection.vendor != "mysql"
    call_command("flush", interactive=False, verbosity=0, reset_sequences=reset_sequences)


@pytest.mark.django_db(transaction=True)
def test_round_trip_restores_data_and_media_and_removes_the_archive(dumped, demo):
    data, media = data_state(), tree_state(demo / "var" / "media")
    wipe(demo)
    assert not Book.objects.exists()
    output = load(str(dumped))
    assert data_state() == data
    assert tree_state(demo / "var" / "media") == media
    assert not dumped.exists()
    assert output.lines[0] == "=== Starting restoration ==="
    assert re.fullmatch(
        rf"Verifying archive '{re.escape(str(dumped))}' \(.+ KiB\)", output.lines[1]
    )
    loaded = [
        re.fullmatch(r"Loading data from dump '(.+)' \(.+\)", x) for x in output.lines[2:7]
    ]
    assert [m.group(1) for m in loaded] == [
        "djangocontribauth.jsonl",
        "djangocontribsites.jsonl",
        "demo.jsonl",
        "shop.jsonl",
        "everythingelse.jsonl",
    ]
    assert output.lines[7:] == [
        "Restoring storage directory (48.0 KiB): var/media",
        f"Archive removed: {dumped}",
    ]
    leftovers = [p.name for p in demo.rglob("*") if "diskette-" in p.name]
    assert leftovers == []
    # What the load put in place is remembered for the next pull's delta.
    assert mediaindex.index_path(demo / "var" / "media").is_file()


def test_archive_path_is_relative_to_the_current_directory(dumped, demo):
    wipe(demo)
    load("var/diskette_data_storages.tar.gz", keep=True)
    assert Book.objects.count() == 12
    assert dumped.exists()


def test_media_is_replaced_whole_including_local_changes(dumped, demo):
    media = demo / "var" / "media"
    before = tree_state(media)
    (media / "covers" / "cover0.bin").write_bytes(b"changed")
    (media / "stray.txt").write_text("not in the archive")
    wipe_database()
    load(str(dumped))
    assert tree_state(media) == before


def test_no_data_restores_storages_only(dumped, demo):
    (demo / "var" / "media" / "covers" / "cover0.bin").unlink()
    Tag.objects.create(name="local-only")
    load(str(dumped), no_data=True)
    assert (demo / "var" / "media" / "covers" / "cover0.bin").exists()
    assert Tag.objects.filter(name="local-only").exists()


def test_no_storages_loads_data_only(dumped, demo):
    wipe(demo)
    load(str(dumped), no_storages=True)
    assert Book.objects.count() == 12
    assert tree_state(demo / "var" / "media") == {}


def test_both_no_data_and_no_storages_is_refused(dumped):
    with pytest.raises(
        CommandError, match="^nothing to load: --no-data and --no-storages$"
    ):
        load(str(dumped), no_data=True, no_storages=True)
    assert dumped.exists()


@pytest.mark.parametrize(
    "name", ["everything else", "everythingelse.jsonl", "everythingelse"]
)
def test_exclude_data_by_definition_or_file_name(dumped, demo, name):
    wipe(demo)
    load(str(dumped), exclude_data=[name])
    assert Book.objects.count() == 12
    assert not Review.objects.exists()


def test_exclude_data_with_an_unknown_name_is_refused(dumped, demo):
    wipe(demo)
    with pytest.raises(
        CommandError, match="^--exclude-data 'reviews' matches no data in the archive$"
    ):
        load(str(dumped), exclude_data=["reviews"])
    assert not Book.objects.exists()


def test_storages_basepath_option_and_setting(dumped, demo, settings, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    load(str(dumped), no_data=True, keep=True, storages_basepath=other)
    assert (other / "var" / "media" / "covers" / "cover3.bin").exists()
    settings.DISKETTE_LOAD_STORAGES_PATH = tmp_path / "from-setting"
    settings.DISKETTE_LOAD_STORAGES_PATH.mkdir()
    load(str(dumped), no_data=True)
    assert (tmp_path / "from-setting" / "var" / "media" / "covers" / "cover3.bin").exists()


def test_missing_basepath_is_refused(dumped, tmp_path):
    with pytest.raises(
        CommandError, match=r"^storages base path '.*nowhere' is not a directory$"
    ):
        load(str(dumped), storages_basepath=tmp_path / "nowhere")


def test_checksum_option(dumped, demo):
    digest = hashlib.sha256(dumped.read_bytes()).hexdigest()
    with pytest.raises(CommandError, match=f"has sha256 {digest}, not the expected 00ff"):
        load(str(dumped), checksum="00ff")
    assert dumped.exists()
    wipe(demo)
    load(str(dumped), checksum=digest.upper())
    assert Book.objects.count() == 12


def test_missing_archive_is_refused():
    with pytest.raises(CommandError, match="^archive 'nowhere.tar.gz' does not exist$"):
        load("nowhere.tar.gz")


def test_migration_differences_warn_and_strict_refuses(demo, tmp_path):
    archive = rebuild(
        tmp_path, demo, lambda m: m["migrations"]["demo"].append("0002_future")
    )
    wipe(demo)
    with pytest.raises(CommandError, match="for: demo .refused with --strict.$"):
        load(str(archive), strict=True, keep=True)
    assert not Book.objects.exists()
    output = load(str(archive))
    assert (
        "Warning: applied migrations differ between the archive and this database for: demo"
        in output.stderr
    )
    assert Book.objects.count() == 12


def test_ignorenonexistent_skips_fields_that_no_longer_exist(demo, tmp_path):
    def add_field(name, objects):
        for obj in objects:
            if obj["model"] == "demo.tag":
                obj["fields"]["colour"] = "red"

    archive = legacy_archive(tmp_path, demo, add_field)
    wipe(demo)
    with pytest.raises(
        CommandError, match=r"^data 'data/demo.json' line \d+ could not be loaded: .*colour"
    ):
        load(str(archive), keep=True)
    assert not Tag.objects.exists()
    load(str(archive), ignorenonexistent=True)
    assert Tag.objects.count() == 13


def test_a_diskette_06_archive_loads(demo, tmp_path):
    data, media = data_state(), tree_state(demo / "var" / "media")
    archive = legacy_archive(tmp_path, demo, lambda name, objects: None)
    wipe(demo)
    load(str(archive))
    assert data_state() == data
    assert tree_state(demo / "var" / "media") == media


def test_progress_line_on_a_terminal(dumped, demo):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    wipe(demo)
    terminal = Terminal()
    call_command("diskette_load", str(dumped), stdout=io.StringIO(), stderr=terminal)
    drawn = terminal.getvalue()
    assert re.search(
        r"\rVerifying archive  [\d.]+ KiB/[\d.]+ KiB  100%  .*/s  in 0:\d\d", drawn
    )
    assert drawn.count("\n") == 1  # redrawn in place, ended once


# Refusals: the database and the media stay exactly as they were.


@contextmanager
def leaves_unchanged(project: Path):
    """Make the local data and media differ from any archive of the demo, then
    check that nothing of them changed: a load that wrote anything would show."""
    book = Book.objects.order_by("pk").first()
    book.title = "Edited locally"
    book.save()
    Tag.objects.create(name="local-only")
    (project / "var" / "media" / "covers" / "cover0.bin").write_bytes(b"edited locally")
    (project / "var" / "media" / "local.txt").write_text("local")
    before = data_state(), tree_state(project)
    yield
    assert (data_state(), tree_state(project)) == before


def hostile(tmp_path: Path, demo: Path, *extra, storages=("var/media",)) -> Path:
    """A legacy-layout archive of the demo, with ``extra`` members added."""
    return legacy_archive(
        tmp_path, demo, lambda name, objects: None, extra=extra, storages=storages
    )


@pytest.mark.parametrize(
    ("extra", "storages", "message"),
    [
        (
            [("../evil.txt", b"x", None)],
            ("var/media",),
            "member '../evil.txt' escapes the archive",
        ),
        (
            [("/tmp/evil.txt", b"x", None)],
            ("var/media",),
            "member '/tmp/evil.txt' has an absolute path",
        ),
        (
            [("var/media/escape", None, "../../..")],
            ("var/media",),
            "symlink 'var/media/escape' points out of",
        ),
        (
            [("var/media/up", None, "..")],
            ("var/media",),
            "symlink 'var/media/up' points out of its storage",
        ),
        ([], ("../outside",), "storage '../outside' lies outside the storages base path"),
    ],
)
def test_hostile_archives_change_nothing(demo, tmp_path, extra, storages, message):
    archive = hostile(tmp_path, demo, *extra, storages=storages)
    with leaves_unchanged(demo), pytest.raises(CommandError, match=re.escape(message)):
        load(str(archive))
    assert archive.exists()
    assert not (tmp_path / "evil.txt").exists()


def test_truncated_archive_changes_nothing(demo, tmp_path):
    archive = hostile(tmp_path, demo)
    archive.write_bytes(archive.read_bytes()[:-100])
    with (
        leaves_unchanged(demo),
        pytest.raises(CommandError, match="is not a complete diskette archive"),
    ):
        load(str(archive))


def test_not_an_archive_changes_nothing(demo, tmp_path):
    archive = tmp_path / "notes.tar.gz"
    archive.write_text("hello")
    with (
        leaves_unchanged(demo),
        pytest.raises(
            CommandError, match="is not a complete diskette archive: Not a gzipped file"
        ),
    ):
        load(str(archive))


def test_checksum_mismatch_changes_nothing(demo, tmp_path):
    archive = hostile(tmp_path, demo)
    with (
        leaves_unchanged(demo),
        pytest.raises(CommandError, match="not the expected " + "0" * 64),
    ):
        load(str(archive), checksum="0" * 64)


def test_tampered_member_changes_nothing(demo, tmp_path):
    run_command("diskette_dump", destination=tmp_path)
    archive = tmp_path / "diskette_data_storages.tar.gz"
    members = []
    with tarfile.open(archive) as tar:
        for info in tar.getmembers():
            content = tar.extractfile(info).read() if info.isfile() else None
            if info.name == "var/media/covers/cover0.bin":
                content = b"tampered" + content[8:]
            members.append((info, content))
    with tarfile.open(archive, "w:gz") as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    with (
        leaves_unchanged(demo),
        pytest.raises(
            CommandError,
            match="member 'var/media/covers/cover0.bin' does not match its sha256",
        ),
    ):
        load(str(archive))


def test_a_failing_second_data_file_undoes_the_first(demo, tmp_path):
    def break_reviews(name, objects):
        if name == "data/reviews.json":
            objects.append(
                {"model": "demo.review", "fields": {"book": ["No such book", "Nobody"]}}
            )

    archive = legacy_archive(tmp_path, demo, break_reviews, split_reviews=True)
    wipe(demo)
    (demo / "var" / "media" / "local.txt").write_text("local")
    before = data_state(), tree_state(demo)
    assert before[0]["books"] == []  # so books loaded by the first files would show
    with pytest.raises(
        CommandError, match=r"^data 'data/reviews.json' (line \d+ )?could not be loaded: "
    ):
        load(str(archive))
    assert (data_state(), tree_state(demo)) == before


def test_a_storage_swap_failing_after_the_data_undoes_both(
    demo, tmp_path, monkeypatch, settings
):
    """The last step before commit fails: data rolls back, media is put back."""
    settings.DISKETTE_STORAGES = ["var/media", "var/other"]
    archive = hostile(tmp_path, demo, storages=("var/media", "var/other"))
    (demo / "var" / "other").mkdir()
    (demo / "var" / "other" / "keep.txt").write_text("keep")
    wipe(demo)
    (demo / "var" / "media" / "local.txt").write_text("local")
    before = data_state(), tree_state(demo)
    real_rename = os.rename

    def failing_rename(source, destination, **folders):
        if source == "keep.txt":  # setting the old file aside (names in folders)
            raise OSError(28, "No space left on device")
        return real_rename(source, destination, **folders)

    monkeypatch.setattr("diskette.journal.os.rename", failing_rename)
    with pytest.raises(
        CommandError,
        match=r"^storage 'var/other' could not be swapped into '.*var/other': No space left",
    ):
        load(str(archive))
    monkeypatch.undo()
    assert (data_state(), tree_state(demo)) == before


# Downloads, from a real HTTP server on 127.0.0.1.


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1; ``/moved`` redirects to ``/a.tar.gz``."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def do_GET(self):  # noqa: N802 - the base class's name
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/a.tar.gz")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_load_from_a_url(dumped, demo, server, tmp_path):
    www, url = server
    dumped.rename(www / "a.tar.gz")
    data = data_state()
    wipe(demo)
    output = load(f"{url}/a.tar.gz", download_destination=tmp_path)
    assert (
        f"Downloading archive from '{url}/a.tar.gz' to '{tmp_path / 'a.tar.gz'}'"
        in output.lines
    )
    assert data_state() == data
    assert not (tmp_path / "a.tar.gz").exists()
    assert (www / "a.tar.gz").exists()


def test_redirects_are_refused_unless_allowed(dumped, demo, server, settings, tmp_path):
    www, url = server
    dumped.rename(www / "a.tar.gz")
    with pytest.raises(
        CommandError,
        match=r"^downloading '.*/moved' failed: HTTP 302 redirect to .* refused",
    ):
        load(f"{url}/moved", download_destination=tmp_path / "x.tar.gz")
    assert (
        not (tmp_path / "x.tar.gz").exists() and not (tmp_path / "x.tar.gz.part").exists()
    )
    settings.DISKETTE_DOWNLOAD_ALLOW_REDIRECT = True
    wipe(demo)
    load(f"{url}/moved", download_destination=tmp_path / "x.tar.gz")
    assert Book.objects.count() == 12


def test_a_download_never_replaces_an_existing_file(dumped, server, tmp_path):
    www, url = server
    dumped.rename(www / "a.tar.gz")
    mine = tmp_path / "a.tar.gz"
    mine.write_text("my own file")
    with pytest.raises(
        CommandError, match=r"^'.*a.tar.gz' already exists; move it or choose"
    ):
        load(f"{url}/a.tar.gz", download_destination=tmp_path)
    assert mine.read_text() == "my own file"


def test_a_download_that_does_not_verify_is_removed_so_a_retry_works(
    dumped, demo, server, tmp_path
):
    www, url = server
    (www / "a.tar.gz").write_text("<html>maintenance</html>")
    with pytest.raises(CommandError, match="is not a complete diskette archive"):
        load(f"{url}/a.tar.gz", download_destination=tmp_path, check=True)
    assert list(tmp_path.glob("a.tar.gz*")) == []  # not kept to block the retry
    dumped.rename(www / "a.tar.gz")
    output = load(f"{url}/a.tar.gz", download_destination=tmp_path, check=True)
    assert "Archive verified" in output.stdout
    assert (tmp_path / "a.tar.gz").exists()  # a verified download is kept by --check


def test_a_storage_that_is_a_symlink_is_restored_where_it_points(dumped, demo, tmp_path):
    media = demo / "var" / "media"
    elsewhere = tmp_path / "big-disk" / "media"
    elsewhere.parent.mkdir()
    media.rename(elsewhere)
    media.symlink_to(elsewhere)
    expected = tree_state(elsewhere)
    (elsewhere / "covers" / "cover1.bin").write_bytes(b"changed")
    load(str(dumped), no_data=True)
    assert media.is_symlink()
    assert tree_state(elsewhere) == expected
    # Nothing set aside is left; the media index is the real folder's.
    assert [p.name for p in elsewhere.parent.iterdir()] == ["media"]
    assert mediaindex.index_path(media) == mediaindex.index_path(elsewhere)
    assert mediaindex.index_path(elsewhere).is_file()


def test_download_errors_name_the_url(server, settings):
    _, url = server
    with pytest.raises(
        CommandError, match=r"^downloading '.*/missing.tar.gz' failed: HTTP 404"
    ):
        load(f"{url}/missing.tar.gz")
    with pytest.raises(
        CommandError, match=r"^'ftp://127.0.0.1/a.tar.gz' does not use an allowed protocol"
    ):
        load("ftp://127.0.0.1/a.tar.gz")
    settings.DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS = ["https://"]
    with pytest.raises(CommandError, match="does not use an allowed protocol .https://;"):
        load(f"{url}/a.tar.gz")


# Archives in diskette 0.6's layout, built here the way 0.6 wrote them.


def legacy_archive(
    tmp_path: Path,
    project: Path,
    change,
    *,
    extra=(),
    storages=("var/media",),
    split_reviews: bool = False,
) -> Path:
    """An archive as diskette 0.6 made it: ``.json`` data from ``dumpdata``,
    a ``data`` folder entry, storage files, and a four-key manifest last.

    :param change: called with each data file's name and objects, to edit them.
    """
    fixtures = {
        "data/djangocontribauth.json": ["auth.Group", "auth.User"],
        "data/demo.json": ["demo.Author", "demo.Tag", "demo.Book"]
        + ([] if split_reviews else ["demo.Review"]),
    }
    if split_reviews:
        fixtures["data/reviews.json"] = ["demo.Review"]
    archive = tmp_path / "legacy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(_info("data", tarfile.DIRTYPE))
        for name, labels in fixtures.items():
            out = io.StringIO()
            call_command("dumpdata", *labels, natural_foreign=True, stdout=out)
            objects = json.loads(out.getvalue())
            change(name, objects)
            _add(tar, name, json.dumps(objects).encode())
        for storage in storages:
            root = project / storage
            if root.is_dir():
                for path in sorted(root.rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=str(path.relative_to(project)))
        for name, content, link in extra:
            if link is not None:
                info = _info(name, tarfile.SYMTYPE)
                info.linkname = link
                tar.addfile(info)
            else:
                _add(tar, name, content)
        manifest = {
            "version": "0.6.0",
            "creation": "2025-02-03T17:53:09",
            "datas": list(fixtures),
            "storages": list(storages),
        }
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return archive


def rebuild(tmp_path: Path, project: Path, change) -> Path:
    """A fresh dump of ``project`` whose manifest is edited by ``change``."""
    run_command("diskette_dump", destination=tmp_path / "dump")
    source = tmp_path / "dump" / "diskette_data_storages.tar.gz"
    manifest = read_manifest(source)
    change(manifest)
    archive = tmp_path / "edited.tar.gz"
    with tarfile.open(source) as old, tarfile.open(archive, "w:gz") as new:
        for info in old.getmembers():
            if info.name == "manifest.json":
                _add(new, "manifest.json", json.dumps(manifest).encode())
            else:
                new.addfile(info, old.extractfile(info) if info.isfile() else None)
    return archive


def _info(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755
    return info


def _add(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(content))


def test_unknown_database_is_refused(dumped):
    with pytest.raises(CommandError, match="^--database: unknown database alias 'other'$"):
        load(str(dumped), database="other")
    assert dumped.exists()


@pytest.mark.django_db(transaction=True)
def test_everything_snapshot_loads_back_into_a_fresh_database(demo, tmp_path):
    """--everything carries every row (sites, sessions, admin log too) with its
    primary key, and loads into a freshly migrated database."""
    from django.contrib.sessions.models import Session
    from django.contrib.sites.models import Site

    Site.objects.create(domain="second.example", name="Second")
    Session.objects.create(
        session_key="k" * 32, session_data="x", expire_date="2030-01-01T00:00Z"
    )
    data = data_state()
    pks = sorted(Book.objects.values_list("pk", "title"))
    run_command("diskette_dump", "--everything", "--no-storages", destination=tmp_path)
    wipe_database()
    snapshot = tmp_path / "diskette_data.tar.gz"
    with pytest.raises(CommandError, match="holds sessions.session objects, a model "):
        load(str(snapshot))  # more than DISKETTE_APPS covers: only with --everything
    assert not Book.objects.exists()
    load(str(snapshot), everything=True)
    assert data_state() == data
    assert sorted(Book.objects.values_list("pk", "title")) == pks
    assert Site.objects.filter(domain="second.example").exists()
    assert Session.objects.filter(session_key="k" * 32).exists()


def test_everything_and_appconf_exclude_each_other(demo, tmp_path):
    with pytest.raises(
        CommandError, match="^--everything and --appconf exclude each other$"
    ):
        run_command("diskette_dump", "--everything", appconf=tmp_path / "x.json")


def test_check_verifies_and_changes_nothing(dumped, demo):
    with leaves_unchanged(demo):
        output = load(str(dumped), check=True)
    assert output.lines[-1] == (
        "Archive verified: 5 data files and 1 storages would be restored; nothing was changed"
    )
    assert dumped.exists()


def test_check_refuses_a_bad_archive(demo, tmp_path):
    archive = hostile(tmp_path, demo, ("../evil.txt", b"x", None))
    with pytest.raises(CommandError, match="escapes the archive"):
        load(str(archive), check=True)


# The default, batched load: the rows and signals of loaddata, in batches.


def rows() -> dict[str, list]:
    """Every demo and auth row with its primary key and relations."""
    from django.contrib.auth.models import User

    return {
        "books": sorted(
            Book.objects.values_list("pk", "title", "author_id", "added_by_id")
        ),
        "tags": sorted(Book.tags.through.objects.values_list("book_id", "tag_id")),
        "reviews": sorted(
            Review.objects.values_list("pk", "book_id", "reviewer_id", "rating")
        ),
        "users": sorted(User.objects.values_list("pk", "username", "password")),
        "groups": sorted(User.groups.through.objects.values_list("user_id", "group_id")),
        "permissions": sorted(
            User.user_permissions.through.objects.values_list(
                "user_id", "permission__codename"
            )
        ),
    }


@pytest.mark.django_db(transaction=True)
def test_batched_load_writes_the_same_rows_as_loaddata(demo, tmp_path):
    from django.contrib.auth.models import Permission, User

    User.objects.first().user_permissions.add(Permission.objects.get(codename="add_book"))
    before = rows()
    run_command("diskette_dump", "--no-storages", destination=tmp_path)
    archive = tmp_path / "diskette_data.tar.gz"
    wipe_database()
    output = load(str(archive), keep=True)
    assert rows() == before
    assert "Loading data from dump 'demo.jsonl'" in output.stdout
    wipe_database()
    load(str(archive), keep=True, loaddata=True)  # for comparison
    assert rows() == before


@pytest.mark.django_db(transaction=True)
def test_batched_load_of_an_everything_snapshot(demo, tmp_path):
    data = data_state(), shop_state()
    run_command("diskette_dump", "--everything", "--no-storages", destination=tmp_path)
    wipe_database()
    load(str(tmp_path / "diskette_data.tar.gz"))
    assert (data_state(), shop_state()) == data


@pytest.mark.parametrize("loaddata", [True, False], ids=["loaddata", "batched"])
@pytest.mark.django_db(transaction=True)
def test_a_load_over_the_rows_it_holds_updates_them(demo, tmp_path, loaddata):
    """``--overwrite`` onto the archive's own rows, changed since: every model
    kind is updated in place, polymorphic ones included, never inserted twice."""
    from shop.models import Circle, Coupon, Shape

    data = data_state(), shop_state()
    run_command("diskette_dump", "--no-storages", destination=tmp_path)
    book = Book.objects.order_by("pk").first()
    book.tags.set(Tag.objects.all())  # links the archive does not list must go
    Circle.objects.update(radius=1)
    Shape.objects.non_polymorphic().update(name="renamed")
    Coupon.objects.update(discount=0)
    load(str(tmp_path / "diskette_data.tar.gz"), loaddata=loaddata, overwrite=True)
    assert (data_state(), shop_state()) == data


def test_batched_load_refuses_data_it_cannot_place_and_changes_nothing(demo, tmp_path):
    appconf = tmp_path / "books.json"
    appconf.write_text('[["books", {"models": ["demo.Book"], "natural_foreign": true}]]')
    run_command("diskette_dump", "--no-storages", destination=tmp_path, appconf=appconf)
    wipe_database()
    Tag.objects.create(name="local")
    with pytest.raises(
        CommandError,
        match=r"^data 'data/books.jsonl' line 1 could not be loaded: "
        r".*demo.Author \[.*\] does not exist \(yet\)",
    ):
        load(str(tmp_path / "diskette_data.tar.gz"))
    assert list(Tag.objects.values_list("name", flat=True)) == ["local"]
    assert not Book.objects.exists()


def test_a_reference_to_a_row_nobody_loads_fails_the_load(demo, tmp_path):
    """Books by author id, without their authors: the check at the end (on
    PostgreSQL, the foreign key added back over the whole table) names the
    tables, and nothing stays."""
    appconf = tmp_path / "books.json"
    appconf.write_text('[["books", {"models": ["demo.Book"]}]]')
    run_command("diskette_dump", "--no-storages", destination=tmp_path, appconf=appconf)
    wipe_database()
    Tag.objects.create(name="local")
    with pytest.raises(CommandError, match=r"demo_book.*(demo_author|auth_user)"):
        load(str(tmp_path / "diskette_data.tar.gz"))
    assert list(Tag.objects.values_list("name", flat=True)) == ["local"]
    assert not Book.objects.exists()


def test_batched_load_loads_natural_primary_data_as_loaddata_does(demo, tmp_path):
    """Objects without a primary key are saved one by one, their key found
    by natural key as loaddata finds it: nothing loaddata loads may fail."""
    from demo.models import Author

    appconf = tmp_path / "keys.json"
    appconf.write_text(
        '[["authors", {"models": ["demo.Author"], "natural_primary": true}]]'
    )
    authors = sorted(Author.objects.values_list("name", flat=True))
    run_command("diskette_dump", "--no-storages", destination=tmp_path, appconf=appconf)
    wipe_database()
    load(str(tmp_path / "diskette_data.tar.gz"))
    assert sorted(Author.objects.values_list("name", flat=True)) == authors
    assert authors


def edit_data(source: Path, archive: Path, member: str, edit) -> list:
    """Copy ``source`` to ``archive`` with the objects of data ``member`` changed
    by ``edit`` (given the list, changes it in place); return them.

    The manifest loses its checksums, so that the edit is what a load meets,
    not a checksum mismatch.
    """
    objects: list = []
    with tarfile.open(source) as old, tarfile.open(archive, "w:gz") as new:
        for info in old.getmembers():
            content = old.extractfile(info).read() if info.isfile() else None
            if info.name == member:
                objects = [json.loads(line) for line in content.decode().splitlines()]
                edit(objects)
                content = "".join(json.dumps(obj) + "\n" for obj in objects).encode()
            if info.name == "manifest.json":
                manifest = json.loads(content)
                manifest.pop("members")
                content = json.dumps(manifest).encode()
            if content is not None:
                info.size = len(content)
            new.addfile(info, io.BytesIO(content) if content is not None else None)
    return objects


def test_batched_load_ignorenonexistent_skips_unknown_fields_and_models(demo, tmp_path):
    run_command("diskette_dump", "--no-storages", destination=tmp_path / "dump")
    archive = tmp_path / "edited.tar.gz"

    def edit(objects: list) -> None:
        for obj in objects:
            obj["fields"]["colour"] = "red"
        objects.append({"model": "demo.gone", "pk": 1, "fields": {}})

    edit_data(tmp_path / "dump" / "diskette_data.tar.gz", archive, "data/demo.jsonl", edit)
    wipe_database()
    with pytest.raises(CommandError, match="could not be loaded: .*colour"):
        load(str(archive), keep=True)
    load(str(archive), ignorenonexistent=True)
    assert Book.objects.count() == 12 and Tag.objects.count() == 13


@pytest.mark.django_db(transaction=True)
def test_batched_load_keeps_no_log_of_its_inserts_with_debug_on(demo, tmp_path):
    """DEBUG's query log would hold thousands of batch inserts at scale."""
    run_command("diskette_dump", "--no-storages", destination=tmp_path)
    wipe_database()
    reset_queries()  # the project fixture's DEBUG logged the seeding
    connection.force_debug_cursor = True  # what DEBUG = True does
    try:
        with connection.cursor() as cursor:  # the caller's query: it stays logged
            cursor.execute("SELECT 1 AS before_the_load")
        load(str(tmp_path / "diskette_data.tar.gz"))
        logged = [query["sql"] for query in connection.queries]
    finally:
        connection.force_debug_cursor = False
    assert Book.objects.count() == 12
    inserts = [sql for sql in logged if sql.startswith("INSERT")]
    own_row = connection.ops.quote_name("diskette_load")  # "…" or `…` (MySQL)
    assert len(inserts) == 1 and own_row in inserts[0]  # the load's own row
    assert "SELECT 1 AS before_the_load" in logged


def test_batched_load_cache_keys_match_the_file_and_keep_keys_apart():
    """A key read from the file finds the same key read from the database."""
    from diskette.fastload import pack, pack_natural

    assert pack(["The Title", "Ann Writer"]) == pack_natural(("The Title", "Ann Writer"))
    assert pack(["2024-05-01"]) == pack_natural((datetime.date(2024, 5, 1),))
    assert pack([None]) != pack(["None"])
    assert pack([1]) != pack(["1"])
    assert pack(["a", "b,c"]) != pack(["a,b", "c"])
    assert pack_natural((b"\x00",)) != pack(["\x00"])  # no bytes in JSON: not refused


def test_batched_load_reads_json_arrays_of_older_archives(demo, tmp_path):
    data = data_state()
    archive = legacy_archive(tmp_path, demo, lambda name, objects: None)
    wipe(demo)
    output = load(str(archive))
    assert "Warning" not in output.stderr  # JSON arrays are read as JSON Lines
    assert data_state() == data


def _lock_is_free(other) -> bool:
    """Whether ``other`` (a second connection) could take the loads' lock now."""
    from diskette.load import ADVISORY_LOCK

    with other.cursor() as cursor:
        if other.vendor == "postgresql":
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK])
            (free,) = cursor.fetchone()
            if free:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK])
            return free
        name = f"diskette-load:{other.settings_dict['NAME']}"[:64]
        cursor.execute("SELECT GET_LOCK(%s, 0)", [name])
        (free,) = cursor.fetchone()
        if free == 1:
            cursor.execute("SELECT RELEASE_LOCK(%s)", [name])
        return free == 1


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite: the load's first write locks the file"
)
@pytest.mark.django_db(transaction=True)
def test_a_load_holds_the_lock_that_keeps_two_loads_apart():
    """Two loads into one empty database must not both find it empty and merge:
    while one runs (its transaction), no other session may take the lock."""
    from django.db import DEFAULT_DB_ALIAS, connections

    from diskette.load import _alone

    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        assert _lock_is_free(other)
        with _alone(DEFAULT_DB_ALIAS):
            assert not _lock_is_free(other)
        assert _lock_is_free(other)
    finally:
        other.close()


@pytest.mark.parametrize("loaddata", [True, False], ids=["loaddata", "batched"])
@pytest.mark.django_db(transaction=True)
def test_natural_keys_are_read_as_the_load_rewrites_them(demo, tmp_path, loaddata):
    """Over existing rows a natural key can move while the load runs: row 20
    is "Pasta" here, the archive renames it and gives "Pasta" to another
    row; the categories under "Pasta" must get the archive's, not row 20."""
    from shop.models import Category

    run_command("diskette_dump", "--no-storages", destination=tmp_path)
    archive = tmp_path / "edited.tar.gz"

    def edit(objects: list) -> None:
        first = next(i for i, o in enumerate(objects) if o["model"] == "shop.category")
        renamed = {"name": "Old pasta", "parent": None}
        objects.insert(first + 1, {"model": "shop.category", "pk": 20, "fields": renamed})

    objects = edit_data(tmp_path / "diskette_data.tar.gz", archive, "data/shop.jsonl", edit)
    expected = {
        o["fields"]["name"]: (o["fields"]["parent"] or [None])[0]
        for o in objects
        if o["model"] == "shop.category"
    }
    assert "Pasta" in expected.values()  # some categories sit under "Pasta"
    wipe_database()
    Category.objects.create(pk=20, name="Pasta")

    load(str(archive), loaddata=loaddata, overwrite=True)

    loaded = {c.name: c.parent.name if c.parent else None for c in Category.objects.all()}
    assert loaded == expected


def test_a_batch_the_database_refuses_is_named_by_its_lines(demo, tmp_path):
    """Two books with one title and author: the batch's INSERT fails, and the
    error names the lines written together, and the database's reason."""
    run_command("diskette_dump", "--no-storages", destination=tmp_path)
    archive = tmp_path / "twins.tar.gz"

    def twin(objects):
        books = [o for o in objects if o["model"] == "demo.book"]
        books[1]["fields"]["title"] = books[0]["fields"]["title"]
        books[1]["fields"]["author"] = books[0]["fields"]["author"]

    edit_data(tmp_path / "diskette_data.tar.gz", archive, "data/demo.jsonl", twin)
    wipe_database()
    with pytest.raises(
        CommandError,
        match=r"^data 'data/demo.jsonl' lines? \d+( to \d+)? \(written together\) "
        r"could not be loaded: .*(unique|UNIQUE|Duplicate)",
    ):
        load(str(archive))
    assert not Book.objects.exists()


@pytest.mark.parametrize("loaddata", [True, False], ids=["loaddata", "batched"])
def test_an_object_with_a_null_key_gets_a_new_one(demo, tmp_path, loaddata):
    """``"pk": null`` is a new row, numbered by the database, as loaddata reads it."""
    run_command("diskette_dump", "--no-storages", destination=tmp_path)
    archive = tmp_path / "new-tag.tar.gz"

    def add_tag(objects):
        objects.append({"model": "demo.tag", "pk": None, "fields": {"name": "fresh"}})

    edit_data(tmp_path / "diskette_data.tar.gz", archive, "data/demo.jsonl", add_tag)
    wipe_database()
    load(str(archive), loaddata=loaddata)
    assert Tag.objects.get(name="fresh").pk is not None


def test_a_callable_default_is_not_called_for_a_value_the_data_gives(
    demo, tmp_path, monkeypatch
):
    """As ``Model(**data)``: an order's UUID comes from the data, so ``uuid4``
    (which could be a sequence's nextval) is never called."""
    from shop.models import Order

    run_command("diskette_dump", "--no-storages", destination=tmp_path)
    orders = sorted(Order.objects.values_list("pk", flat=True))
    wipe_database()
    calls = []

    def counted():
        calls.append(1)
        return uuid.uuid4()

    field = Order._meta.get_field("id")
    monkeypatch.setattr(field, "default", counted)
    monkeypatch.setattr(field, "_get_default", counted)  # Django caches the default
    assert field.get_default() and calls == [1]  # so the check below means something
    calls.clear()
    load(str(tmp_path / "diskette_data.tar.gz"))
    assert sorted(Order.objects.values_list("pk", flat=True)) == orders
    assert orders and calls == []
