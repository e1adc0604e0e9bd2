"""Load: restore an archive's data and storages, all or nothing.

The order is what makes it safe:

1. The archive is read whole and verified (:func:`diskette.archive.unpack`)
   into a private staging folder below the storages base path. Nothing else
   is touched yet, so a hostile, truncated or corrupt archive changes nothing.
2. Every data file is loaded with Django's ``loaddata`` inside one
   transaction (``loaddata``'s own guarantees: constraint checks, sequence
   reset, routers), so a failing file undoes the ones before it.
3. Still inside that transaction, each storage directory is swapped: the
   current one is renamed aside, the staged one renamed in. Renames are cheap
   and local, and any failure until the commit renames everything back and
   rolls the data back, so data and media never disagree.
4. After the commit, the set-aside directories are removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.serializers.base import DeserializationError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction

from .archive import DATA_DIR, Unpacked, unpack
from .exceptions import ArchiveError, LoadError
from .fastload import fast_load
from .reporting import Reporter, human_size
from .schema import migration_differences

#: What ``loaddata`` raises for a fixture that does not fit the database.
FIXTURE_ERRORS = (
    CommandError,
    DatabaseError,
    DeserializationError,
    ObjectDoesNotExist,
    ValidationError,
    ValueError,
    LookupError,
)


@dataclass
class LoadResult:
    """What a load did: data files loaded and storages restored."""

    archive: Unpacked
    loaded: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)


def load(
    archive: Path,
    *,
    basepath: Path,
    with_data: bool = True,
    with_storages: bool = True,
    exclude_data: Sequence[str] = (),
    ignorenonexistent: bool = False,
    checksum: str | None = None,
    strict: bool = False,
    check: bool = False,
    fast: bool = False,
    using: str = DEFAULT_DB_ALIAS,
    reporter: Reporter | None = None,
) -> LoadResult:
    """Restore ``archive`` into the database ``using`` and below ``basepath``.

    :param exclude_data: data to leave out, by definition name, file name or
        file stem.
    :param checksum: expected sha256 of the archive file.
    :param strict: refuse when the archive's applied migrations differ from
        the local database's, instead of warning.
    :param check: stop once the archive is verified: change nothing.
    :param fast: load JSON Lines data in batches (:mod:`diskette.fastload`:
        no save signals) instead of with ``loaddata``.
    :raises ArchiveError: an archive that is not what it claims.
    :raises LoadError: data that does not load, or a refused load; in every
        case the database and the storages are as they were.
    """
    reporter = reporter or Reporter()
    basepath = Path(os.path.abspath(basepath))
    if with_storages and not basepath.is_dir():
        raise LoadError(f"storages base path '{basepath}' is not a directory")
    writes = with_storages and not check  # a check unpacks nothing, anywhere
    staging = Path(
        tempfile.mkdtemp(prefix=".diskette-restore-", dir=basepath if writes else None)
    )
    try:
        size = archive.stat().st_size
        reporter.info(f"Verifying archive '{archive}' ({human_size(size)})")
        unpacked = unpack(
            archive,
            staging,
            wanted=lambda name: (
                not check and (with_data if _is_data(name) else with_storages)
            ),
            progress=reporter.progress(size),
            digest=bool(checksum),
        )
        if checksum and unpacked.sha256 != checksum.strip().lower():
            raise ArchiveError(
                f"'{archive}' has sha256 {unpacked.sha256}, not the expected {checksum}"
            )
        datas = _chosen_datas(unpacked, exclude_data) if with_data else []
        storages = unpacked.storages if with_storages else []
        _check_migrations(unpacked, using, strict, reporter)
        result = LoadResult(unpacked)
        if check:
            reporter.info(
                f"Archive verified: {len(datas)} data files and {len(storages)} "
                "storages would be restored; nothing was changed"
            )
            return result
        _restore(
            unpacked,
            datas,
            storages,
            basepath,
            ignorenonexistent,
            using,
            reporter,
            result,
            fast=fast,
        )
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_data(name: str) -> bool:
    return name == DATA_DIR or name.startswith(f"{DATA_DIR}/")


def _chosen_datas(unpacked: Unpacked, exclude: Sequence[str]) -> list[str]:
    """Data members to load, after ``--exclude-data``; unknown names refused."""
    names = {
        a.get("data"): a.get("name") for a in unpacked.manifest.get("applications") or []
    }
    chosen, matched = [], set()
    for data in unpacked.datas:
        filename = Path(data).name
        aliases = {filename, filename.rsplit(".", 1)[0], names.get(data)}
        hits = aliases & set(exclude)
        matched |= hits
        if not hits:
            chosen.append(data)
    for name in exclude:
        if name not in matched:
            raise LoadError(f"--exclude-data '{name}' matches no data in the archive")
    return chosen


def _check_migrations(
    unpacked: Unpacked, using: str, strict: bool, reporter: Reporter
) -> None:
    try:
        differing = migration_differences(unpacked.manifest.get("migrations"), using)
    except DatabaseError as exc:
        raise LoadError(f"cannot read the database to load into: {exc}") from exc
    if not differing:
        return
    message = (
        "applied migrations differ between the archive and this database for: "
        + ", ".join(differing)
    )
    if strict:
        raise LoadError(f"{message} (refused with --strict)")
    reporter.warning(message)


def _restore(
    unpacked: Unpacked,
    datas: list[str],
    storages: list[str],
    basepath: Path,
    ignorenonexistent: bool,
    using: str,
    reporter: Reporter,
    result: LoadResult,
    fast: bool = False,
) -> None:
    def announce(data: str) -> None:
        size = human_size(unpacked.members[data].size)
        reporter.info(f"Loading data from dump '{Path(data).name}' ({size})")
        result.loaded.append(data)

    if fast and not all(data.endswith(".jsonl") for data in datas):
        reporter.warning("--fast reads JSON Lines data only: loading with loaddata instead")
        fast = False
    swaps: list[_Swap] = []
    try:
        with transaction.atomic(using=using):
            if fast:
                fast_load(
                    [(unpacked.root / data, data) for data in datas],
                    using,
                    announce,
                    ignorenonexistent,
                )
            for data in [] if fast else datas:
                announce(data)
                _load_fixture(unpacked.root / data, data, ignorenonexistent, using)
            for storage in storages:
                size = sum(
                    m.size
                    for m in unpacked.members.values()
                    if m.name.startswith(f"{storage}/")
                )
                reporter.info(
                    f"Restoring storage directory ({human_size(size)}): {storage}"
                )
                swaps.append(_Swap.into(unpacked.root / storage, basepath / storage))
                result.restored.append(storage)
    except BaseException:
        for swap in reversed(swaps):
            swap.revert()
        raise
    for swap in swaps:
        swap.discard_previous()


def _load_fixture(path: Path, member: str, ignorenonexistent: bool, using: str) -> None:
    try:
        call_command(
            "loaddata",
            str(path),
            ignorenonexistent=ignorenonexistent,
            database=using,
            verbosity=0,
            stdout=StringIO(),
        )
    except FIXTURE_ERRORS as exc:
        detail = " ".join(str(exc).replace(str(path), member).split())
        raise LoadError(f"data '{member}' could not be loaded: {detail}") from exc


@dataclass
class _Swap:
    """A storage directory replaced by its staged copy, reversible until done."""

    destination: Path
    staged: Path
    previous: Path | None

    @classmethod
    def into(cls, staged: Path, destination: Path) -> _Swap:
        """Move the current ``destination`` aside, then ``staged`` in its place.

        A storage that is a symlink (media kept on another disk) is restored
        where it points, so the project keeps its layout.
        """
        if destination.is_symlink() and destination.resolve().is_dir():
            destination = destination.resolve()
        staged.mkdir(parents=True, exist_ok=True)  # a storage may be empty
        destination.parent.mkdir(parents=True, exist_ok=True)
        previous = None
        if destination.exists() or destination.is_symlink():
            previous = destination.with_name(
                f".{destination.name}.diskette-previous-{secrets.token_hex(4)}"
            )
            os.rename(destination, previous)
        try:
            shutil.move(staged, destination)  # a rename unless across file systems
        except BaseException:
            if previous is not None:
                os.rename(previous, destination)
            raise
        return cls(destination, staged, previous)

    def revert(self) -> None:
        """Put the previous directory back (the staged copy is dropped)."""
        shutil.move(self.destination, self.staged)
        if self.previous is not None:
            os.rename(self.previous, self.destination)

    def discard_previous(self) -> None:
        if self.previous is not None:
            shutil.rmtree(self.previous, ignore_errors=True)
