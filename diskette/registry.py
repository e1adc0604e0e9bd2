"""The snapshot registry: archives a team publishes to, and pulls from, a storage.

A registry is any Django storage (``STORAGES["diskette"]`` by default; S3
through django-storages in practice). Production publishes; developers, who
need no SSH access to production, list and load. Its layout::

    archives/<id>.tar.gz[.age]   the archive, or its age ciphertext
    index/<id>.json              what the snapshot is: written last

Listing reads the index objects, never file names, so a storage ``location``
(a prefix) or an unrelated object in the bucket changes nothing. The archive
is uploaded first (on S3, in parts: the object exists only once all arrived)
and its index last, so an interrupted publish never leaves an entry that
points at a partial object; the orphan archive it may leave is removed by the
next prune. A download is checked against the sha256 and size the index
records before anything is loaded.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import secrets
import socket
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from . import __version__
from .archive import read_manifest
from .archive.format import is_sha256
from .conf import DisketteSettings
from .encryption import SUFFIX, decrypt, encrypt, read_identities
from .exceptions import RegistryError, StorageAccessError
from .files import BLOCK_SIZE, PartialFile, file_sha256, room_problem
from .objectstorage import (
    get_storage,
    is_missing,
    list_files,
    open_stream,
    save,
    translated,
)
from .reporting import Reporter, human_size

INDEX_DIR = "index"
ARCHIVES_DIR = "archives"
#: The version of the index objects' layout.
INDEX_FORMAT = 1
#: An index object is a few hundred bytes; a bigger one is not ours.
MAX_INDEX_SIZE = 1024 * 1024
#: Ids are the UTC time of the publish and a random suffix: sortable, unique.
ID_PATTERN = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
#: The only names a publish writes, and so the only ones read or removed.
INDEX_NAME = re.compile(rf"{INDEX_DIR}/{ID_PATTERN.pattern}\.json")
ARCHIVE_NAME = re.compile(rf"{ARCHIVES_DIR}/{ID_PATTERN.pattern}\.tar\.gz(?:\.age)?")
#: An archive object with no index is an interrupted publish once this old
#: (S3 dates a multipart object from the start of its upload: a day leaves a
#: slow one the time to finish; a publish also checks its object survived).
ORPHAN_AGE = timedelta(days=1)
#: The longest retention ``--keep-days`` takes: a century.
MAX_KEEP_DAYS = 36_500
#: What ``diskette_load`` takes as a registry reference: ``snapshot:latest``.
SCHEME = "snapshot:"


@dataclass(frozen=True)
class Snapshot:
    """One published snapshot, as its index object records it.

    :param object: the name of the stored archive (or its ciphertext).
    :param size: the stored object's size in bytes.
    :param sha256: the stored object's sha256, checked on download.
    :param archive_sha256: the archive's own sha256 (after decryption).
    :param recipients: the age public keys it is encrypted to, if any.
    """

    id: str
    created: str
    object: str
    size: int
    sha256: str
    archive_sha256: str
    archive_size: int
    anonymized: bool
    applications: list[str]
    storages: list[str]
    database: str
    django: str
    diskette: str
    host: str
    recipients: list[str] = field(default_factory=list)

    @property
    def encrypted(self) -> bool:
        return bool(self.recipients)

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created)

    def as_index(self) -> dict[str, Any]:
        return {"format": INDEX_FORMAT, **asdict(self)}

    @classmethod
    def from_index(cls, data: Any, name: str) -> Snapshot:
        """Read an index object, refusing one that is not exactly what a
        publish writes: a bucket's content is not trusted.

        :raises RegistryError: naming the index object and its first fault.
        """
        try:
            if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
                raise ValueError("not a diskette index object")
            if type(data["format"]) is not int:
                raise ValueError("not a diskette index object")
            for key, kind in INDEX_FIELDS.items():
                if key not in data:
                    raise ValueError(f"{key!r} is missing")
                if not _is(data[key], kind):
                    raise ValueError(f"{key!r} is not {INDEX_KINDS[kind]}")
            snapshot = cls(**{key: data[key] for key in INDEX_FIELDS})
            if not ID_PATTERN.fullmatch(snapshot.id) or name != index_name(snapshot.id):
                raise ValueError("its id does not match its name")
            if snapshot.object != archive_name(snapshot.id, snapshot.encrypted):
                raise ValueError("it points at an object outside archives/")
            if not (is_sha256(snapshot.sha256) and is_sha256(snapshot.archive_sha256)):
                raise ValueError("a sha256 is malformed")
            if snapshot.created_at.tzinfo is None:
                raise ValueError("'created' has no time zone")
        except (TypeError, ValueError, KeyError) as exc:
            raise RegistryError(f"index object '{name}' is damaged: {exc}") from None
        return snapshot


#: Every field of an index object and its kind: a size is a whole number
#: of bytes (never a bool, a float or a string), a list holds strings.
INDEX_FIELDS: dict[str, str] = {
    "id": "str",
    "created": "str",
    "object": "str",
    "size": "size",
    "sha256": "str",
    "archive_sha256": "str",
    "archive_size": "size",
    "anonymized": "bool",
    "applications": "strings",
    "storages": "strings",
    "database": "str",
    "django": "str",
    "diskette": "str",
    "host": "str",
    "recipients": "strings",
}
INDEX_KINDS = {
    "str": "a string",
    "size": "a number of bytes",
    "bool": "true or false",
    "strings": "a list of strings",
}
#: No snapshot is a petabyte: a larger "size" is a lie.
LARGEST = 2**50


def _is(value: Any, kind: str) -> bool:
    if kind == "size":
        return type(value) is int and 0 <= value <= LARGEST
    if kind == "bool":
        return type(value) is bool
    if kind == "strings":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)


def index_name(snapshot_id: str) -> str:
    return f"{INDEX_DIR}/{snapshot_id}.json"


def archive_name(snapshot_id: str, encrypted: bool) -> str:
    return f"{ARCHIVES_DIR}/{snapshot_id}.tar.gz{SUFFIX * encrypted}"


def new_id(now: datetime) -> str:
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class Listing:
    """The snapshots of a registry, newest first, and index objects that
    could not be read (reported, never fatal to a listing)."""

    snapshots: list[Snapshot]
    damaged: list[str]


class Registry:
    """A registry in the storage ``STORAGES[alias]``.

    Every storage failure is one line naming the alias
    (:func:`diskette.objectstorage.translated`).
    """

    def __init__(self, alias: str, reporter: Reporter | None = None) -> None:
        self.alias = alias
        self.storage = get_storage(alias, "DISKETTE_REGISTRY_STORAGE")
        self.reporter = reporter or Reporter()

    @classmethod
    def from_settings(
        cls, settings: DisketteSettings, reporter: Reporter | None = None
    ) -> Registry:
        return cls(settings.registry_storage, reporter)

    def listing(self) -> Listing:
        """Read every index object; the newest snapshot first.

        Only names a publish writes (``index/<id>.json``) are read; anything
        else below ``index/`` is not a snapshot. An index removed meanwhile
        (a prune) is skipped; one that cannot be read is reported as damaged.
        """
        snapshots: list[Snapshot] = []
        damaged: list[str] = []
        with translated(self.alias, "list its snapshots"):
            names = [f.name for f in list_files(self.storage, INDEX_DIR)]
        for name in names:
            if not INDEX_NAME.fullmatch(name):
                continue
            try:
                data = self._read_index(name)
            except StorageAccessError as exc:
                if is_missing(exc.__cause__):
                    continue
                raise
            except RegistryError as exc:
                damaged.append(str(exc))
                continue
            try:
                snapshots.append(Snapshot.from_index(data, name))
            except RegistryError as exc:
                damaged.append(str(exc))
        snapshots.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return Listing(snapshots, damaged)

    def _read_index(self, name: str) -> Any:
        with (
            translated(self.alias, f"read {name!r}"),
            open_stream(self.storage, name) as stream,
        ):
            payload = stream.read(MAX_INDEX_SIZE + 1)
        if len(payload) > MAX_INDEX_SIZE:
            raise RegistryError(f"index object '{name}' is damaged: it is too large")
        try:
            if payload[:2] == b"\x1f\x8b":  # stored compressed (AWS_IS_GZIPPED)
                with gzip.GzipFile(fileobj=io.BytesIO(payload)) as unzipped:
                    payload = unzipped.read(MAX_INDEX_SIZE)
            return json.loads(payload)
        except (ValueError, OSError, EOFError, RecursionError):
            raise RegistryError(f"index object '{name}' is damaged: not JSON") from None

    def find(self, reference: str, anonymized_only: bool = False) -> Snapshot:
        """The snapshot ``latest``, or of an id (a unique start of one will do).

        A whole id reads its own index only, not every index of the registry.

        :param anonymized_only: consider only anonymized snapshots (the
            HTTP endpoints of a site that serves no raw data).
        :raises RegistryError: none, or several, match.
        """
        if not reference:
            raise RegistryError(
                "name a snapshot: snapshot:latest, or snapshot:ID "
                "(`manage.py diskette_snapshots` lists them)"
            )
        if ID_PATTERN.fullmatch(reference):
            exact = self.get(reference)
            snapshots = [exact] if exact is not None else []
        else:
            snapshots = self.listing().snapshots
        if anonymized_only:
            snapshots = [s for s in snapshots if s.anonymized]
        which = "anonymized snapshot" if anonymized_only else "snapshot"
        if reference == "latest":
            if not snapshots:
                raise RegistryError(
                    f"storage {self.alias!r} holds no {which} yet: publish one with "
                    "`manage.py diskette_dump --publish` (or `fab -H HOST publish-snapshot`)"
                )
            return snapshots[0]
        matches = [s for s in snapshots if s.id.startswith(reference)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RegistryError(
                f"storage {self.alias!r} holds no {which} {reference!r}: "
                "`manage.py diskette_snapshots` lists them"
            )
        raise RegistryError(
            f"{reference!r} starts {len(matches)} snapshot ids in storage "
            f"{self.alias!r}: give more of it"
        )

    def get(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot of this whole id, read from its own index, if any.

        :raises RegistryError: its index is damaged.
        """
        name = index_name(snapshot_id)
        try:
            return Snapshot.from_index(self._read_index(name), name)
        except StorageAccessError as exc:
            if is_missing(exc.__cause__):
                return None
            raise

    def has(self, snapshot: Snapshot) -> bool:
        """Whether the snapshot's stored object is there."""
        with translated(self.alias, f"look for {snapshot.object!r}"):
            return bool(self.storage.exists(snapshot.object))

    def publish(
        self,
        archive: Path,
        recipients: Sequence[str] = (),
        now: datetime | None = None,
        written: tuple[dict[str, Any], str] | None = None,
    ) -> Snapshot:
        """Upload a local archive and then its index object.

        The archive is verified first (a damaged one is never published); with
        ``recipients`` it is encrypted to their age public keys, in a private
        temporary file beside it, and only the ciphertext leaves the machine.

        :param written: the manifest and sha256 (``""`` if not computed) of
            an archive this process has just written (``diskette_dump
            --publish``), which needs no second reading.
        """
        now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        if not archive.is_file():
            raise RegistryError(f"archive '{archive}' does not exist")
        if written is None:
            self.reporter.info(f"Verifying '{archive}' before publishing it")
            manifest, known = read_manifest(archive), None
        else:
            manifest, known = written
        snapshot_id = new_id(now)
        with contextlib.ExitStack() as stack:
            try:
                archive_sha256 = known or file_sha256(archive)
                archive_size = archive.stat().st_size
                upload, sha256 = archive, archive_sha256
                if recipients:
                    self.reporter.info(f"Encrypting to {len(recipients)} public keys")
                    upload = archive.with_name(f".{archive.name}.{snapshot_id}{SUFFIX}")
                    stack.callback(upload.unlink, missing_ok=True)
                    sha256 = encrypt(archive, upload, recipients)
            except OSError as exc:
                raise RegistryError(
                    f"cannot read or encrypt '{archive}' beside it: "
                    f"{exc.strerror or exc}; nothing was published"
                ) from exc
            snapshot = Snapshot(
                id=snapshot_id,
                created=now.isoformat(timespec="seconds"),
                object=archive_name(snapshot_id, bool(recipients)),
                size=upload.stat().st_size,
                sha256=sha256,
                archive_sha256=archive_sha256,
                archive_size=archive_size,
                anonymized=bool(manifest.get("anonymized", False)),
                applications=[
                    str(a.get("name", ""))
                    for a in manifest.get("applications") or []
                    if isinstance(a, dict)
                ],
                storages=list(manifest.get("storages") or []),
                database=str(manifest.get("database", "")),
                django=str(manifest.get("django", "")),
                diskette=__version__,
                host=socket.gethostname(),
                recipients=list(recipients),
            )
            self._upload(upload, snapshot)
        return snapshot

    def _upload(self, upload: Path, snapshot: Snapshot) -> None:
        self.reporter.info(
            f"Uploading snapshot {snapshot.id} ({human_size(snapshot.size)}) "
            f"to storage {self.alias!r}"
        )
        progress = self.reporter.progress(snapshot.size, f"Uploading {snapshot.id}")
        with (
            translated(self.alias, f"upload {snapshot.object!r}"),
            open(upload, "rb") as source,
        ):
            save(self.storage, snapshot.object, _ProgressReader(source, progress))
        index = json.dumps(snapshot.as_index(), indent=1).encode()
        try:
            with translated(self.alias, f"write {index_name(snapshot.id)!r}"):
                save(self.storage, index_name(snapshot.id), io.BytesIO(index))
                # A prune that ran between the upload and the index took the
                # object as an interrupted publish's: then take the index back.
                present = self.storage.exists(snapshot.object)
            if not present:
                with contextlib.suppress(Exception):
                    self.storage.delete(index_name(snapshot.id))
                raise RegistryError(
                    f"snapshot {snapshot.id} was removed from storage {self.alias!r} "
                    "while it was published (a prune?): nothing was published; publish again"
                )
        except BaseException:
            # No index: nobody will load it. Remove it now rather than at a prune.
            with contextlib.suppress(Exception):
                self.storage.delete(snapshot.object)
            raise

    def fetch(self, snapshot: Snapshot, destination: Path, identity: Path) -> Path:
        """Download ``snapshot`` into the folder ``destination``, checked.

        The object's size and sha256 must match its index before anything is
        done with it; an encrypted one is then decrypted with ``identity``,
        and the archive's own sha256 checked again.

        :returns: the archive's path, which did not exist before.
        :raises RegistryError: a damaged or truncated object, a key that does
            not open it, a destination that cannot take it; nothing is left
            behind.
        """
        target = destination / f"diskette-snapshot-{snapshot.id}.tar.gz"
        stored = target.with_name(target.name + SUFFIX) if snapshot.encrypted else target
        what = f"snapshot {snapshot.id} in storage {self.alias!r}"
        if snapshot.encrypted:  # a missing key is told before a long download
            read_identities(identity)
        try:
            destination.mkdir(parents=True, exist_ok=True)
            for path in (target, stored):
                if path.exists():
                    raise RegistryError(
                        f"'{path}' already exists; move it, or choose another "
                        "--download-destination"
                    )
            problem = room_problem(
                destination,
                snapshot.size + snapshot.archive_size * snapshot.encrypted,
                "the snapshot",
            )
            if problem:
                raise RegistryError(problem)
            with PartialFile(stored) as partial:
                self._download(snapshot, partial, what)
                partial.commit(replace=False)
        except OSError as exc:
            raise RegistryError(
                f"cannot write {what} to '{destination}': {exc.strerror or exc}; "
                "free some space or choose another --download-destination"
            ) from exc
        if not snapshot.encrypted:
            return target
        try:
            self.reporter.info(f"Decrypting with '{identity}'")
            digest = decrypt(stored, target, identity, what)
            if digest != snapshot.archive_sha256:
                target.unlink(missing_ok=True)
                raise RegistryError(
                    f"{what} decrypts to another archive than its index records: "
                    "nothing was loaded; publish a new snapshot"
                )
        finally:
            stored.unlink(missing_ok=True)
        return target

    @contextlib.contextmanager
    def _opened(self, name: str) -> Iterator[IO[bytes]]:
        """A stream of the object ``name``: opening it fails as the storage's
        (:func:`translated`), what the caller does with it as its own."""
        with contextlib.ExitStack() as stack:
            with translated(self.alias, f"read {name!r}"):
                stream = stack.enter_context(open_stream(self.storage, name))
            yield stream

    def _download(self, snapshot: Snapshot, partial: PartialFile, what: str) -> None:
        """Stream the object into ``partial``; refuse it unless it is the one
        its index describes. Reads fail as the storage's, writes as ``OSError``."""
        self.reporter.info(
            f"Downloading {what} ({human_size(snapshot.size)}, created {snapshot.created})"
        )
        partial.progress = self.reporter.progress(
            snapshot.size, f"Downloading {snapshot.id}"
        )
        with self._opened(snapshot.object) as stream:
            while block := _read(self.alias, snapshot.object, stream):
                partial.write(block)
                if partial.size > snapshot.size:
                    break
        if partial.size != snapshot.size:
            more = "more than " * (partial.size > snapshot.size)
            raise RegistryError(
                f"{what} is damaged: the object has {more}{partial.size} bytes where its "
                f"index records {snapshot.size}: nothing was loaded; publish a new snapshot"
            )
        if partial.sha256 != snapshot.sha256:
            raise RegistryError(
                f"{what} is damaged: the object's sha256 is not the one its index "
                "records: nothing was loaded; publish a new snapshot"
            )

    def prune(
        self,
        keep_last: int | None,
        keep_days: float | None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> tuple[list[Snapshot], list[str]]:
        """Remove the snapshots neither rule keeps, and orphaned archives.

        A snapshot is kept if it is among the ``keep_last`` newest, or younger
        than ``keep_days``: each rule given keeps what it names. Its index is
        removed before its archive, so no index ever points at nothing.

        :returns: the snapshots removed (or that would be), and the names
            of orphan archive objects (interrupted publishes) removed.
        """
        if keep_last is None and keep_days is None:
            raise RegistryError("say what to keep: --keep-last N, --keep-days D, or both")
        if (keep_last is not None and keep_last < 1) or (
            keep_days is not None and not 0 < keep_days <= MAX_KEEP_DAYS
        ):
            raise RegistryError(
                f"keep at least the last snapshot (--keep-last 1 or more) and days "
                f"between 0 and {MAX_KEEP_DAYS:,} (--keep-days)"
            )
        now = now or datetime.now(timezone.utc)
        listing = self.listing()
        kept: set[str] = set()
        if keep_last is not None:
            kept.update(s.id for s in listing.snapshots[:keep_last])
        if keep_days is not None:
            horizon = now - timedelta(days=keep_days)
            kept.update(s.id for s in listing.snapshots if s.created_at >= horizon)
        removed = [s for s in listing.snapshots if s.id not in kept]
        orphans = list(self._orphans(listing, now)) if not listing.damaged else []
        if dry_run:
            return removed, orphans
        for snapshot in removed:
            self.remove(snapshot)
        for name in orphans:
            with translated(self.alias, f"remove {name!r}"):
                self.storage.delete(name)
        return removed, orphans

    def remove(self, snapshot: Snapshot) -> None:
        """Remove one snapshot: its index first, so no index ever points at
        nothing (a failure between the two leaves an orphan archive, which
        the next prune removes)."""
        with translated(self.alias, f"remove snapshot {snapshot.id}"):
            self.storage.delete(index_name(snapshot.id))
            self.storage.delete(snapshot.object)

    def _orphans(self, listing: Listing, now: datetime) -> Iterator[str]:
        """Archive objects no index names, old enough not to be a publish at work."""
        named = {s.object for s in listing.snapshots}
        with translated(self.alias, "list its archives"):
            for stored in list_files(self.storage, ARCHIVES_DIR):
                age = now.timestamp() - stored.mtime
                if (
                    ARCHIVE_NAME.fullmatch(stored.name)
                    and stored.name not in named
                    and stored.mtime
                    and age > ORPHAN_AGE.total_seconds()
                ):
                    yield stored.name


def _read(alias: str, name: str, stream: IO[bytes]) -> bytes:
    with translated(alias, f"read {name!r}"):
        return stream.read(BLOCK_SIZE)


class _ProgressReader:
    """A file to upload, telling progress as the storage reads it."""

    def __init__(self, source: IO[bytes], progress: Any) -> None:
        self.source = source
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.progress(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.source.seek(offset, whence)

    def tell(self) -> int:
        return self.source.tell()

    def seekable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self.source.closed

    def close(self) -> None:
        """The caller's ``with`` closes the file."""

    @property
    def size(self) -> int:
        """Django's ``File`` asks its file for its size before saving it."""
        return os.fstat(self.source.fileno()).st_size
