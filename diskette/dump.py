"""Dump: definitions and storages into one archive, or a plan of what would be.

Plain functions over resolved definitions (:mod:`diskette.definitions`) and
storages (:mod:`diskette.storages`); the archive layout is
:mod:`diskette.archive`'s business. They never print: they tell a
:class:`~diskette.reporting.Reporter`.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import django
from django.db import DEFAULT_DB_ALIAS, connections

from . import __version__
from .archive import FORMAT_VERSION, ArchiveInfo, ArchiveWriter
from .data import consistent_snapshot, count_objects, write_data
from .definitions import Definition
from .delta import Delta, leaving, open_writer
from .exceptions import ConfigurationError, DumpError
from .journal import locked
from .objectstorage import read_ahead, storage_identity, translated
from .reporting import Reporter
from .schema import applied_migrations
from .storages import (
    AnyStorage,
    Entry,
    Skipped,
    Storage,
    StorageFiles,
    StoredEntry,
    walk_files,
    walk_storage,
)

if TYPE_CHECKING:
    from .anonymize import Anonymizer
    from .subset import Subset

#: Data files smaller than this, all together, stay in memory while the
#: archive is written; beyond it they spill to a temporary file, since a tar
#: member's size must be known before its content is written.
SPOOL_BUDGET = 32 * 1024 * 1024


@dataclass
class DumpResult:
    """What a dump wrote: the archive, objects per definition, its data members,
    what was skipped."""

    archive: ArchiveInfo
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    datas: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    #: Whether personal data was anonymized, and the files that left out.
    anonymized: bool = False
    files_left_out: int = 0
    #: The manifest written, less its ``members``.
    manifest: dict[str, Any] = field(default_factory=dict)
    #: For a delta: the files kept (listed, left out) and their bytes.
    kept: int = 0
    kept_bytes: int = 0


@dataclass
class StoragePlan:
    """What a storage would contribute: files, their total size, what is skipped."""

    storage: AnyStorage
    files: int = 0
    size: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def archive_filename(
    template: str, *, with_data: bool, with_storages: bool, now: datetime
) -> str:
    """Fill ``{features}`` (``_data``, ``_storages``, ``_data_storages``) and ``{date}``."""
    features = "_data" * with_data + "_storages" * with_storages
    return template.format(features=features, date=now.strftime("%Y-%m-%dT%H%M%S"))


def dump(
    definitions: Sequence[Definition],
    storages: Sequence[AnyStorage],
    archive_path: Path,
    *,
    excludes: Sequence[str] = (),
    indent: int | None = None,
    checksums: bool = True,
    permissions: int = 0o600,
    using: str = DEFAULT_DB_ALIAS,
    reporter: Reporter | None = None,
    anonymizer: Anonymizer | None = None,
    delta: Delta | None = None,
    subset: Subset | None = None,
    stream: IO[bytes] | None = None,
) -> DumpResult:
    """Write the data of ``definitions`` and the files of ``storages`` to an archive.

    Data is read from one consistent snapshot of the database; each data file
    is serialized, then streamed into the archive before the next one starts.
    The archive appears at ``archive_path`` only once complete.

    :param excludes: ``fnmatch`` patterns relative to each storage.
    :param permissions: mode of the archive file.
    :param anonymizer: replaces personal data while it is read, and leaves
        out the files of the file fields it clears (:mod:`diskette.anonymize`).
    :param delta: keep out the files the loading side has, or link them
        beside the archive (:mod:`diskette.delta`).
    :param subset: dump only the rows it starts from and needs, and the
        files they name (:mod:`diskette.subset`).
    :param stream: write the archive down this stream, not to
        ``archive_path`` (which only names it in errors).
    """
    check_something_to_dump(definitions, storages)
    selection = subset.selection(definitions, using) if subset is not None else None
    if selection is not None:
        definitions = selection.definitions  # each reads the kept rows only
    reporter = reporter or Reporter()
    now = datetime.now().astimezone()
    if stream is None:
        _make_destination(archive_path.parent)
    skipped: list[Skipped] = []
    with (
        # Held from before the data is read: a load cannot swap media in
        # between, so data and media come from the same side of it.
        locked([s.path for s in storages if isinstance(s, Storage)], shared=True),
        open_writer(
            archive_path,
            permissions=permissions,
            checksums=checksums,
            storages=storages,
            delta=delta,
            stream=stream,
        ) as writer,
        ExitStack() as cleanup,
    ):
        for leftover in writer.leftovers:
            reporter.info(f"Removed '{leftover}', left by an interrupted dump")
        spools, counts = _dump_data(
            definitions, indent, using, reporter, cleanup, anonymizer
        )
        if definitions:
            reporter.info("Appending data to the archive")
        datas = []
        for definition, spool in spools:
            size = spool.tell()
            spool.seek(0)
            datas.append(writer.add_data(definition.filename(), spool, size))
            spool.close()
        left_out = 0
        if storages:
            dropped = set(anonymizer.dropped_files(using)) if anonymizer else set()
            reporter.info("Appending storages to the archive")
            only = selection.files() if selection is not None else None
            skipped, left_out = _append_storages(
                writer, storages, excludes, reporter, dropped, only
            )
        manifest = build_manifest(definitions, datas, counts, storages, now, using)
        manifest.update(anonymization_manifest(anonymizer, left_out))
        if selection is not None:
            manifest["subset"] = selection.described()
        info = writer.close(manifest)
    return DumpResult(
        archive=info,
        counts=counts,
        datas=datas,
        skipped=skipped,
        anonymized=anonymizer is not None,
        files_left_out=left_out,
        manifest=manifest,
        kept=len(writer.kept),
        kept_bytes=sum(entry["size"] for entry in writer.kept.values()),
    )


def anonymization_manifest(
    anonymizer: Anonymizer | None, files_left_out: int
) -> dict[str, Any]:
    """The manifest's ``anonymized`` flag, and what the anonymization did:
    the rules' fingerprint and fields (never the secret, never a value)."""
    if anonymizer is None:
        return {"anonymized": False}
    return {
        "anonymized": True,
        "anonymization": {**anonymizer.described(), "files_left_out": files_left_out},
    }


def check_something_to_dump(
    definitions: Sequence[Definition],
    storages: Sequence[AnyStorage],
    *,
    with_data: bool = True,
    with_storages: bool = True,
) -> None:
    """Refuse a dump that would write an archive holding only its manifest.

    Such an archive "succeeds" and loads as nothing: a new project with no
    configuration yet deserves the way forward instead.

    :param with_data: ``False`` when data was left out on purpose (``--no-data``).
    :param with_storages: ``False`` when storages were (``--no-storages``).
    :raises ConfigurationError: naming what is empty and how to fill it.
    """
    if definitions or storages:
        return
    starter = (
        "run `manage.py diskette_apps` for a starter list, or pass --everything "
        "to dump the whole database"
    )
    if not with_data:
        raise ConfigurationError(
            "nothing to dump: --no-data leaves only storages, and DISKETTE_STORAGES "
            "is empty; declare storages, or give one with --storage"
        )
    if not with_storages:
        raise ConfigurationError(
            f"nothing to dump: --no-storages leaves only data, and DISKETTE_APPS is "
            f"empty; {starter}"
        )
    raise ConfigurationError(
        f"nothing to dump: DISKETTE_APPS and DISKETTE_STORAGES are both empty; {starter}"
    )


def _make_destination(folder: Path) -> None:
    """Create the archive's folder, or say in one line why it cannot be."""
    if folder.exists() and not folder.is_dir():
        raise DumpError(f"destination '{folder}' is not a folder; choose another one")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DumpError(
            f"cannot create the destination folder '{folder}': {exc.strerror or exc}; "
            "choose another destination"
        ) from exc


def _dump_data(
    definitions: Sequence[Definition],
    indent: int | None,
    using: str,
    reporter: Reporter,
    cleanup: ExitStack,
    anonymizer: Anonymizer | None = None,
) -> tuple[list[tuple[Definition, Any]], dict[str, dict[str, int]]]:
    """Serialize every definition from one snapshot into spooled files.

    :returns: the spools, each with its definition, and the objects written
        per definition and model.
    """
    spools = []
    counts: dict[str, dict[str, int]] = {}
    budget = SPOOL_BUDGET
    with consistent_snapshot(using):
        for definition in definitions:
            reporter.info(f"Dumping data for application '{definition.name}'")
            # max_size=0 would mean "never roll over": keep at least 1.
            size = max(budget, 1)
            spool = tempfile.SpooledTemporaryFile(max_size=size, prefix="diskette-")  # noqa: SIM115
            cleanup.callback(_discard, spool)  # not enter_context: see _discard
            spools.append((definition, spool))
            try:
                counts[definition.name] = write_data(
                    definition,
                    spool,
                    using=using,
                    indent=indent,
                    progress=_object_progress(reporter, definition.name),
                    anonymizer=anonymizer,
                )
                spool.flush()  # a spilled spool's last bytes: their errors belong here
            except OSError as exc:  # spilled to disk, and the disk is full
                raise DumpError(
                    f"{definition.name!r}: cannot write its data to a temporary file in "
                    f"'{tempfile.gettempdir()}': {exc.strerror or exc}; "
                    "free some space there or set TMPDIR to another folder"
                ) from exc
            if spool.tell() <= budget:  # not rolled over to disk: it stays in memory
                budget -= spool.tell()
    return spools, counts


def _object_progress(
    reporter: Reporter, name: str
) -> Callable[[int], Callable[[int], None]] | None:
    """Progress of the objects of one definition, or ``None`` if nobody watches."""
    if reporter.progress_output is None:
        return None
    return lambda total: reporter.progress(total, f"Dumping {name}", unit="objects")


def _discard(spool: Any) -> None:
    """Close a spool; on a full disk its unflushed bytes fail again, harmlessly."""
    with contextlib.suppress(OSError):
        spool.close()


def _append_storages(
    writer: ArchiveWriter,
    storages: Sequence[AnyStorage],
    excludes: Sequence[str],
    reporter: Reporter,
    left_out: Collection[Path | tuple[int, str]] = (),
    only: Collection[Path | tuple[int, str]] | None = None,
) -> tuple[list[Skipped], int]:
    """Add the files of ``storages`` but those ``left_out`` (real paths, or
    storage and name for storages without folders), and symbolic links to
    them, which would tell their names; with ``only`` (a subset's), none but
    those, folders aside.

    :returns: what was skipped as unsafe, and how many were left out.
    """
    skipped: list[Skipped] = []
    omitted = 0
    total = 0
    if reporter.progress_output is not None:  # sizing takes a walk: only for a bar
        total = sum(plan_storage(s, excludes).size for s in storages)
    advance = reporter.progress(total, "Archiving storages")
    for storage in storages:
        if isinstance(storage, StorageFiles):
            omitted += _append_files(
                writer, storage, excludes, advance, left_out, skipped, reporter, only
            )
            continue
        for item in walk_storage(storage, excludes):
            if isinstance(item, Skipped):
                reporter.warning(f"skipped '{item.path}': {item.reason}")
                skipped.append(item)
                continue
            why = None if item.kind == "directory" else leaving(item.path, left_out, only)
            if why is not None:
                advance(item.size)
                if why == "dropped":
                    omitted += 1
            elif item.kind == "file":
                writer.add_file(item.path, item.arcname, advance, status=item.status)
            elif item.kind == "directory":
                writer.add_directory(item.path, item.arcname)
            else:
                writer.add_symlink(item.arcname, item.target)
    return skipped, omitted


def _append_files(
    writer: ArchiveWriter,
    source: StorageFiles,
    excludes: Sequence[str],
    advance: Callable[[int], None],
    left_out: Collection[Path | tuple[int, str]],
    skipped: list[Skipped],
    reporter: Reporter,
    only: Collection[Path | tuple[int, str]] | None = None,
) -> int:
    """Stream the files of a storage without folders into the archive, in
    listing order, small ones read ahead (:func:`read_ahead`); the storage's
    own folder is added so an empty one restores.

    :returns: how many files were left out.
    """
    alias = source.entry.alias
    identity = storage_identity(source.storage)
    writer.add_directory(None, str(source.relpath))
    omitted = 0

    def wanted() -> Iterator[StoredEntry]:
        nonlocal omitted
        for item in walk_files(source, excludes):
            if isinstance(item, Skipped):
                reporter.warning(f"skipped {alias}:'{item.path}': {item.reason}")
                skipped.append(item)
            elif left_out and (identity, item.stored.name) in left_out:
                advance(item.size)
                omitted += 1
            elif only is not None and (identity, item.stored.name) not in only:
                advance(item.size)
            else:
                yield item

    for item, opener in read_ahead(source.storage, wanted(), lambda entry: entry.stored):
        # A short read (the object changed, the connection broke) is told
        # by the storage's alias; a failed write names the archive (DumpError).
        with translated(alias, f"read {item.stored.name!r}"), opener() as (stream, size):
            writer.add_stream(item.arcname, stream, size, item.stored.mtime, advance)
            if stream.read(1):  # longer than listed: never archive a cut file
                raise DumpError(
                    f"storage {alias!r}: {item.stored.name!r} changed while it was "
                    "archived; dump again"
                )
    return omitted


def plan_storage(storage: AnyStorage, excludes: Sequence[str] = ()) -> StoragePlan:
    """Count the files and bytes a storage would add, without reading them."""
    plan = StoragePlan(storage)
    if isinstance(storage, StorageFiles):
        for stored in walk_files(storage, excludes):
            if isinstance(stored, StoredEntry):
                plan.files += 1
                plan.size += stored.size
            else:
                plan.skipped.append(stored)
        return plan
    for item in walk_storage(storage, excludes):
        if isinstance(item, Skipped):
            plan.skipped.append(item)
        elif isinstance(item, Entry) and item.kind == "file":
            plan.files += 1
            plan.size += item.size
    return plan


def plan_data(definitions: Sequence[Definition], using: str) -> dict[str, dict[str, int]]:
    """Objects per model that each definition would dump, read from one snapshot."""
    with consistent_snapshot(using):
        return {d.name: count_objects(d, using) for d in definitions}


def build_manifest(
    definitions: Sequence[Definition],
    datas: list[str],
    counts: dict[str, dict[str, int]],
    storages: Sequence[AnyStorage],
    now: datetime,
    using: str,
) -> dict[str, Any]:
    """The manifest, less its ``members`` (the archive writer adds those)."""
    return {
        "version": __version__,
        "format": FORMAT_VERSION,
        "creation": now.isoformat(timespec="seconds"),
        "datas": datas,
        "storages": [str(s.relpath) for s in storages],
        "django": django.get_version(),
        "database": connections[using].vendor,
        "applications": [
            {
                "name": d.name,
                "data": path,
                "natural_foreign": d.natural_foreign,
                "natural_primary": d.natural_primary,
                "objects": counts[d.name],
            }
            for d, path in zip(definitions, datas, strict=True)
        ],
        "migrations": applied_migrations(using),
    }
