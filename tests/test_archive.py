import hashlib
import io
import stat
import tarfile
from pathlib import Path

import pytest

from diskette.archive import MANIFEST_NAME, ArchiveWriter, read_manifest
from diskette.exceptions import ArchiveError, DumpError


def write_sample(path: Path, **kwargs) -> None:
    media = path.parent / "media"
    media.mkdir(exist_ok=True)
    (media / "photo.bin").write_bytes(b"\x00\x01" * 1000)
    with ArchiveWriter(path, permissions=kwargs.pop("permissions", 0o600), **kwargs) as w:
        w.add_data("app.jsonl", io.BytesIO(b'{"a": 1}\n'), 9)
        w.add_directory(media, "var/media")
        w.add_file(media / "photo.bin", "var/media/photo.bin")
        w.add_symlink("var/media/alias.bin", "photo.bin")
        return w.close(
            {"version": "x", "datas": ["data/app.jsonl"], "storages": ["var/media"]}
        )


def test_manifest_records_size_and_sha256_of_every_member(tmp_path):
    archive = tmp_path / "a.tar.gz"
    info = write_sample(archive)
    manifest = read_manifest(archive)
    members = manifest["members"]
    assert members["data/app.jsonl"] == {
        "size": 9,
        "sha256": hashlib.sha256(b'{"a": 1}\n').hexdigest(),
    }
    assert (
        members["var/media/photo.bin"]["sha256"]
        == hashlib.sha256(b"\x00\x01" * 1000).hexdigest()
    )
    assert members["var/media"] == {"type": "directory"}
    assert members["var/media/alias.bin"] == {"type": "symlink", "target": "photo.bin"}
    assert info.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert info.size == archive.stat().st_size


def test_manifest_is_the_last_member_and_data_comes_first(tmp_path):
    archive = tmp_path / "a.tar.gz"
    write_sample(archive)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[0] == "data/app.jsonl"
    assert names[-1] == MANIFEST_NAME


def test_archive_gets_the_permissions_asked(tmp_path):
    archive = tmp_path / "a.tar.gz"
    write_sample(archive, permissions=0o640)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o640


def test_no_checksums_keeps_sizes(tmp_path):
    archive = tmp_path / "a.tar.gz"
    info = write_sample(archive, checksums=False)
    assert info.sha256 is None
    assert read_manifest(archive)["members"]["data/app.jsonl"] == {"size": 9}


def test_a_failed_write_leaves_no_archive_and_no_partial_file(tmp_path):
    archive = tmp_path / "a.tar.gz"
    with pytest.raises(RuntimeError), ArchiveWriter(archive, permissions=0o600) as writer:
        writer.add_data("app.jsonl", io.BytesIO(b"x"), 1)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_shrinks_while_archived_is_an_error(tmp_path):
    archive = tmp_path / "a.tar.gz"
    source = tmp_path / "growing.bin"
    source.write_bytes(b"x" * 10)

    class Shrinking(ArchiveWriter):
        def _add_stream(self, info, stream, progress=None):
            source.write_bytes(b"x" * 2)  # truncated after tarinfo took its size
            super()._add_stream(info, stream, progress)

    with (
        pytest.raises(DumpError, match="changed while it was archived"),
        Shrinking(archive, permissions=0o600) as writer,
    ):
        writer.add_file(source, "var/media/growing.bin")
    assert not archive.exists()


def test_existing_archive_is_replaced_only_when_the_new_one_is_complete(tmp_path):
    archive = tmp_path / "a.tar.gz"
    write_sample(archive)
    before = archive.read_bytes()
    with pytest.raises(RuntimeError), ArchiveWriter(archive, permissions=0o600):
        raise RuntimeError("boom")
    assert archive.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not an archive", "is not a readable diskette archive"),
        (None, "has no manifest.json"),
    ],
)
def test_read_manifest_refuses_what_is_not_an_archive(tmp_path, content, message):
    path = tmp_path / "x.tar.gz"
    if content is None:
        with tarfile.open(path, "w:gz") as tar:
            tar.addfile(tarfile.TarInfo("data"), io.BytesIO(b""))
    else:
        path.write_bytes(content)
    with pytest.raises(ArchiveError, match=message):
        read_manifest(path)


def test_read_manifest_refuses_invalid_json(tmp_path):
    path = tmp_path / "x.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"{{{"))
    with pytest.raises(ArchiveError, match="manifest.json is not valid JSON"):
        read_manifest(path)
