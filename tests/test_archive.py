import gc
import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

try:
    import fcntl
except ImportError:
    fcntl = None

from diskette.archive import MANIFEST_NAME, ArchiveWriter, Unpacked, read_manifest, unpack
from diskette.exceptions import ArchiveError, DumpError, ManifestError, UnsafeArchiveError
from tests.gzip_backends import BACKENDS, use


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request, monkeypatch):
    """Every archive written and read with isa-l, then with the standard library."""
    return use(request.param, monkeypatch)


def unpack_to(
    archive: Path, root: Path, wanted: Callable[[str], bool] = lambda name: True, **options
) -> Unpacked:
    """:func:`unpack` writing the ``wanted`` members at their archive path below ``root``."""
    return unpack(
        archive, place=lambda name: root / name if wanted(name) else None, **options
    )


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


def test_hard_linked_media_files_are_archived_as_files(tmp_path):
    """tar writes the second name as a hard link member, which unpack refuses."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.bin").write_bytes(b"same")
    os.link(media / "a.bin", media / "b.bin")
    archive = tmp_path / "a.tar.gz"
    with ArchiveWriter(archive, permissions=0o600) as writer:
        writer.add_file(media / "a.bin", "var/media/a.bin")
        writer.add_file(media / "b.bin", "var/media/b.bin")
        writer.close({"datas": [], "storages": ["var/media"]})
    unpacked = unpack_to(archive, tmp_path / "out")
    assert unpacked.members["var/media/b.bin"].size == 4
    assert (tmp_path / "out/var/media/b.bin").read_bytes() == b"same"


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


def test_two_writers_to_one_name_each_write_a_whole_archive(tmp_path):
    """Each writes its own temporary file: the last to close wins, whole."""
    archive = tmp_path / "a.tar.gz"
    first = ArchiveWriter(archive, permissions=0o600)
    second = ArchiveWriter(archive, permissions=0o600)
    for index, writer in enumerate((first, second)):
        writer.add_data("app.jsonl", io.BytesIO(b"%d\n" % index), 2)
    info = first.close({"datas": ["data/app.jsonl"], "storages": []})
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == info.sha256
    info = second.close({"datas": ["data/app.jsonl"], "storages": []})
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == info.sha256
    assert list(tmp_path.iterdir()) == [archive]
    with tarfile.open(archive) as tar:
        assert tar.extractfile("data/app.jsonl").read() == b"1\n"


def test_abort_drops_the_partial_file_without_finishing_it(tmp_path, monkeypatch):
    """Nothing more is compressed or written once a dump has failed."""
    unraisable = []
    monkeypatch.setattr("sys.unraisablehook", unraisable.append)
    threads = set(threading.enumerate())
    archive = tmp_path / "a.tar.gz"
    writer = ArchiveWriter(archive, permissions=0o600)
    witness = tmp_path / "witness"
    os.link(writer.partial, witness)  # sees the file's bytes once it is unlinked
    data = os.urandom(3 * 1024 * 1024)  # blocks queued, not all written yet
    writer.add_data("app.jsonl", io.BytesIO(data), len(data))
    writer.abort()
    written = witness.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["witness"]
    assert set(threading.enumerate()) == threads  # compressing threads stopped
    del writer  # tarfile's stream flushes its buffer when collected: dropped too
    gc.collect()
    assert unraisable == [] and witness.stat().st_size == written
    with pytest.raises(EOFError):  # unfinished: no end of stream, no trailer
        gzip.decompress(witness.read_bytes())


@pytest.mark.skipif(fcntl is None, reason="no flock on this system")
def test_only_unlocked_old_temporary_files_of_the_same_name_are_removed(tmp_path):
    archive = tmp_path / "a.tar.gz"
    an_hour_ago = time.time() - 3600
    files = {}
    for name in ("dead", "young", "busy"):
        files[name] = tmp_path / f".a.tar.gz.{name}.part"
        files[name].write_bytes(b"partial")
        if name != "young":  # a dump between its mkstemp and its lock
            os.utime(files[name], (an_hour_ago, an_hour_ago))
    other = tmp_path / ".b.tar.gz.dead.part"  # another name: not ours
    other.write_bytes(b"partial")
    os.utime(other, (an_hour_ago, an_hour_ago))
    with open(files["busy"], "rb") as busy:
        fcntl.flock(busy, fcntl.LOCK_EX)  # a dump still at work
        writer = ArchiveWriter(archive, permissions=0o600)
    writer.abort()
    assert writer.leftovers == [files["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [files["young"].name, files["busy"].name, other.name]
    )


def test_a_destination_that_cannot_hold_a_file_is_one_error(tmp_path):
    with pytest.raises(
        DumpError,
        match=r"^cannot create an archive in '.*/missing': No such file or directory; "
        "choose another destination$",
    ):
        ArchiveWriter(tmp_path / "missing" / "a.tar.gz", permissions=0o600)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not an archive", "is not a complete diskette archive"),
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


# Reading: one verified pass. Hostile archives are built member by member.


def build(path: Path, *members, manifest=None, compress=True) -> Path:
    """A tar.gz with the given (TarInfo fields, content) members, manifest last."""
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for fields, content in members:
            info = tarfile.TarInfo(fields["name"])  # fields are shared by parameters
            for key, value in fields.items():
                if key != "name":
                    setattr(info, key, value)
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
        if manifest is not None:
            payload = json.dumps(manifest).encode()
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def file(name, content=b"x"):
    return {"name": name}, content


def legacy_manifest(datas=(), storages=("var/media",)):
    return {
        "version": "0.6.0",
        "creation": "2025-01-01T00:00:00",
        "datas": list(datas),
        "storages": list(storages),
    }


def test_unpack_writes_wanted_members_and_verifies_all(tmp_path):
    archive = tmp_path / "a.tar.gz"
    write_sample(archive)
    source = (tmp_path / "media" / "photo.bin").stat()
    root = tmp_path / "root"
    root.mkdir()
    unpacked = unpack_to(
        archive, root, wanted=lambda name: not name.startswith("data/"), digest=True
    )
    photo = root / "var/media/photo.bin"
    assert photo.read_bytes() == b"\x00\x01" * 1000
    assert stat.S_IMODE(photo.stat().st_mode) == stat.S_IMODE(source.st_mode)
    assert photo.stat().st_mtime == int(source.st_mtime)  # whole seconds, as tar
    assert os.readlink(root / "var/media/alias.bin") == "photo.bin"
    assert not (root / "data").exists()
    assert unpacked.datas == ["data/app.jsonl"] and unpacked.storages == ["var/media"]
    assert (
        unpacked.members["data/app.jsonl"].sha256
        == hashlib.sha256(b'{"a": 1}\n').hexdigest()
    )
    assert unpacked.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert unpack_to(archive, tmp_path / "again", wanted=lambda name: False).sha256 is None


def test_a_failed_write_names_the_file_not_the_archive(tmp_path):
    archive = tmp_path / "a.tar.gz"
    write_sample(archive)
    root = tmp_path / "root"
    root.mkdir()
    (root / "var").write_text("a file where a folder must go")
    with pytest.raises(ArchiveError, match=r"root/var/media' cannot be written: "):
        unpack_to(archive, root)


def test_a_diskette_06_archive_is_read(tmp_path):
    archive = build(
        tmp_path / "old.tar.gz",
        ({"name": "data", "type": tarfile.DIRTYPE}, None),
        file("data/djangocontribsites.json", b"[]"),
        file("var/media/a.png", b"png"),
        manifest=legacy_manifest(["data/djangocontribsites.json"]),
    )
    unpacked = unpack_to(archive, tmp_path, wanted=lambda name: False)
    assert unpacked.datas == ["data/djangocontribsites.json"]


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([file("../evil")], "member '../evil' escapes the archive with '..'"),
        ([file("var/media/../../evil")], "escapes the archive with '..'"),
        ([file("/etc/evil")], "member '/etc/evil' has an absolute path"),
        (
            [
                (
                    {
                        "name": "var/media/l",
                        "type": tarfile.SYMTYPE,
                        "linkname": "/etc/passwd",
                    },
                    None,
                )
            ],
            "symlink 'var/media/l' points out of the archive: '/etc/passwd'",
        ),
        (
            [
                (
                    {
                        "name": "var/media/l",
                        "type": tarfile.SYMTYPE,
                        "linkname": "../../..",
                    },
                    None,
                )
            ],
            "points out of the archive",
        ),
        (
            [
                (
                    {"name": "var/media/l", "type": tarfile.SYMTYPE, "linkname": "../../x"},
                    None,
                )
            ],
            "symlink 'var/media/l' points out of its storage: '../../x'",
        ),
        (
            [
                ({"name": "var/media/d", "type": tarfile.SYMTYPE, "linkname": "."}, None),
                file("var/media/d/x"),
            ],
            "would be written through symlink 'var/media/d'",
        ),
        (
            [
                file("var/media/a"),
                (
                    {
                        "name": "var/media/b",
                        "type": tarfile.LNKTYPE,
                        "linkname": "var/media/a",
                    },
                    None,
                ),
            ],
            "is a hard link",
        ),
        (
            [({"name": "var/media/p", "type": tarfile.FIFOTYPE}, None)],
            "device, FIFO or special",
        ),
        (
            [({"name": "var/media/dev", "type": tarfile.CHRTYPE}, None)],
            "device, FIFO or special",
        ),
        ([file("var/media/a"), file("var/media/a")], "member 'var/media/a' appears twice"),
        (
            [file("etc/cron")],
            "'etc/cron' is neither data nor in a storage the manifest lists",
        ),
        (
            [({"name": "data/x", "type": tarfile.SYMTYPE, "linkname": "y"}, None)],
            "is a symlink among data files",
        ),
    ],
)
def test_hostile_members_are_refused_before_anything_is_written(tmp_path, members, message):
    archive = build(tmp_path / "evil.tar.gz", *members, manifest=legacy_manifest())
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UnsafeArchiveError, match=re.escape(message)):
        unpack_to(archive, root)
    assert not (tmp_path / "evil").exists()
    assert not Path("/etc/evil").exists()


@pytest.mark.parametrize(
    "storage", ["../outside", "/srv/media", ".", "data", "var/../../x"]
)
def test_storage_outside_the_base_path_is_refused(tmp_path, storage):
    archive = build(tmp_path / "a.tar.gz", manifest=legacy_manifest(storages=[storage]))
    with pytest.raises(UnsafeArchiveError, match="lies outside the storages base path"):
        unpack_to(archive, tmp_path)


def dumped(tmp_path: Path) -> Path:
    archive = tmp_path / "a.tar.gz"
    write_sample(archive)
    return archive


def test_truncated_archive_is_refused(tmp_path):
    archive = dumped(tmp_path)
    content = archive.read_bytes()
    for cut in (len(content) - 4, len(content) // 2, 30):
        archive.write_bytes(content[:cut])
        with pytest.raises(ArchiveError, match="is not a complete diskette archive"):
            unpack_to(archive, tmp_path, wanted=lambda name: False)


def test_corrupted_compressed_data_is_refused(tmp_path):
    archive = dumped(tmp_path)
    content = bytearray(archive.read_bytes())
    content[len(content) // 2] ^= 0xFF
    archive.write_bytes(bytes(content))
    with pytest.raises(ArchiveError):
        unpack_to(archive, tmp_path, wanted=lambda name: False)


def test_uncompressed_tar_is_refused(tmp_path):
    archive = build(
        tmp_path / "a.tar.gz", file("data/x"), manifest=legacy_manifest(), compress=False
    )
    with pytest.raises(ArchiveError, match="Not a gzipped file"):
        unpack_to(archive, tmp_path)


def sample_manifest(tmp_path: Path) -> dict:
    return read_manifest(dumped(tmp_path))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m["members"]["data/app.jsonl"].update(sha256="0" * 64),
            "member 'data/app.jsonl' does not match its sha256",
        ),
        (
            lambda m: m["members"]["data/app.jsonl"].update(size=10),
            "member 'data/app.jsonl' has 9 bytes, manifest.json says 10",
        ),
        (
            lambda m: m["members"].pop("var/media/photo.bin"),
            "member 'var/media/photo.bin' is not listed in manifest.json",
        ),
        (
            lambda m: m["members"].update({"var/media/ghost": {"size": 1}}),
            "member 'var/media/ghost' listed in manifest.json is missing",
        ),
        (
            lambda m: m["members"]["var/media/alias.bin"].update(target="x"),
            "symlink 'var/media/alias.bin' does not point where manifest.json says",
        ),
        (
            lambda m: m.update(datas=["data/gone.jsonl"]),
            "manifest.json lists data 'data/gone.jsonl', which is not in the archive",
        ),
        (lambda m: m.update(format=99), "has format 99; this diskette reads up to 2"),
        (
            lambda m: m.update(delta=["var/media/x"]),
            "manifest.json: 'delta' must map 'kept' to files",
        ),
        (
            lambda m: m.update(delta={"kept": {"var/media/x": {"size": 1, "sha256": "A"}}}),
            "kept file 'var/media/x' needs a size and a sha256",
        ),
        *(
            (
                lambda m, name=name: m.update(
                    delta={"kept": {name: {"size": 1, "sha256": "a" * 64}}}
                ),
                f"kept file '{name}' is not a plain path inside a storage",
            )
            for name in (
                "var/media/../../etc/passwd",
                "/var/media/x",
                "etc/passwd",
                "var/media",
                "var/media//x",
                "var/media/./x",
            )
        ),
        (
            lambda m: m.update(
                delta={"kept": {"var/media/photo.bin": {"size": 1, "sha256": "a" * 64}}}
            ),
            "kept file 'var/media/photo.bin' is also a member",
        ),
        (
            lambda m: m.update(
                delta={"kept": {"var/media/alias.bin/x": {"size": 1, "sha256": "a" * 64}}}
            ),
            "kept file 'var/media/alias.bin/x' would be written through 'var/media/alias.bin'",
        ),
        (
            lambda m: m.update(
                delta={
                    "kept": {
                        "var/media/sub": {"size": 1, "sha256": "a" * 64},
                        "var/media/sub/x": {"size": 1, "sha256": "a" * 64},
                    }
                }
            ),
            "kept file 'var/media/sub' is also a folder of the archive",
        ),
        (lambda m: m.pop("datas"), "lacks the 'datas' and 'storages' keys"),
        (lambda m: m.update(storages="var/media"), "'storages' must be a list of paths"),
    ],
)
def test_members_must_agree_with_the_manifest(tmp_path, change, message):
    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.bin").write_bytes(b"\x00\x01" * 1000)
    manifest = sample_manifest(tmp_path)
    change(manifest)
    archive = build(
        tmp_path / "b.tar.gz",
        file("data/app.jsonl", b'{"a": 1}\n'),
        ({"name": "var/media", "type": tarfile.DIRTYPE}, None),
        file("var/media/photo.bin", b"\x00\x01" * 1000),
        (
            {
                "name": "var/media/alias.bin",
                "type": tarfile.SYMTYPE,
                "linkname": "photo.bin",
            },
            None,
        ),
        manifest=manifest,
    )
    with pytest.raises(ArchiveError, match=re.escape(message)):
        unpack_to(archive, tmp_path, wanted=lambda name: False)


def test_missing_manifest_is_refused(tmp_path):
    archive = build(tmp_path / "a.tar.gz", file("data/x"))
    with pytest.raises(ManifestError, match="has no manifest.json"):
        unpack_to(archive, tmp_path)


def test_archives_are_plain_gzip_tar_that_gnu_tar_reads(tmp_path):
    """Several blocks, compressed on threads or not: one plain .tar.gz."""
    import shutil
    import subprocess

    media = tmp_path / "media"
    media.mkdir()
    big = os.urandom(3 * 1024 * 1024 + 17)  # several blocks, and a partial one
    (media / "big.bin").write_bytes(big)
    archive = tmp_path / "a.tar.gz"
    with ArchiveWriter(archive, permissions=0o600) as writer:
        writer.add_file(media / "big.bin", "var/media/big.bin")
        writer.close({"datas": [], "storages": ["var/media"]})
    if shutil.which("tar") is None:
        pytest.skip("no tar on this machine")
    subprocess.run(["gzip", "-t", str(archive)], check=True)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "xzf", str(archive), "-C", str(out)], check=True)
    assert (out / "var" / "media" / "big.bin").read_bytes() == big
