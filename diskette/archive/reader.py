"""Reading archives: one streaming pass that checks everything it unpacks.

:func:`unpack` reads the archive from its first byte to the end of the gzip
stream (so the gzip CRC and length are checked, and a truncated file is
refused), hashes every member, and writes the members it is asked for under
a fresh staging folder. Every member path is checked *before* it is written:
no absolute path, no ``..``, no write through a symlink, no hard link, device
or FIFO. Once the manifest (the last member) is read, :func:`unpack` checks
that each member belongs to the data folder or to a storage the manifest
lists, that symlinks stay inside their storage, and that sizes and sha256
match the manifest where it records them.

Nothing is written but where the caller's ``place`` says; the caller decides
what to do with a verified archive, and removes what was written. What an
archive claims is bounded before it costs anything: each member is checked
against the free space of the disk it would land on before it is written
(:class:`SpaceBudget`), and the manifest's size and number of containers
against limits before it is parsed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..exceptions import ArchiveError, ManifestError, TarFormatError, UnsafeArchiveError
from ..files import BLOCK_SIZE
from .compression import DECOMPRESSION_ERRORS, GzipReader
from .format import DATA_DIR, MANIFEST_NAME, READABLE_FORMAT, is_sha256
from .tarstream import TarMember, TarStream

#: A manifest larger than this is not one diskette wrote: it records about
#: 150 bytes a member, so 64 MiB is some 400,000 media files.
MANIFEST_LIMIT = 64 * 1024 * 1024
#: JSON objects and arrays a manifest may hold beyond one per member: the
#: applications, their counts, the migrations. Parsing costs memory per
#: container, whatever their size in bytes (``[{},{},...]`` is 3 bytes each).
MANIFEST_SPARE_CONTAINERS = 100_000
#: The fewest bytes a kept file takes in a delta's manifest (its name, size
#: and 64-digit sha256): bytes of the manifest allow a container each.
KEPT_ENTRY_BYTES = 80
#: Data members are plain JSON or JSON Lines: nothing else is deserialized,
#: and nothing compressed inflates once more inside ``loaddata``.
DATA_FORMATS = (".json", ".jsonl")
#: Space and inodes each disk keeps free while an archive is extracted onto it.
FREE_SPACE_RESERVE = 16 * 1024 * 1024
INODE_RESERVE = 1000
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: What breaks a gzip or tar stream: truncation, corruption, a foreign file.
READ_ERRORS: tuple[type[Exception], ...] = (TarFormatError, *DECOMPRESSION_ERRORS)


@dataclass(frozen=True)
class Member:
    """One archive member as read: kind, size and sha256 of its content."""

    name: str
    kind: str  # "file", "directory" or "symlink"
    size: int = 0
    sha256: str = ""
    target: str = ""


@dataclass
class Unpacked:
    """A verified archive, its placed members written.

    :param sha256: digest of the archive file itself, if it was asked for.
    """

    path: Path
    manifest: dict[str, Any]
    members: dict[str, Member]
    size: int
    sha256: str | None

    @property
    def datas(self) -> list[str]:
        """Data members, in load order."""
        return list(self.manifest.get("datas") or [])

    @property
    def storages(self) -> list[str]:
        """Storage folders, relative to the storages base path."""
        return list(self.manifest.get("storages") or [])

    @functools.cached_property
    def kept(self) -> dict[str, Member]:
        """For a delta, the files the loader must have already, by member name:
        listed, not held (:func:`check_kept` verified their names). Made once:
        a delta of a large tree keeps tens of thousands."""
        delta = self.manifest.get("delta")
        kept = delta.get("kept") if isinstance(delta, dict) else None
        return {
            name: Member(name, "file", entry["size"], entry["sha256"])
            for name, entry in (kept or {}).items()
        }

    def files(self, storage: str) -> dict[str, Member]:
        """The files ``storage`` holds once loaded, held or kept, by path inside it."""
        prefix = f"{storage}/"
        return {
            member.name[len(prefix) :]: member
            for member in [*self.members.values(), *self.kept.values()]
            if member.kind == "file" and member.name.startswith(prefix)
        }


def unpack(
    archive: Path,
    *,
    place: Callable[[str], Path | None] = lambda name: None,
    progress: Callable[[int], None] | None = None,
    digest: bool = False,
    source: IO[bytes] | None = None,
) -> Unpacked:
    """Read and verify ``archive``, writing members where ``place`` says.

    :param place: the path to write a member to, or ``None`` to only verify
        it; each path lies in a folder of the caller's, which the caller
        removes. Every member is verified, written or not.
    :param progress: called with the number of archive bytes read.
    :param digest: compute the sha256 of the archive file as well.
    :param source: read the archive from this stream (a pipe), which ``archive``
        then only names; it is left open.
    :raises ArchiveError: a truncated, corrupt or foreign file, or members
        that disagree with the manifest.
    :raises UnsafeArchiveError: a member that would escape its place.
    :raises ManifestError: no manifest, or an invalid one.
    """
    members: dict[str, Member] = {}
    manifest_bytes: bytes | None = None
    try:
        opened: Any = (
            open(archive, "rb")  # noqa: SIM115 - closed by the with below
            if source is None
            else contextlib.nullcontext(source)
        )
        with opened as raw, GzipReader(raw, progress=progress, digest=digest) as stream:
            tar, folders, budget = TarStream(stream), Folders(), SpaceBudget()
            for info in tar:
                name = checked_name(info, members)
                if name == MANIFEST_NAME and info.kind == "file":
                    manifest_bytes = _read_manifest_member(tar, info)
                    continue
                target = place(name)
                if target is not None:
                    budget.claim(target, info.size, name)
                members[name] = _unpack_member(tar, info, name, target, folders)
            # The tar end marker is not the end of the gzip stream: read on,
            # so the CRC and length in the gzip trailer are checked too.
            while stream.read(BLOCK_SIZE):
                pass
    except READ_ERRORS as exc:
        raise ArchiveError(
            f"'{archive}' is not a complete diskette archive: {exc}"
        ) from exc
    except OSError as exc:
        raise ArchiveError(f"'{archive}' cannot be read: {exc.strerror or exc}") from exc
    manifest = parse_manifest(manifest_bytes, archive, members=len(members))
    check_members(manifest, members)
    return Unpacked(archive, manifest, members, stream.size, stream.sha256)


def checked_name(info: TarMember, seen: dict[str, Member]) -> str:
    """The member's normalized name, refused if it could land anywhere unsafe.

    :param seen: members read so far, to refuse duplicates and writes
        through an earlier symlink member.
    """
    raw = info.name
    name = posixpath.normpath(raw.replace("\\", "/")) if raw else ""
    if raw.startswith("/") or posixpath.isabs(name):
        raise UnsafeArchiveError(f"member '{raw}' has an absolute path")
    if name in ("", ".") or name == ".." or name.startswith("../") or "/../" in f"/{raw}/":
        raise UnsafeArchiveError(f"member '{raw}' escapes the archive with '..'")
    if info.kind not in ("file", "directory", "symlink"):
        kind = "hard link" if info.kind == "hardlink" else "device, FIFO or special file"
        raise UnsafeArchiveError(f"member '{raw}' is a {kind}, which diskette never writes")
    if name in seen:
        raise UnsafeArchiveError(f"member '{raw}' appears twice")
    parent = posixpath.dirname(name)
    while parent:
        if parent in seen and seen[parent].kind == "symlink":
            raise UnsafeArchiveError(
                f"member '{raw}' would be written through symlink '{parent}'"
            )
        parent = posixpath.dirname(parent)
    if info.kind == "symlink":
        target = info.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(
                f"symlink '{raw}' points out of the archive: '{target}'"
            )
    return name


def _read_manifest_member(tar: TarStream, info: TarMember) -> bytes:
    if info.size > MANIFEST_LIMIT:
        raise ManifestError(
            f"{MANIFEST_NAME} is too large ({info.size} bytes; diskette reads up to "
            f"{MANIFEST_LIMIT})"
        )
    return b"".join(iter(lambda: tar.read(BLOCK_SIZE), b""))


def _unpack_member(
    tar: TarStream,
    info: TarMember,
    name: str,
    target: Path | None,
    folders: Folders,
) -> Member:
    """Hash the member and, if it has a ``target``, write it there."""
    if info.kind == "directory":
        if target is not None:
            with _writing(target):
                folders.make(target)
        return Member(name, "directory")
    if info.kind == "symlink":
        if target is not None:
            with _writing(target):
                folders.make(target.parent)
                os.symlink(info.linkname, target)
        return Member(name, "symlink", target=info.linkname)
    digest, size = hashlib.sha256(), 0
    output = None
    if target is not None:
        with _writing(target):
            folders.make(target.parent)
            # O_EXCL: never through a link, never over a file.
            output = os.open(
                target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, 0o600
            )
    try:
        while block := tar.read(BLOCK_SIZE):
            digest.update(block)
            size += len(block)
            if output is not None:
                with _writing(target):
                    _write_all(output, block)
        if output is not None:
            with _writing(target):
                os.fchmod(output, info.mode & 0o777)
                os.utime(output, (info.mtime, info.mtime))
    finally:
        if output is not None:
            os.close(output)
    return Member(name, "file", size, digest.hexdigest())


@contextlib.contextmanager
def _writing(target: Path | None) -> Iterator[None]:
    """Name the file a failed write was for (a full disk is not a bad archive)."""
    try:
        yield
    except OSError as exc:
        raise ArchiveError(f"'{target}' cannot be written: {exc.strerror or exc}") from exc


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


class SpaceBudget:
    """Free space and inodes per disk, claimed member by member before each is written.

    The manifest comes last, so sizes cannot be summed before extraction
    starts; but each member's header states its size, and a member that
    would not fit is refused before its first byte is written. Each member
    is counted as the disk stores it: whole blocks, one more for its
    metadata, and an inode; so neither one large file nor a flood of tiny
    ones fills a disk, whatever the archive inflates to.
    """

    def __init__(self, reserve: int = FREE_SPACE_RESERVE) -> None:
        self.reserve = reserve
        self.disks: dict[int, list[int]] = {}  # device: [bytes, inodes, block size]
        self.devices: dict[Path, int] = {}  # folder: its device

    def claim(self, target: Path, size: int, name: str) -> None:
        """Count member ``name`` (``size`` bytes) against the disk of ``target``.

        :raises ArchiveError: naming the member, the disk's folder and the
            space it lacks.
        """
        folder = target.parent
        device = self.devices.get(folder)
        if device is None:  # once a folder: media trees hold many files a folder
            while not folder.exists():
                folder = folder.parent
            device = self.devices[target.parent] = os.stat(folder).st_dev
        if device not in self.disks:
            disk = os.statvfs(folder)
            inodes = disk.f_favail - INODE_RESERVE if disk.f_files else 2**62
            self.disks[device] = [
                disk.f_bavail * disk.f_frsize - self.reserve,
                inodes,
                max(disk.f_frsize, 512),
            ]
        free = self.disks[device]
        block = free[2]
        free[0] -= -(-size // block) * block + block
        free[1] -= 1
        if free[0] < 0 or free[1] < 0:
            lacking = "space" if free[0] < 0 else "inodes (files)"
            raise ArchiveError(
                f"member '{name}' ({size} bytes) does not fit on the disk of '{folder}': "
                f"it lacks {lacking}; free some there (diskette keeps "
                f"{self.reserve // 2**20} MiB free) or restore elsewhere"
            )


class Folders:
    """Folders made so far: a media tree makes each folder once, not once a file."""

    def __init__(self) -> None:
        self.made: set[Path] = set()

    def make(self, path: Path) -> None:
        if path not in self.made:
            path.mkdir(parents=True, exist_ok=True)
            self.made.add(path)


def parse_manifest(
    content: bytes | None, archive: Path, *, members: int = 0
) -> dict[str, Any]:
    """Decode and check the manifest's shape (diskette 0.6 manifests included).

    :param members: how many members the archive holds, which bounds how
        many JSON containers its manifest may need.
    :raises ManifestError: naming what is wrong.
    """
    if content is None:
        raise ManifestError(f"'{archive}' has no {MANIFEST_NAME}")
    containers = content.count(b"{") + content.count(b"[")
    # A delta lists its kept files, each an object of some 100 bytes: they
    # are allowed for by the bytes, which bounds their number as well.
    if containers > members + MANIFEST_SPARE_CONTAINERS + len(content) // KEPT_ENTRY_BYTES:
        raise ManifestError(
            f"{MANIFEST_NAME} holds {containers} JSON objects and arrays for "
            f"{members} members: not a manifest diskette wrote"
        )
    try:
        manifest = json.loads(content)
    except RecursionError:
        raise ManifestError(f"{MANIFEST_NAME} is nested too deeply") from None
    except ValueError as exc:
        raise ManifestError(f"{MANIFEST_NAME} is not valid JSON: {exc}") from exc
    if (
        not isinstance(manifest, dict)
        or "datas" not in manifest
        or "storages" not in manifest
    ):
        raise ManifestError(f"{MANIFEST_NAME} lacks the 'datas' and 'storages' keys")
    version = manifest.get("format", 1)
    if not isinstance(version, int) or version > READABLE_FORMAT:
        raise ManifestError(
            f"{MANIFEST_NAME} has format {version!r}; this diskette reads up to "
            f"{READABLE_FORMAT}: upgrade diskette"
        )
    for key in ("datas", "storages"):
        value = manifest[key] or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ManifestError(f"{MANIFEST_NAME}: '{key}' must be a list of paths")
    for storage in manifest["storages"] or []:
        checked_storage(storage)
    for data in manifest["datas"] or []:
        if not data.endswith(DATA_FORMATS):
            raise UnsafeArchiveError(
                f"data '{data}' is neither .json nor .jsonl, the only data diskette loads"
            )
    for key, kind in (("applications", list), ("members", dict), ("migrations", dict)):
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            raise ManifestError(f"{MANIFEST_NAME}: '{key}' must be a {kind.__name__}")
    return manifest


def checked_storage(storage: str) -> str:
    """A manifest storage path, refused unless it stays below the base path."""
    name = posixpath.normpath(storage)
    if (
        posixpath.isabs(storage)
        or name in (".", "..")
        or name.startswith("../")
        or name.split("/")[0] in (DATA_DIR, MANIFEST_NAME)
    ):
        raise UnsafeArchiveError(f"storage '{storage}' lies outside the storages base path")
    return name


def check_members(manifest: dict[str, Any], members: dict[str, Member]) -> None:
    """Every member in its place and, where recorded, as the manifest says.

    :raises UnsafeArchiveError: a member outside the data folder and the
        listed storages, or a symlink pointing out of its storage.
    :raises ArchiveError: a member missing, extra, or not matching its
        recorded size or sha256.
    """
    storages = [checked_storage(s) for s in manifest["storages"] or []]
    for data in manifest["datas"] or []:
        member = members.get(posixpath.normpath(data))
        if member is None or member.kind != "file" or not data.startswith(f"{DATA_DIR}/"):
            raise ManifestError(
                f"{MANIFEST_NAME} lists data '{data}', which is not in the archive"
            )
    for member in members.values():
        storage = _storage_of(member.name, storages)
        if member.name == DATA_DIR or member.name.startswith(f"{DATA_DIR}/"):
            if member.kind == "symlink":
                raise UnsafeArchiveError(
                    f"member '{member.name}' is a symlink among data files"
                )
        elif storage is None:
            raise UnsafeArchiveError(
                f"member '{member.name}' is neither data nor in a storage the manifest lists"
            )
        elif member.kind == "symlink":
            resolved = _link_target(member, members)
            if _storage_of(resolved, [storage]) is None:
                raise UnsafeArchiveError(
                    f"symlink '{member.name}' points out of its storage: '{member.target}'"
                )
    recorded = manifest.get("members")
    if recorded is not None:
        _compare_with_manifest(recorded, members)
    check_kept(manifest, members, storages)


def check_kept(
    manifest: dict[str, Any], members: dict[str, Member], storages: list[str]
) -> None:
    """A delta's kept files: each a safe path inside a listed storage, where
    no member is and under no symlink or file member, with a size and a sha256.

    :raises UnsafeArchiveError: for a name that could land anywhere else.
    :raises ManifestError: for an entry of the wrong shape.
    """
    delta = manifest.get("delta")
    if delta is None:
        return
    kept = delta.get("kept") if isinstance(delta, dict) else None
    if not isinstance(delta, dict) or not isinstance(kept, dict | None):
        raise ManifestError(f"{MANIFEST_NAME}: 'delta' must map 'kept' to files")
    # Every folder a member or a kept file lies in: no kept file may be one.
    # Each folder's own folders are added once: thousands of files share them.
    folders: set[str] = set()
    for name in [*members, *(kept or {})]:
        for parent in _parents(str(name)):
            if parent in folders:
                break
            folders.add(parent)
    through: dict[str, set[str]] = {}  # per storage: folders checked below it
    for name, entry in (kept or {}).items():
        if (
            not isinstance(entry, dict)
            or type(entry.get("size")) is not int
            or entry["size"] < 0
            or not is_sha256(entry.get("sha256"))
        ):
            raise ManifestError(
                f"{MANIFEST_NAME}: kept file '{name}' needs a size and a sha256"
            )
        normal = posixpath.normpath(name)
        storage = _storage_of(name, storages)
        if (
            normal != name
            or storage is None
            or name == storage
            or "\\" in name
            or "\0" in name
        ):
            raise UnsafeArchiveError(
                f"kept file '{name}' is not a plain path inside a storage the manifest lists"
            )
        if name in members:
            raise UnsafeArchiveError(f"kept file '{name}' is also a member")
        if name in folders:
            raise UnsafeArchiveError(f"kept file '{name}' is also a folder of the archive")
        checked = through.setdefault(storage, set())
        parent = posixpath.dirname(name)
        while parent != storage and parent not in checked:
            if parent in members and members[parent].kind != "directory":
                raise UnsafeArchiveError(
                    f"kept file '{name}' would be written through '{parent}'"
                )
            checked.add(parent)
            parent = posixpath.dirname(parent)


def _parents(name: str) -> Iterator[str]:
    """The folders ``name`` lies in, innermost first."""
    parent = posixpath.dirname(name)
    while parent and parent != name:  # "/" is its own parent
        yield parent
        name, parent = parent, posixpath.dirname(parent)


def _link_target(link: Member, members: dict[str, Member]) -> str:
    """Where symlink ``link`` leads, walked one component at a time.

    Normalizing the target as a string is not enough: ``u -> s/..`` with
    ``s -> .`` reads as ``u -> .`` but leads to the storage's parent, and a
    chain of such links reaches anywhere. A diskette dump writes each link's
    real target (``os.path.realpath``), so its path never goes through
    another link: one that does is refused.

    :raises UnsafeArchiveError: for a target through another symlink member,
        or above the archive's root.
    """
    path = link.name.split("/")[:-1]
    for part in link.target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not path:
                raise UnsafeArchiveError(
                    f"symlink '{link.name}' points out of the archive: '{link.target}'"
                )
            path.pop()
            continue
        path.append(part)
        through = members.get("/".join(path))
        if through is not None and through.kind == "symlink":
            raise UnsafeArchiveError(
                f"symlink '{link.name}' leads through symlink '{through.name}', "
                "which diskette never writes"
            )
    return "/".join(path)


def _storage_of(name: str, storages: list[str]) -> str | None:
    for storage in storages:
        if name == storage or name.startswith(f"{storage}/"):
            return storage
    return None


def _compare_with_manifest(recorded: Any, members: dict[str, Member]) -> None:
    if not isinstance(recorded, dict):
        raise ManifestError(f"{MANIFEST_NAME}: 'members' must be a mapping")
    for name in members:
        if name not in recorded:
            raise ArchiveError(f"member '{name}' is not listed in {MANIFEST_NAME}")
    for name, entry in recorded.items():
        member = members.get(name)
        kind = entry.get("type", "file") if isinstance(entry, dict) else None
        if member is None or member.kind != kind:
            raise ArchiveError(f"member '{name}' listed in {MANIFEST_NAME} is missing")
        if kind == "symlink" and entry.get("target") != member.target:
            raise ArchiveError(
                f"symlink '{name}' does not point where {MANIFEST_NAME} says"
            )
        if kind == "file" and entry.get("size") != member.size:
            raise ArchiveError(
                f"member '{name}' has {member.size} bytes, {MANIFEST_NAME} says {entry.get('size')}"
            )
        if kind == "file" and "sha256" in entry and entry["sha256"] != member.sha256:
            raise ArchiveError(
                f"member '{name}' does not match its sha256 in {MANIFEST_NAME}"
            )


def read_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of ``archive``, after a full verification pass.

    :raises ArchiveError: as :func:`unpack` does.
    """
    return unpack(archive).manifest
