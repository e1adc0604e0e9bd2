"""The local project decides what an archive may touch, and guards hold.

Every archive here is hostile or foreign; each test first makes the local
data and media differ from any archive (``leaves_unchanged``), so any write
would show, and checks the one-line refusal.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from demo.models import Book
from demo.state import data_state
from diskette import journal
from tests.conftest import run_command, tmpfs, tree_state
from tests.projects import SandboxCopy
from tests.test_load_command import (
    _add,
    dumped,  # noqa: F401 - a fixture
    leaves_unchanged,
    legacy_archive,
    load,
    rebuild,
    wipe,
)

# Storages: only those DISKETTE_STORAGES declares.


def test_an_archive_storage_naming_the_project_code_is_refused(demo, tmp_path):
    """The red team's critical finding: a manifest storage 'project' would have
    replaced the project's own Python package, run on the next manage.py."""
    code = demo / "project"
    code.mkdir()
    (code / "settings.py").write_text("import os; os.system('touch /tmp/pwned')\n")
    archive = legacy_archive(
        tmp_path, demo, lambda name, objects: None, storages=("var/media", "project")
    )
    (code / "settings.py").write_text("SAFE = True\n")  # the project's own code
    with leaves_unchanged(demo), pytest.raises(CommandError) as refused:
        load(str(archive), overwrite=True)
    assert str(refused.value) == (
        "the archive holds storage 'project', which DISKETTE_STORAGES does not declare "
        "here (declared: 'var/media'): declare it, or load with --no-storages"
    )
    assert (code / "settings.py").read_text() == "SAFE = True\n"
    assert not list(code.glob(".diskette-*"))


def test_a_declared_storage_restores_and_an_undeclared_one_needs_no_storages(
    demo, tmp_path, settings
):
    (demo / "var" / "other").mkdir()
    (demo / "var" / "other" / "o.txt").write_text("other")
    archive = legacy_archive(
        tmp_path, demo, lambda name, objects: None, storages=("var/media", "var/other")
    )
    wipe(demo)
    (demo / "var" / "other" / "o.txt").write_text("local")
    load(str(archive), keep=True, no_storages=True)  # data only: accepted
    assert Book.objects.count() == 12
    assert (demo / "var" / "other" / "o.txt").read_text() == "local"
    settings.DISKETTE_STORAGES = ["var/media", "var/other"]
    load(str(archive), overwrite=True)
    assert (demo / "var" / "other" / "o.txt").read_text() == "other"


def test_members_named_like_the_work_folders_are_refused(demo, tmp_path):
    archive = legacy_archive(
        tmp_path,
        demo,
        lambda name, objects: None,
        extra=[("var/media/.diskette-load-x/journal.json", b"{}", None)],
    )
    with (
        leaves_unchanged(demo),
        pytest.raises(CommandError, match="named like diskette's own work folders"),
    ):
        load(str(archive), overwrite=True)


# Models: only those the local definitions cover.


def slip_in(extra: list[dict]):
    def change(name, objects):
        if name == "data/demo.json":
            objects.extend(extra)

    return change


ADMIN = {
    "model": "auth.user",
    "pk": 1,
    "fields": {
        "username": "admin",
        "password": "md5$known$hash",
        "is_superuser": True,
        "is_staff": True,
        "date_joined": "2020-01-01T00:00:00Z",
    },
}
SESSION = {
    "model": "sessions.session",
    "pk": "x" * 32,
    "fields": {"session_data": "x", "expire_date": "2030-01-01T00:00:00Z"},
}


@pytest.mark.parametrize("loaddata", [True, False], ids=["loaddata", "batched"])
def test_a_model_the_definitions_do_not_cover_is_refused(demo, tmp_path, loaddata):
    """A session (not in DISKETTE_APPS) slipped into the demo data file."""
    archive = legacy_archive(tmp_path, demo, slip_in([SESSION]))
    with leaves_unchanged(demo), pytest.raises(CommandError) as refused:
        load(str(archive), overwrite=True, loaddata=loaddata)
    assert str(refused.value) == (
        "data 'data/demo.json' holds sessions.session objects, a model DISKETTE_APPS "
        "does not cover here: add it to a definition if this project should load it"
    )


def test_check_refuses_a_model_the_definitions_do_not_cover(demo, tmp_path):
    """So reset-and-load refuses such an archive before it drops anything."""
    archive = legacy_archive(tmp_path, demo, slip_in([SESSION]))
    with leaves_unchanged(demo), pytest.raises(CommandError, match="sessions.session"):
        load(str(archive), check=True)


@pytest.mark.parametrize("loaddata", [True, False], ids=["loaddata", "batched"])
def test_a_model_the_manifest_does_not_list_for_its_file_is_refused(
    demo, tmp_path, loaddata
):
    """A covered model (auth.User: the admin, with a known password) hidden in
    the demo data file, its size recorded so the archive verifies."""
    admin = User.objects.create_superuser("admin", password="local")
    source = rebuild(tmp_path, demo, lambda manifest: None)
    smuggled = (json.dumps({**ADMIN, "pk": admin.pk}) + "\n").encode()
    archive = tmp_path / "smuggled.tar.gz"
    with tarfile.open(source) as old, tarfile.open(archive, "w:gz") as new:
        manifest = json.loads(old.extractfile("manifest.json").read())
        demo_data = old.extractfile("data/demo.jsonl").read() + smuggled
        manifest["members"]["data/demo.jsonl"] = {"size": len(demo_data)}
        for info in old.getmembers():
            if info.name == "data/demo.jsonl":
                _add(new, info.name, demo_data)
            elif info.name == "manifest.json":
                _add(new, info.name, json.dumps(manifest).encode())
            else:
                new.addfile(info, old.extractfile(info) if info.isfile() else None)
    with leaves_unchanged(demo), pytest.raises(CommandError) as refused:
        load(str(archive), overwrite=True, loaddata=loaddata)
    assert "holds auth.user objects, which the archive's manifest does not list" in str(
        refused.value
    )
    admin.refresh_from_db()
    assert admin.check_password("local")


@pytest.mark.parametrize(
    "name, message",
    [
        ("data/demo.json.gz", "is neither .json nor .jsonl"),
        ("data/demo.yaml", "is neither .json nor .jsonl"),
    ],
)
def test_data_members_are_plain_json_only(demo, tmp_path, name, message):
    archive = tmp_path / "odd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, name, b"x")
        manifest = {"version": "0.6.0", "creation": "", "datas": [name], "storages": []}
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    with leaves_unchanged(demo), pytest.raises(CommandError, match=re.escape(message)):
        load(str(archive), overwrite=True)


@pytest.mark.parametrize("member", ["data/demo.jsonl", "data/demo.json"])
def test_an_object_over_the_limit_is_refused(demo, tmp_path, member):
    """One object of 72 MB (36 million two-byte characters, so under the limit
    if it counted characters; 64 KiB compressed) is not read as one object."""
    obj = json.dumps(
        {"model": "demo.tag", "pk": 1, "fields": {"name": "é" * 36_000_000}},
        ensure_ascii=False,
    )
    content = obj + "\n" if member.endswith(".jsonl") else f"[{obj}]"
    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        _add(tar, member, content.encode())
        manifest = {"version": "1", "creation": "", "datas": [member], "storages": []}
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    with leaves_unchanged(demo), pytest.raises(CommandError) as refused:
        load(str(archive), overwrite=True)
    assert str(refused.value) == (
        f"data '{member}' object 1 is over 64 MiB, more than diskette reads as one object"
    )


# Guards.


def test_debug_false_refuses_unless_force(dumped, demo, settings):  # noqa: F811
    wipe(demo)
    settings.DEBUG = False
    with pytest.raises(CommandError) as refused:
        load(str(dumped))
    assert str(refused.value) == (
        "DEBUG is False, so this database may be production: refusing to load into it "
        "(add --force if you mean it)"
    )
    assert not Book.objects.exists() and dumped.exists()
    load(str(dumped), force=True)
    assert Book.objects.count() == 12


def test_a_protected_project_refuses_even_with_force(dumped, demo, settings):  # noqa: F811
    wipe(demo)
    settings.DISKETTE_PROTECTED = True
    for options in ({}, {"force": True}):
        with pytest.raises(CommandError, match="this project sets DISKETTE_PROTECTED"):
            load(str(dumped), keep=True, **options)
    assert not Book.objects.exists()
    load(str(dumped), override_protection=True)
    assert Book.objects.count() == 12


def test_a_populated_database_is_refused_unless_overwrite(dumped, demo):  # noqa: F811
    before = data_state(), tree_state(demo / "var" / "media")
    with pytest.raises(CommandError) as refused:
        load(str(dumped), keep=True)
    assert str(refused.value).startswith("the database already holds auth.Group, auth.User")
    assert str(refused.value).endswith("or add --overwrite if you mean it")
    assert (data_state(), tree_state(demo / "var" / "media")) == before
    load(str(dumped), overwrite=True)
    assert Book.objects.count() == 12


def test_rows_migrate_creates_do_not_count_as_data(dumped, demo, settings):  # noqa: F811
    """The default site, content types and permissions come with migrate."""
    from django.contrib.sites.models import Site

    wipe(demo)
    Site.objects.get_or_create(
        pk=settings.SITE_ID, defaults={"domain": "example.com", "name": "example.com"}
    )
    load(str(dumped), keep=True)  # accepted
    wipe(demo)
    Site.objects.create(domain="mine.example", name="mine")
    with pytest.raises(CommandError, match="the database already holds sites.Site data"):
        load(str(dumped))


# Bombs: bounded memory and disk whatever the archive claims.


def gzip_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, content in members:
            _add(tar, name, content)
    return path


@pytest.mark.subprocess
def test_a_manifest_of_millions_of_containers_is_refused_before_parsing(tmp_path):
    copy = SandboxCopy.create(tmp_path / "project")
    body = (
        b'{"format": 1, "datas": [], "storages": [], "x": [' + b"{}," * 5_000_000 + b"{}]}"
    )
    archive = gzip_tar(tmp_path / "manifest-bomb.tar.gz", [("manifest.json", body)])
    result, peak = copy.manage_measured("diskette_load", str(archive), "--check")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "CommandError: manifest.json holds 5000005 JSON objects and arrays for 0 "
        "members: not a manifest diskette wrote"
    )
    assert peak < 150 * 2**20  # parsing it would take over a gigabyte


@pytest.mark.subprocess
def test_a_deeply_nested_manifest_is_one_line(tmp_path):
    copy = SandboxCopy.create(tmp_path / "project")
    body = b'{"datas": [], "storages": [], "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    archive = gzip_tar(tmp_path / "nested.tar.gz", [("manifest.json", body)])
    result = copy.manage("diskette_load", str(archive), "--check", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: manifest.json is nested too deeply"
    ]


@pytest.fixture
def media_mount(project: Path) -> Iterator[Path]:
    """``var/media`` as a 48 MiB tmpfs mount point of its own."""
    with tmpfs(project / "var" / "media", "48m") as media:
        yield media


def used(folder: Path) -> int:
    status = os.statvfs(folder)
    return (status.f_blocks - status.f_bfree) * status.f_frsize


@pytest.mark.django_db(transaction=True)
def test_media_on_its_own_mount_point_is_restored_in_place(media_mount, project, tmp_path):
    """A mount point cannot be renamed (EBUSY): its contents are swapped."""
    call_command("demo_seed", books=12, users=4, stdout=io.StringIO())
    for excluded in ("cache/generated.txt", "public/thumbnails/generated.txt"):
        (media_mount / excluded).unlink()  # excluded from dumps, so never restored
    data, media = data_state(), tree_state(media_mount)
    run_command("diskette_dump", destination=tmp_path)
    wipe(project)
    (media_mount / "local-only.txt").write_text("local")
    load(str(tmp_path / "diskette_data_storages.tar.gz"))
    assert os.path.ismount(media_mount)
    assert (data_state(), tree_state(media_mount)) == (data, media)


def test_a_member_larger_than_the_free_space_is_refused_before_writing(
    media_mount, demo, tmp_path
):
    """64 MiB of zeros (64 KiB compressed) onto a 48 MiB disk: refused from its
    header, with nothing written; the disk is as full as before."""
    zeros = bytes(64 * 2**20)
    archive = tmp_path / "zeros.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        _add(tar, "var/media/zeros.bin", zeros)
        manifest = {
            "format": 1,
            "datas": [],
            "storages": ["var/media"],
            "members": {"var/media/zeros.bin": {"size": len(zeros)}},
        }
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    before = used(media_mount), tree_state(media_mount)
    with pytest.raises(CommandError) as refused:
        load(str(archive), no_data=True)
    assert re.fullmatch(
        r"member 'var/media/zeros.bin' \(67108864 bytes\) does not fit on the disk of "
        r"'.*/var/media/\.diskette-load-\w+/new': it lacks space; free some there "
        r"\(diskette keeps 16 MiB free\) or restore elsewhere",
        str(refused.value),
    )
    assert (used(media_mount), tree_state(media_mount)) == before


def test_media_set_aside_by_an_earlier_diskette_is_pointed_out_never_removed(demo):
    aside = demo / "var" / ".media.diskette-previous-1a2b3c4d"
    aside.mkdir()
    (aside / "only-copy.bin").write_bytes(b"old media")
    output = run_command("diskette_dump", "--check")
    assert (
        f"'{aside}' was left by an interrupted load of an earlier diskette: it holds "
        "the media 'media' had before that load; compare it with your media, then "
        "remove it"
    ) in output.stderr
    assert (aside / "only-copy.bin").read_bytes() == b"old media"


@pytest.mark.parametrize(
    "old", [["../../project"], ["covers/../../../project"], [".diskette-load-x/new"]]
)
def test_a_planted_journal_cannot_move_files_from_outside_the_storage(demo, old):
    """A journal naming '..' entries, or diskette's own folders, is refused in
    one line, and nothing moves."""
    work = plant_work_folder(demo / "var" / "media")
    (work / "journal.json").write_text(
        json.dumps({"load": "x", "state": "swapping", "old": old, "new": []})
    )
    before = tree_state(demo)
    with pytest.raises(CommandError, match="'old' is not a list of entry paths"):
        run_command("diskette_dump", "--check")
    assert tree_state(demo) == before


def plant_work_folder(media: Path) -> Path:
    """A work folder as a load makes one (``new/`` and ``old/`` in it), of
    this user."""
    work = media / ".diskette-load-planted"
    (work / "new").mkdir(parents=True)
    (work / "old").mkdir()
    work.chmod(0o700)
    return work


@pytest.mark.parametrize("linked", ["source", "target"])
def test_a_swap_never_moves_through_a_folder_swapped_for_a_link(tmp_path, linked):
    """Between the journal's checks and a rename, someone who can write in
    the storage could swap a folder for a link: each folder on the way is
    opened without following links, so the rename fails instead of moving
    a file from (or into) wherever the link leads."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b").write_text("not media")
    source, target = tmp_path / "storage", tmp_path / "aside"
    for root in (source, target):
        root.mkdir()
    if linked == "source":
        (source / "a").symlink_to(outside, target_is_directory=True)
    else:
        (source / "a").mkdir()
        (source / "a" / "b").write_text("media")
        (target / "a").symlink_to(outside, target_is_directory=True)
        (outside / "b").unlink()

    folders = [os.open(root, os.O_RDONLY | os.O_DIRECTORY) for root in (source, target)]
    try:
        with pytest.raises(OSError):
            journal._move(*folders, "a/b", make_parents=True)
    finally:
        for folder in folders:
            os.close(folder)

    assert sorted(p.name for p in outside.iterdir()) == (
        ["b"] if linked == "source" else []
    )


def test_a_work_folder_swapped_for_a_link_leads_nowhere(tmp_path):
    """The work folder itself swapped for a link once its journal was read:
    its ``new/`` and ``old/`` are opened through no link below the storage,
    so nothing of the storage moves to where the link leads."""
    storage, elsewhere, victim = (tmp_path / n for n in ("storage", "evil", "victim"))
    for folder in (storage, elsewhere, victim):
        folder.mkdir()
    (storage / "payload.bin").write_text("media")
    (elsewhere / "new").mkdir()
    (elsewhere / "old").symlink_to(victim, target_is_directory=True)
    work = storage / ".diskette-load-swapped"
    work.symlink_to(elsewhere, target_is_directory=True)

    with pytest.raises(OSError):
        journal._forward(storage, work, ["payload.bin"], [])

    assert (storage / "payload.bin").read_text() == "media"
    assert list(victim.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a folder to another user")
def test_a_work_folder_of_another_user_is_not_recovered(demo):
    """A load makes its work folder as the user it runs as: one of another
    user's (planted by whoever can write in the storage, as the web server)
    is refused whatever its journal says."""
    media = demo / "var" / "media"
    work = plant_work_folder(media)
    victim = sorted(p for p in media.rglob("*") if p.is_file())[0]
    (work / "journal.json").write_text(
        json.dumps(
            {
                "load": "x",
                "state": "swapping",
                "old": [victim.relative_to(media).as_posix()],
                "new": [],
            }
        )
    )
    for path in (work, *work.rglob("*")):
        os.chown(path, 65534, 65534, follow_symlinks=False)  # nobody's
    before = tree_state(demo)
    with pytest.raises(CommandError, match="it belongs to another user"):
        run_command("diskette_dump", "--check")
    assert tree_state(demo) == before


@pytest.mark.parametrize("root", ["media", "new", "old"])
def test_a_planted_journal_cannot_reach_through_a_link(demo, tmp_path, root):
    """A delta's journal lists paths deep in the storage: one whose folder is
    a link (planted in the storage or in the work folder) would move files
    from wherever it leads. Refused, naming the link; nothing moves."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not media")
    media = demo / "var" / "media"
    work = plant_work_folder(media)
    link = (media if root == "media" else work / root) / "reach"
    link.symlink_to(outside, target_is_directory=True)
    (work / "journal.json").write_text(
        json.dumps(
            {"load": "x", "state": "swapping", "old": ["reach/secret.txt"], "new": []}
        )
    )
    before = tree_state(demo), tree_state(outside)
    with pytest.raises(CommandError, match=rf"'{link}' is a symbolic link"):
        run_command("diskette_dump", "--check")
    assert (tree_state(demo), tree_state(outside)) == before


def test_a_flood_of_tiny_files_is_refused_before_the_disk_fills(
    media_mount, demo, tmp_path
):
    """20,000 one-byte files (a few hundred KiB compressed) take 160 MB as a disk
    stores them: counted in blocks, refused long before the 48 MiB disk fills."""
    archive = tmp_path / "flood.tar.gz"
    members = {}
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for index in range(20_000):
            name = f"var/media/flood/{index:05}"
            _add(tar, name, b"x")
            members[name] = {"size": 1}
        manifest = {"format": 1, "datas": [], "storages": ["var/media"], "members": members}
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    before = used(media_mount), tree_state(media_mount)
    with pytest.raises(
        CommandError, match=r"does not fit on the disk of .*: it lacks space"
    ):
        load(str(archive), no_data=True)
    assert (used(media_mount), tree_state(media_mount)) == before


def test_a_chain_of_symlinks_cannot_lead_out_of_the_storage(demo, tmp_path):
    """Each link alone stays inside ('s -> .', 'u -> s/..' reads as '.'), but
    followed on disk 'v' is the project root: a link through a link is refused."""
    chain = [
        ("var/media/s", None, "."),
        ("var/media/u", None, "s/.."),
        ("var/media/v", None, "u/.."),
        ("var/media/code", None, "v/project"),
    ]
    archive = legacy_archive(tmp_path, demo, lambda name, objects: None, extra=chain)
    with leaves_unchanged(demo), pytest.raises(CommandError) as refused:
        load(str(archive), overwrite=True)
    assert str(refused.value) == (
        "symlink 'var/media/u' leads through symlink 'var/media/s', which diskette never "
        "writes"
    )


def test_a_planted_work_folder_whose_parts_are_symlinks_moves_nothing(demo):
    code = demo / "project"
    code.mkdir()
    (code / "settings.py").write_text("SECRET = 1\n")
    work = demo / "var" / "media" / ".diskette-load-planted"
    (work / "new").mkdir(parents=True)
    (work / "old").symlink_to(code)
    (work / "journal.json").write_text(
        json.dumps({"load": "0", "state": "swapping", "old": ["settings.py"], "new": []})
    )
    before = tree_state(demo)
    with pytest.raises(CommandError, match="'old' is not a folder"):
        run_command("diskette_dump", "--check")
    assert tree_state(demo) == before


def test_a_storage_symlinked_to_an_ancestor_is_never_emptied(dumped, demo):  # noqa: F811
    media = demo / "var" / "media"
    shutil.rmtree(media)
    media.symlink_to(demo)  # a slip in the project's own layout
    before = tree_state(demo)
    with pytest.raises(CommandError, match="which holds the storage itself"):
        load(str(dumped), overwrite=True)
    assert tree_state(demo) == before


@pytest.mark.parametrize(
    "line",
    [
        b'{"model": "demo.tag", "pk": 1, "fields": {"name": "caf\\u00e9 \xe2\x9c\x93"}}\n',
        b'{"value": NaN, "more": -Infinity}',  # what json writes for a float field
        b'{"big": 123456789012345678901234567890}',  # past orjson's 64 bits
        b'{"a": 1, "a": 2}',
        b"[1.5, 1e308, -0.0, null, true]",
    ],
)
def test_lines_read_as_the_standard_library_reads_them(line):
    """orjson (the fast extra) reads what it can, json the rest: same values."""
    import json
    import math

    from diskette.trust import parse

    ours, theirs = parse(line), json.loads(line)
    assert json.dumps(ours) == json.dumps(theirs)
    assert type(ours) is type(theirs)
    if "value" in theirs:
        assert math.isnan(ours["value"])


def test_what_is_not_json_is_still_refused_by_the_standard_library():
    import json

    from diskette.trust import parse

    with pytest.raises(json.JSONDecodeError):
        parse(b'{"model": ')
