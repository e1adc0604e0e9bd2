import os
import re
from pathlib import Path, PurePosixPath

import pytest

from diskette.exceptions import StorageError
from diskette.storages import Entry, Skipped, resolve_storages, walk_storage


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "var" / "media").mkdir(parents=True)
    return tmp_path


def test_storage_is_placed_relative_to_the_base_path(base):
    (storage,) = resolve_storages([base / "var" / "media"], base)
    assert storage.relpath == PurePosixPath("var/media")
    assert storage.path == base / "var" / "media"


def test_relative_storage_is_taken_from_the_base_path(base):
    (storage,) = resolve_storages(["var/media"], base)
    assert storage.path == base / "var" / "media"


@pytest.mark.parametrize(
    ("make", "storage", "message"),
    [
        (None, "missing", "storage 'missing' does not exist"),
        ("file", "afile", "storage 'afile' is not a directory"),
        (None, "..", "is not below the storages base path"),
        (None, ".", "itself: it would archive the whole project, its database included"),
        (None, "var/media/../../..", "is not below the storages base path"),
        ("dir", "data", "would be archived as 'data', which collides with diskette's own"),
    ],
)
def test_invalid_storage_is_refused(base, make, storage, message):
    if make == "file":
        (base / storage).write_text("x")
    elif make == "dir":
        (base / storage).mkdir()
    with pytest.raises(StorageError, match=re.escape(message)):
        resolve_storages([storage], base)


def test_overlapping_storages_are_refused(base):
    (base / "var" / "media" / "sub").mkdir()
    with pytest.raises(StorageError, match="overlaps storage"):
        resolve_storages(["var/media", "var/media/sub"], base)


def names(storage, excludes=()):
    return [
        (item.arcname, item.kind) if isinstance(item, Entry) else ("skipped", item.reason)
        for item in walk_storage(storage, excludes)
    ]


def test_walk_lists_directories_and_files_in_name_order(base):
    media = base / "var" / "media"
    (media / "b").mkdir()
    (media / "b" / "z.txt").write_text("z")
    (media / "a.txt").write_text("aa")
    (media / "empty").mkdir()
    (storage,) = resolve_storages([media], base)
    assert names(storage) == [
        ("var/media", "directory"),
        ("var/media/a.txt", "file"),
        ("var/media/b", "directory"),
        ("var/media/b/z.txt", "file"),
        ("var/media/empty", "directory"),
    ]
    sizes = {i.arcname: i.size for i in walk_storage(storage) if isinstance(i, Entry)}
    assert sizes["var/media/a.txt"] == 2


def test_exclude_patterns_match_relative_to_the_storage(base):
    media = base / "var" / "media"
    for path in ("cache/a/b.png", "public/thumbnails/t.png", "public/keep.png", "x.png"):
        (media / path).parent.mkdir(parents=True, exist_ok=True)
        (media / path).write_text("x")
    (storage,) = resolve_storages([media], base)
    listed = [n for n, _ in names(storage, ["cache/*", "public/thumbnails/*"])]
    assert "var/media/public/keep.png" in listed
    assert "var/media/x.png" in listed
    assert not [n for n in listed if "cache/a" in n or "thumbnails/" in n]


def test_excluded_directory_is_not_descended(base):
    media = base / "var" / "media"
    (media / "pil" / "deep").mkdir(parents=True)
    (media / "pil" / "deep" / "f").write_text("x")
    (storage,) = resolve_storages([media], base)
    assert [n for n, _ in names(storage, ["pil"])] == ["var/media"]


def test_symlink_inside_the_storage_is_kept_as_a_relative_link(base):
    media = base / "var" / "media"
    (media / "real.txt").write_text("x")
    (media / "sub").mkdir()
    (media / "sub" / "alias.txt").symlink_to(media / "real.txt")  # absolute link text
    (storage,) = resolve_storages([media], base)
    (link,) = [
        i for i in walk_storage(storage) if isinstance(i, Entry) and i.kind == "symlink"
    ]
    assert link.arcname == "var/media/sub/alias.txt"
    assert link.target == "../real.txt"


def test_links_out_of_the_storage_are_never_followed(base):
    media = base / "var" / "media"
    secret = base / "secret"
    secret.mkdir()
    (secret / "key").write_text("private")
    (media / "escape").symlink_to(secret)
    (media / "escape-file").symlink_to(secret / "key")
    (media / "dangling").symlink_to(media / "gone")
    (storage,) = resolve_storages([media], base)
    listed = names(storage)
    assert ("skipped", "is a symlink pointing out of its storage") in listed
    assert ("skipped", "is a dangling symlink") in listed
    assert not [n for n, _ in listed if "key" in n]
    skipped = [i.path.name for i in walk_storage(storage) if isinstance(i, Skipped)]
    assert sorted(skipped) == ["dangling", "escape", "escape-file"]


def test_special_files_are_skipped(base):
    media = base / "var" / "media"
    os.mkfifo(media / "pipe")
    (storage,) = resolve_storages([media], base)
    assert ("skipped", "is not a regular file, directory or symlink") in names(storage)


def test_a_storage_path_too_long_to_read_is_one_error(base):
    with pytest.raises(StorageError, match=r"^storage 'x{5000}' cannot be read: File name too long$"):
        resolve_storages(["x" * 5000], base)
