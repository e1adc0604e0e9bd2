"""Deltas: a dump that leaves out what the loading side has, and its load.

One project plays both sides: its media as they were (the laptop) are
listed by ``diskette_index``, then changed (the host), dumped against the
list, and put back as they were before the delta loads onto them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from demo.models import Book
from demo.state import data_state
from diskette import delta, journal, mediaindex
from diskette import load as load_module
from diskette.archive import read_manifest
from diskette.delta import sidecar_of
from diskette.mediaindex import index_path
from tests.conftest import archive_members, run_command, tree_state
from tests.test_load_command import wipe_database

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_excluded_files(demo: Path) -> None:
    """Remove the files the sandbox excludes from dumps (as ``dumped`` does):
    only media that travel are compared."""
    for excluded in ("cache/generated.txt", "public/thumbnails/generated.txt"):
        (demo / "var" / "media" / excluded).unlink()


def media_files(media: Path) -> list[Path]:
    return sorted(p for p in media.rglob("*") if p.is_file())


def age(media: Path) -> None:
    """Date the media a minute back: files written within the index's
    racy window are read again each time (``mediaindex.RACY_NS``)."""
    past = time.time() - 60
    for path in media_files(media):
        os.utime(path, (past, past))


def index(project: Path, name: str = "have.json") -> Path:
    output = project / name
    run_command("diskette_index", "--output", str(output))
    return output


def dump_json(*args: str) -> dict:
    return json.loads(run_command("diskette_dump", "--json", *args).stdout)


@pytest.fixture
def sides(demo: Path, tmp_path: Path):
    """The laptop's media (a copy, as they were) and the host's (changed).

    The host rewrites one file, adds one and removes one; the rest stays.
    """
    media = demo / "var" / "media"
    have = index(demo)
    laptop = tmp_path / "laptop-media"
    shutil.copytree(media, laptop, symlinks=True)
    files = media_files(media)
    changed, removed = files[0], files[1]
    changed.write_bytes(changed.read_bytes() + b"changed on the host")
    removed.unlink()
    (media / "new-on-host.bin").write_bytes(os.urandom(5000))
    return media, laptop, have, (changed, removed)


def as_laptop(media: Path, laptop: Path) -> None:
    """Put the laptop's media back in place of the host's."""
    shutil.rmtree(media)
    shutil.copytree(laptop, media, symlinks=True)


def test_a_delta_carries_only_what_changed_and_loads_the_hosts_media(sides):
    media, laptop, have, (changed, removed) = sides
    host_tree, host_data = tree_state(media), data_state()

    answer = dump_json("--base", str(have))

    archive = Path(answer["archive"])
    names = {n for n in archive_members(archive) if n.startswith("var/media/")}
    files = {n for n in names if (media / n.removeprefix("var/media/")).is_file()}
    assert files == {
        f"var/media/{changed.relative_to(media)}",
        "var/media/new-on-host.bin",
    }
    manifest = read_manifest(archive)
    assert manifest["format"] == 2
    kept = manifest["delta"]["kept"]
    assert len(kept) == len(media_files(media)) - 2 == answer["kept"]
    assert f"var/media/{removed.relative_to(media)}" not in kept
    assert answer["kept_bytes"] == sum(entry["size"] for entry in kept.values())

    as_laptop(media, laptop)
    wipe_database()
    output = run_command("diskette_load", str(archive), "--json")

    assert json.loads(output.stdout)["restored"] == ["var/media"]
    assert tree_state(media) == host_tree and data_state() == host_data
    assert not removed.exists()


def test_kept_files_are_linked_not_copied(sides):
    media, laptop, have, _ = sides
    archive = Path(dump_json("--base", str(have))["archive"])
    kept = read_manifest(archive)["delta"]["kept"]
    as_laptop(media, laptop)
    before = {p.relative_to(media): p.stat().st_ino for p in media_files(media)}
    wipe_database()

    run_command("diskette_load", str(archive))

    for name in kept:
        relative = Path(name.removeprefix("var/media/"))
        assert (media / relative).stat().st_ino == before[relative]


def test_a_delta_refuses_a_machine_that_lacks_a_kept_file_and_changes_nothing(sides):
    media, laptop, have, _ = sides
    archive = Path(dump_json("--base", str(have))["archive"])
    as_laptop(media, laptop)
    lost = media_files(media)[-1]
    lost.unlink()
    tree, data = tree_state(media), data_state()
    wipe_database()
    empty = data_state()

    with pytest.raises(
        CommandError, match=rf"is a delta that needs 'var/media/.*{lost.name}'"
    ):
        run_command("diskette_load", str(archive))

    assert tree_state(media) == tree and data_state() == empty != data
    with pytest.raises(CommandError, match="load a whole archive instead"):
        run_command("diskette_load", str(archive), "--check")


def test_a_kept_file_that_moved_or_changed_here_is_found_by_its_sha256(sides):
    media, laptop, have, _ = sides
    host_tree = tree_state(media)
    archive = Path(dump_json("--base", str(have))["archive"])
    as_laptop(media, laptop)
    moved = media_files(media)[-1]
    content = moved.read_bytes()
    moved.rename(media / "moved-here.bin")
    twin = media_files(media)[-2]
    twin_content = twin.read_bytes()
    twin.write_bytes(b"x" * len(twin_content))  # same size, other content
    (media / "copy-of-twin.bin").write_bytes(twin_content)
    wipe_database()

    run_command("diskette_load", str(archive))

    assert tree_state(media) == host_tree
    assert moved.read_bytes() == content and twin.read_bytes() == twin_content


def test_a_file_the_host_renamed_is_not_sent_again(demo):
    media = demo / "var" / "media"
    have = index(demo)
    renamed = media_files(media)[0]
    renamed.rename(media / "renamed-on-host.bin")

    answer = dump_json("--base", str(have))

    kept = read_manifest(Path(answer["archive"]))["delta"]["kept"]
    assert "var/media/renamed-on-host.bin" in kept
    assert "var/media/renamed-on-host.bin" not in archive_members(Path(answer["archive"]))
    assert answer["kept"] == len(media_files(media))


def test_a_kept_name_through_a_link_here_is_not_followed(sides, tmp_path):
    """A delta keeps 'var/media/sub/secret.bin'; here 'sub' is a link to a
    folder outside the storage holding a file of that content: not taken."""
    media, laptop, have, _ = sides
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.bin"
    secret.write_bytes(b"not media")
    archive = Path(dump_json("--base", str(have))["archive"])
    manifest = read_manifest(archive)
    manifest["delta"]["kept"]["var/media/sub/secret.bin"] = {
        "size": secret.stat().st_size,
        "sha256": hashlib.sha256(secret.read_bytes()).hexdigest(),
    }
    hostile = rewrite_manifest(archive, manifest, tmp_path / "hostile.tar.gz")
    as_laptop(media, laptop)
    (media / "sub").symlink_to(outside, target_is_directory=True)

    with pytest.raises(CommandError, match="needs 'var/media/sub/secret.bin'"):
        run_command("diskette_load", str(hostile), "--check")


@pytest.mark.parametrize("where", ["in place", "moved here"])
def test_a_kept_file_changed_during_the_load_stops_it(sides, monkeypatch, where):
    """Checked, then rewritten before the swap: the load refuses it, whether
    it stays where it is or is linked from where it moved."""
    media, laptop, have, (changed, removed) = sides
    archive = Path(dump_json("--base", str(have))["archive"])
    as_laptop(media, laptop)
    kept = next(p for p in media_files(media) if p not in (changed, removed))
    if where == "moved here":
        kept = kept.rename(media / "moved-here.bin")
    age(media)
    wipe_database()
    tree = tree_state(media)
    real = load_module.place_kept

    def rewrite_then_place(sources, place):
        kept.write_bytes(b"z" * kept.stat().st_size)
        return real(sources, place)

    monkeypatch.setattr(load_module, "place_kept", rewrite_then_place)
    with pytest.raises(CommandError, match="changed while it was being loaded"):
        run_command("diskette_load", str(archive))
    after = tree_state(media)  # the rewrite itself, and nothing else
    assert [
        name for name in sorted({*tree, *after}) if tree.get(name) != after.get(name)
    ] == [kept.relative_to(media).as_posix()]


def test_a_streamed_delta_finds_its_kept_files_as_surveyed_and_refuses_a_changed_one(
    sides, monkeypatch
):
    """Read from a pipe, the load surveys the media while the archive comes:
    the kept files are found by that survey, not looked at one by one
    again; one rewritten after the survey is still caught."""
    media, laptop, have, (changed, removed) = sides
    archive = Path(dump_json("--base", str(have))["archive"])
    as_laptop(media, laptop)
    kept = next(p for p in media_files(media) if p not in (changed, removed))
    age(media)
    index(media.parent.parent, "here.json")  # as a pull lists them first
    wipe_database()
    tree, data = tree_state(media), data_state()
    looked: list[str] = []
    lstat = delta.os.lstat

    def counted(path, *args, **kwargs):
        looked.append(os.fspath(path))
        return lstat(path, *args, **kwargs)

    real = load_module.kept_sources

    def rewrite_then_find(*args, **kwargs):
        kept.write_bytes(b"z" * kept.stat().st_size)
        monkeypatch.setattr(delta.os, "lstat", counted)
        try:
            return real(*args, **kwargs)
        finally:
            monkeypatch.setattr(delta.os, "lstat", lstat)

    monkeypatch.setattr(load_module, "kept_sources", rewrite_then_find)
    with archive.open("rb") as piped:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(piped))
        with pytest.raises(CommandError, match="changed while it was being loaded"):
            run_command("diskette_load", "-")

    # Every kept file was found as surveyed (only folders were looked at, to
    # tell where they really are).
    assert not set(looked) & {str(path) for path in media_files(media)}
    assert looked
    after = tree_state(media)  # the rewrite itself, and nothing else
    assert [
        name for name in sorted({*tree, *after}) if tree.get(name) != after.get(name)
    ] == [kept.relative_to(media).as_posix()]
    assert data_state() == data


def test_a_delta_renames_only_what_changed(sides, monkeypatch):
    """Kept files stay where they are: the swap moves the changed, added and
    removed files, not the whole tree, and leaves the host's tree."""
    media, laptop, have, (changed, removed) = sides
    host_tree = tree_state(media)
    archive = Path(dump_json("--base", str(have))["archive"])
    as_laptop(media, laptop)
    (media / "gone-folder").mkdir()
    (media / "gone-folder" / "local.bin").write_bytes(b"only here")
    wipe_database()
    renamed: list[str] = []
    rename = journal.os.rename

    def counted(source, target, **folders):
        # The swap renames within folders opened first: the source's is named
        # by /proc. (The load's data folder is renamed by path, in TMPDIR.)
        if "src_dir_fd" in folders:
            folder = os.readlink(f"/proc/self/fd/{folders['src_dir_fd']}")
            renamed.append(os.path.join(folder, source))
        return rename(source, target, **folders)

    monkeypatch.setattr(journal.os, "rename", counted)
    run_command("diskette_load", str(archive))

    assert tree_state(media) == host_tree
    outside_work = [p for p in renamed if ".diskette-load-" not in p]
    assert sorted(Path(p).relative_to(media).as_posix() for p in outside_work) == sorted(
        p.relative_to(media).as_posix() for p in (changed, removed, media / "gone-folder")
    )
    # Set aside: those three. Moved in: the changed file and the new one.
    assert len(renamed) == 3 + 2


def test_a_file_the_laptop_changed_is_sent_again(demo):
    media = demo / "var" / "media"
    have = index(demo)
    target = media_files(media)[0]
    target.write_bytes(b"y" * target.stat().st_size)  # what the host has differs

    answer = dump_json("--base", str(have))

    relative = f"var/media/{target.relative_to(media)}"
    assert relative in archive_members(Path(answer["archive"]))
    assert relative not in read_manifest(Path(answer["archive"]))["delta"]["kept"]


def test_with_nothing_in_common_the_archive_is_whole_and_loads_anywhere(demo):
    empty = demo / "nothing.json"
    empty.write_text(json.dumps({"format": 1, "storages": {}}))
    answer = dump_json("--base", str(empty))
    manifest = read_manifest(Path(answer["archive"]))
    assert answer["kept"] == 0 and manifest["format"] == 1
    assert "kept" not in manifest["delta"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not a list of media (JSON)"),
        ('{"format": 9, "storages": {}}', "is not a list of media of format 1"),
        ('{"format": 1, "storages": []}', "'storages' must map storages to their files"),
        (
            '{"format": 1, "storages": {"var/media": {"a": [1]}}}',
            "'var/media/a' must be [size, sha256]",
        ),
        (
            '{"format": 1, "storages": {"var/media": {"a": [-1, "' + "a" * 64 + '"]}}}',
            "'var/media/a' must be [size, sha256]",
        ),
        (
            '{"format": 1, "storages": {"var/media": {"a": [1, "not a sha256"]}}}',
            "'var/media/a' must be [size, sha256]",
        ),
    ],
)
def test_a_wrong_list_of_media_is_one_line(demo, content, message):
    wrong = demo / "wrong.json"
    wrong.write_text(content)
    with pytest.raises(
        CommandError, match=re.escape(f"--base '{wrong}'") + ":? " + re.escape(message)
    ):
        run_command("diskette_dump", "--base", str(wrong))
    assert not list((demo / "var").glob("*.tar.gz"))


def test_the_index_spares_reading_files_again(demo, monkeypatch):
    media = demo / "var" / "media"
    age(media)
    reads = []
    real = mediaindex.file_sha256
    monkeypatch.setattr(mediaindex, "file_sha256", lambda p: reads.append(p) or real(p))

    first = json.loads(index(demo, "first.json").read_text())
    assert len(reads) == len(media_files(media))
    assert index_path(media).is_file()
    reads.clear()
    second = json.loads(index(demo, "second.json").read_text())
    assert reads == [] and second == first

    touched = media_files(media)[0]
    touched.write_bytes(touched.read_bytes() + b"!")
    index(demo, "third.json")
    assert reads == [touched]


def test_a_load_indexes_what_it_put_in_place(demo, monkeypatch):
    media = demo / "var" / "media"
    age(media)  # the archive keeps their times, the load puts them back
    run_command("diskette_dump")
    archive = demo / "var" / "diskette_data_storages.tar.gz"
    wipe_database()
    index_path(media).unlink(missing_ok=True)
    run_command("diskette_load", str(archive))
    reads = []
    monkeypatch.setattr(mediaindex, "file_sha256", lambda p: reads.append(p))

    listed = json.loads(index(demo).read_text())

    assert reads == []
    assert len(listed["storages"]["var/media"]) == len(media_files(media))


def test_a_linked_snapshot_keeps_the_media_beside_it_and_loads_them_back(demo):
    media = demo / "var" / "media"
    tree, data = tree_state(media), data_state()

    answer = dump_json(
        "--everything", "--link-media", "--destination", str(demo / "backups")
    )

    archive = Path(answer["archive"])
    sidecar = sidecar_of(archive)
    assert sidecar.name == archive.name.removesuffix(".tar.gz") + ".media"
    assert not [
        n
        for n in archive_members(archive)
        if n.startswith("var/media/") and (media / n.removeprefix("var/media/")).is_file()
    ]
    for path in media_files(media):
        linked = sidecar / "var" / "media" / path.relative_to(media)
        assert linked.stat().st_ino == path.stat().st_ino
    assert answer["kept"] == len(media_files(media))

    shutil.rmtree(media)  # whatever happened since, the snapshot holds the media
    media.mkdir()
    (media / "later.bin").write_bytes(b"later")
    Book.objects.all().delete()
    wipe_database()
    run_command("diskette_load", str(archive), "--everything", "--keep")

    assert tree_state(media) == tree and data_state() == data
    assert archive.exists() and sidecar.is_dir()


def test_a_linked_snapshot_needs_its_media_folder(demo):
    answer = dump_json(
        "--everything", "--link-media", "--destination", str(demo / "backups")
    )
    archive = Path(answer["archive"])
    shutil.rmtree(sidecar_of(archive))
    shutil.rmtree(demo / "var" / "media")
    (demo / "var" / "media").mkdir()
    wipe_database()
    with pytest.raises(CommandError, match="is a delta that needs"):
        run_command("diskette_load", str(archive), "--everything")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--base", "x", "--link-media"), "--base and --link-media exclude each other"),
        (("--link-media", "--publish"), "--link-media makes an archive that loads only"),
        (("--base", "x", "--no-archive"), "--base makes an archive that loads only"),
    ],
)
def test_delta_options_refuse_what_they_cannot_do(demo, args, message):
    with pytest.raises(CommandError, match=message):
        run_command("diskette_dump", *args)


def rewrite_manifest(archive: Path, manifest: dict, target: Path) -> Path:
    """``archive`` with ``manifest`` in place of its own (members as they were)."""
    with tarfile.open(archive) as source, tarfile.open(target, "w:gz") as output:
        for member in source.getmembers():
            if member.name == "manifest.json":
                content = json.dumps(manifest).encode()
                member.size = len(content)
                output.addfile(member, io.BytesIO(content))
            else:
                output.addfile(
                    member, source.extractfile(member) if member.isfile() else None
                )
    return target


def test_thinning_a_whole_archive_keeps_what_the_list_has_and_loads(sides, tmp_path):
    """A push's delta, made from an archive made before: the same load."""
    media, laptop, have, _ = sides
    host_tree, host_data = tree_state(media), data_state()
    whole = Path(dump_json()["archive"])
    base = delta.read_base_file(str(have))

    made = delta.thin(whole, base, tmp_path / "thin.tar.gz")

    assert made is not None and made.kept == len(media_files(media)) - 2
    assert delta.thin(made.path, base, tmp_path / "again.tar.gz") is None  # a delta already
    empty = tmp_path / "nothing.json"
    empty.write_text(json.dumps({"format": 1, "storages": {}}))
    assert (
        delta.thin(whole, delta.read_base_file(str(empty)), tmp_path / "x.tar.gz") is None
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".diskette-")] == []
    as_laptop(media, laptop)
    wipe_database()
    run_command("diskette_load", str(made.path))
    assert tree_state(media) == host_tree and data_state() == host_data


def test_the_index_cache_forgets_what_nothing_uses(tmp_path):
    """Indexes of folders that are gone, and temporary files of killed
    writers, are removed by a later save, once a day at most."""
    gone, live = tmp_path / "gone", tmp_path / "live"
    for folder in (gone, live):
        folder.mkdir()
        (folder / "a.bin").write_bytes(b"a")
        index = mediaindex.MediaIndex(folder)
        index.scan()
        index.save()
    cache = index_path(live).parent
    shutil.rmtree(gone)
    killed = cache / "killed.json.x1.part"
    killed.write_text("{")
    hours_ago = time.time() - 2 * mediaindex.PART_AGE
    os.utime(killed, (hours_ago, hours_ago))
    writing = cache / "writing.json.x2.part"
    writing.write_text("{")
    yesterday = time.time() - mediaindex.SWEEP_EVERY - 60
    os.utime(cache / mediaindex.SWEPT, (yesterday, yesterday))

    (live / "b.bin").write_bytes(b"b")
    index = mediaindex.MediaIndex(live)
    index.scan()
    index.save()

    assert not index_path(gone).exists() and not killed.exists()
    assert index_path(live).exists() and writing.exists()
    # Swept just now: not again before a day has passed.
    shutil.rmtree(live)
    assert mediaindex.sweep(cache) == []
    assert index_path(live).exists()
