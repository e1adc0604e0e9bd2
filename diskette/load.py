"""Load: restore an archive's data and storages, all or nothing, even through ``kill -9``.

The order is what makes it safe:

0. A load interrupted earlier is finished or undone (:func:`recover_interrupted`).
1. The archive is read whole and verified (:func:`diskette.archive.unpack`).
   Data files go to a private staging folder; each storage's files go to a
   work folder *inside* the local storage folder they will replace, so the
   swap is a rename on one file system (:mod:`diskette.journal`). Only the
   storages the local ``DISKETTE_STORAGES`` declares receive anything, and
   each member is checked against free space before it is written. A
   hostile, truncated or corrupt archive changes nothing. With ``--reset``
   the database is dropped only after this, so never before the archive's
   last byte: read from a pipe (``diskette_load -``), whoever writes it
   decides with that byte whether the reset may come (:mod:`diskette.feed`).
2. One transaction holds a :class:`~diskette.models.Load` row naming this
   load, every data file (objects of the models the local definitions cover,
   :mod:`diskette.trust`), then each storage's swap, journal first.
3. COMMIT; then the set-aside entries are removed.

A crash anywhere leaves data and media both old or both new once the next
diskette command has read the journal: the ``Load`` row tells it whether the
data committed.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import IO, Any

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.serializers.base import DeserializationError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from .archive import DATA_DIR, Unpacked, unpack
from .conf import DisketteSettings, StorageAlias
from .delta import Source, Survey, kept_sources, place_kept, sidecar_of
from .exceptions import (
    ArchiveError,
    ConfigurationError,
    GuardError,
    LoadError,
    StorageError,
    UnsafeArchiveError,
    UntrustedDataError,
)
from .fastload import fast_load
from .guards import refuse_populated, refuse_production
from .hooks import AfterLoad, Loaded
from .journal import (
    StorageSwap,
    is_work_folder,
    locked,
    recover,
    staging_folder,
    sweep_staging,
)
from .mediaindex import record_loaded
from .models import Load
from .objectstorage import get_storage, local_folder
from .reporting import Reporter, error_line, human_size
from .schema import migration_differences, migrations_after_reset
from .signals import post_load
from .storages import ALIASES_DIR, alias_relpath
from .trust import ModelPolicy, declared_storages, json_objects, listed_models

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
#: Serializes loads into one PostgreSQL database (``pg_advisory_xact_lock``;
#: MySQL takes a named lock instead, see ``_alone``),
#: so two loads cannot both find it empty and merge.
ADVISORY_LOCK = 0x6469736B  # "disk"
#: Seconds a load waits for another one on MySQL: as good as forever, as on PostgreSQL.
MYSQL_LOCK_WAIT = 365 * 24 * 3600


@dataclass(frozen=True)
class LoadOptions:
    """How to load, as the command line says.

    :param exclude_data: data to leave out, by definition name, file name or
        file stem.
    :param checksum: expected sha256 of the archive file.
    :param strict: refuse when the archive's applied migrations differ from
        the local database's, instead of warning.
    :param check: stop once the archive is verified: change nothing.
    :param loaddata: load with Django's ``loaddata``, one object at a time,
        instead of in batches (:mod:`diskette.fastload`, the default).
    :param everything: accept objects of every model, for a whole-database
        snapshot (``diskette_dump --everything``) rather than only the
        models of ``DISKETTE_APPS``.
    :param overwrite: load into tables that hold data already.
    :param force: load although ``DEBUG`` is False.
    :param override_protection: load although ``DISKETTE_PROTECTED`` is set.
    :param require_anonymized: refuse an archive whose manifest does not say
        it is anonymized (``DISKETTE_LOAD_REQUIRE_ANONYMIZED``, unless
        ``--allow-raw``).
    :param after_load: the hooks to run in the load's transaction, once data
        and media are in place (``DISKETTE_AFTER_LOAD``, :mod:`diskette.hooks`).
    :param hooks: run them, and send ``post_load``; ``False`` to put a
        safety snapshot back, whose data had its fix-ups already: a hook
        that failed the load it guards would fail its restoring too.
    :param reset: empties the database and migrates it (``diskette_load
        --reset``), called once the whole archive is verified and staged,
        before any data loads: an archive that cannot be loaded drops
        nothing. The archive's migrations are compared, before it, with
        those the reset will apply (``--strict`` refuses while the database
        is still there). A load that fails after it leaves the database
        empty, and the media as they were.
    """

    with_data: bool = True
    with_storages: bool = True
    exclude_data: Sequence[str] = ()
    ignorenonexistent: bool = False
    checksum: str | None = None
    strict: bool = False
    check: bool = False
    loaddata: bool = False
    everything: bool = False
    overwrite: bool = False
    force: bool = False
    override_protection: bool = False
    require_anonymized: bool = False
    using: str = DEFAULT_DB_ALIAS
    after_load: tuple[AfterLoad, ...] = ()
    hooks: bool = True
    reset: Callable[[], object] | None = None


@dataclass
class LoadResult:
    """What a load did: data files loaded, storages restored."""

    archive: Unpacked
    loaded: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)


def load(
    archive: Path,
    *,
    storages: dict[str, Path],
    definitions: Any = (),
    options: LoadOptions = LoadOptions(),  # noqa: B008 - frozen, never mutated
    reporter: Reporter | None = None,
    stream: IO[bytes] | None = None,
) -> LoadResult:
    """Restore ``archive`` into the database and the declared ``storages``.

    :param storages: the storages this project declares, by their path in
        archives (relative to the base path), with the folder each restores
        to (:func:`local_storages`).
    :param definitions: the project's definitions (``DISKETTE_APPS``), which
        say what models may be loaded.
    :param stream: read the archive from this stream instead (a pipe:
        ``diskette_load -``), which ``archive`` then only names. It is read
        in one pass like a file, and its last byte is needed before anything
        changes: whoever writes it decides, by writing that byte or not,
        whether the load may go on to the reset.
    :raises ArchiveError: an archive that is not what it claims.
    :raises UntrustedDataError: an archive holding a storage or a model this
        project does not declare.
    :raises GuardError: production, a protected project, a populated database.
    :raises LoadError: data that does not load; in every case the database
        and the storages are as they were.
    """
    reporter = reporter or Reporter()
    if not options.check:
        refuse_production(
            "load into",
            force=options.force,
            override_protection=options.override_protection,
        )
    for line in recover_interrupted(storages.values(), options.using):
        reporter.warning(line)
    policy = ModelPolicy.from_definitions(
        definitions, options.everything, options.ignorenonexistent
    )
    # Streamed, the archive arrives for a while: the storages' files are
    # surveyed meanwhile, for the kept files of a delta.
    survey = (
        None
        if stream is None or not options.with_storages
        else Survey(Path(os.path.realpath(folder)) for folder in storages.values())
    )
    with ExitStack() as stack:
        # Data files are extracted even for --check: their objects are
        # checked against the local definitions before a task drops anything.
        data_dir = stack.enter_context(staging_folder()) if options.with_data else None
        restore = _Restore(storages, archive.name, options.using, stack)
        try:
            unpacked = _unpack(archive, data_dir, restore, options, reporter, stream)
            if options.require_anonymized:
                refuse_raw(archive, unpacked.manifest)
            datas = (
                _chosen_datas(unpacked, options.exclude_data) if options.with_data else []
            )
            chosen = unpacked.storages if options.with_storages else []
            for storage in chosen:
                _check_declared(storage, storages)
            # A delta's kept files: found here before anything changes.
            sources = kept_sources(
                unpacked,
                {name: Path(os.path.realpath(storages[name])) for name in chosen},
                None if stream is not None else sidecar_of(archive),
                save=not options.check,
                survey=survey,
            )
            reset = None if options.check else options.reset
            # With a reset to come, compared with what it will leave.
            after_reset = migrations_after_reset() if reset is not None else None
            _check_migrations(
                unpacked, options.using, options.strict, reporter, after_reset
            )
            listed = {data: listed_models(unpacked.manifest, data) for data in datas}
            files = [
                _vetted(
                    _DataFile(data_dir / data, data),
                    policy,
                    listed[data],
                    checked_later=not options.loaddata and not options.check,
                )
                for data in datas
                if data_dir is not None  # always, when there are datas
            ]
            if options.check:
                reporter.info(
                    f"Archive verified: {len(datas)} data files and {len(chosen)} "
                    "storages would be restored; nothing was changed"
                )
                return LoadResult(unpacked)
            for storage in chosen:
                restore.swap_of(storage)  # an empty storage has no member
            if sources:
                elsewhere = restore.keep_in_place(sources)
                reporter.info(
                    f"Leaving {len(sources) - len(elsewhere)} of the files this delta "
                    "keeps where they are"
                    + (
                        f", linking {len(elsewhere)} from elsewhere here"
                        if elsewhere
                        else ""
                    )
                )
                place_kept(elsewhere, restore.place)
            if reset is not None:  # the new media are ready beside the old
                reset()
            return _restore(
                _Plan(unpacked, files, listed, policy), restore, options, reporter
            )
        except BaseException:
            restore.undo()
            raise


def refuse_raw(archive: Path, manifest: dict[str, Any]) -> None:
    """Refuse an archive that does not say it is anonymized.

    The manifest's word is taken: this guards a laptop against loading a raw
    production dump by mistake, not against a forged archive.

    :raises GuardError: naming the archive, the setting and the way out.
    """
    if manifest.get("anonymized") is not True:
        raise GuardError(
            f"'{archive.name}' is not anonymized and DISKETTE_LOAD_REQUIRE_ANONYMIZED "
            "refuses raw archives here; dump it where DISKETTE_ANONYMIZE has rules, "
            "or pass --allow-raw"
        )


def _unpack(
    archive: Path,
    data_dir: Path | None,
    restore: _Restore,
    options: LoadOptions,
    reporter: Reporter,
    stream: IO[bytes] | None = None,
) -> Unpacked:
    """Verify the whole archive; write data files and (unless ``--check``) storages."""
    if stream is None:
        size = archive.stat().st_size
        reporter.info(f"Verifying archive '{archive}' ({human_size(size)})")
    else:
        size = 0  # unknown until its end
        reporter.info("Verifying the archive coming on the standard input")

    def place(name: str) -> Path | None:
        if name == DATA_DIR or name.startswith(f"{DATA_DIR}/"):
            return data_dir / name if data_dir else None
        if options.check or not options.with_storages:
            return None
        return restore.place(name)

    unpacked = unpack(
        archive,
        place=place,
        progress=reporter.progress(
            size, "Verifying archive" if stream is None else "Receiving and verifying"
        ),
        digest=bool(options.checksum),
        source=stream,
    )
    if options.checksum and unpacked.sha256 != options.checksum.strip().lower():
        raise ArchiveError(
            f"'{archive}' has sha256 {unpacked.sha256}, not the expected {options.checksum}"
        )
    return unpacked


def local_storages(
    paths: Iterable[str | Path], target: Path | None = None, base: Path | None = None
) -> dict[str, Path]:
    """The declared storages by archive path, with the folder each restores to.

    Archive paths are relative to ``base`` (the settings' ``base_dir``; the
    current directory if not given), as ``diskette_dump`` records them; this
    is the one place that says so.

    :param target: where to restore them instead (the load's
        ``--storages-basepath`` or ``DISKETTE_LOAD_STORAGES_PATH``).
    """
    declared = declared_storages(paths, base or Path.cwd())
    if target is None:
        return declared
    target = Path(os.path.abspath(target))
    return {name: target / name for name in declared}


class DeclaredStorages(dict[str, Path]):
    """The folder each declared storage loads into, by archive path; and, in
    :attr:`refused`, why a ``STORAGES`` entry has none here."""

    def __init__(self, folders: dict[str, Path], refused: dict[str, str]) -> None:
        super().__init__(folders)
        self.refused = refused


def project_storages(
    settings: DisketteSettings, target: Path | None = None
) -> DeclaredStorages:
    """Every storage ``DISKETTE_STORAGES`` declares, by archive path, with
    the folder a load writes it to: folders, and ``STORAGES`` entries.

    A ``STORAGES`` entry with no local folder to load into (S3 on a staging
    host, a folder that holds the project) is left out, with why: a dump has
    nothing to write there, and a load of an archive holding its files is
    refused in one line saying so (:func:`_check_declared`).

    :param target: the load's ``--storages-basepath``: every storage goes
        below it, at its archive path.
    """
    declared = local_storages(settings.storages, target, base=settings.base_dir)
    refused: dict[str, str] = {}
    base = Path(os.path.abspath(settings.base_dir))
    for entry in settings.storage_aliases:
        relpath = str(alias_relpath(entry))
        if target is not None:
            declared[relpath] = Path(os.path.abspath(target)) / relpath
            continue
        try:
            folder = alias_load_folder(entry, base)
        except ConfigurationError as exc:  # no folder here, or no such storage
            refused[relpath] = str(exc)
            continue
        for name, other in declared.items():
            if folder.is_relative_to(other) or other.is_relative_to(folder):
                refused[relpath] = (
                    f"storage {entry.alias!r} would load into '{folder}', which overlaps "
                    f"storage '{name}' ('{other}'): give it a folder of its own"
                )
                break
        else:
            declared[relpath] = folder
    return DeclaredStorages(declared, refused)


def alias_load_folder(entry: StorageAlias, base: Path) -> Path:
    """The local folder a ``STORAGES`` entry's files load into.

    Its ``load_to`` (a ``STORAGES`` alias, else a folder relative to
    ``base``), else the folder of the same alias here: on a laptop
    ``STORAGES["default"]`` is a ``FileSystemStorage`` on ``MEDIA_ROOT``.

    :raises StorageError: no local folder, or one that holds the project.
    :raises ConfigurationError: a storage that ``STORAGES`` lacks or that
        cannot be created.
    """
    from django.conf import settings as django_settings

    name = entry.load_to or entry.alias
    if entry.load_to is None or entry.load_to in getattr(django_settings, "STORAGES", {}):
        storage = get_storage(name, "DISKETTE_STORAGES")
        location = local_folder(storage)
        if location is None:
            raise StorageError(
                f"storage {name!r} is {type(storage).__name__} here, which has no local "
                f"folder to load {entry.alias!r} into: set 'load_to' in its "
                "DISKETTE_STORAGES entry to a folder, or load with --no-storages"
            )
        folder = Path(os.path.abspath(Path(location, entry.prefix)))
    else:
        folder = Path(os.path.abspath(base / entry.load_to))
    if folder == base or base.is_relative_to(folder):
        raise StorageError(
            f"storage {entry.alias!r} would load into '{folder}', which holds the "
            "project itself: set MEDIA_ROOT (or the entry's 'load_to') to a media folder"
        )
    return folder


def recover_interrupted(folders: Iterable[Path], using: str) -> list[str]:
    """Finish or undo loads a crash interrupted; one line per load, for the user.

    :raises BusyError: a load is running on one of ``folders``.
    """

    def committed(load_id: str, database: str | None) -> bool:
        alias = database or using
        if alias not in connections:
            raise LoadError(
                f"an interrupted load's journal names database '{alias}', which this "
                "project does not define: run the command with the settings of that load"
            )
        try:
            return Load.objects.using(alias).filter(pk=load_id).exists()
        except ValidationError:
            return False  # not an id a load wrote: no load of it committed
        except DatabaseError as exc:
            if not _has_load_table(alias):
                return False  # no table: no load could commit there
            raise LoadError(
                f"cannot ask database '{alias}' whether an interrupted load committed "
                f"({_one_line(exc)}): nothing was changed; run the command again"
            ) from exc

    folders = list(folders)
    return [
        *(
            f"recovered: {line}"
            for line in [*recover(folders, committed), *sweep_staging()]
        ),
        *_older_leftovers(folders),
    ]


def _older_leftovers(folders: Iterable[Path]) -> Iterator[str]:
    """Folders an earlier diskette left beside a storage when a load was killed.

    It renamed the storage aside as ``.<name>.diskette-previous-*``; such a
    folder may hold the only copy of the media from before that load, so it
    is pointed out, never removed.
    """
    for folder in folders:
        for aside in sorted(folder.parent.glob(f".{folder.name}.diskette-previous-*")):
            yield (
                f"'{aside}' was left by an interrupted load of an earlier diskette: it "
                f"holds the media '{folder.name}' had before that load; compare it "
                "with your media, then remove it"
            )


@dataclass(frozen=True)
class _DataFile:
    path: Path
    member: str


class _Restore:
    """The storage swaps of one load, started as the archive's members arrive."""

    def __init__(
        self, storages: dict[str, Path], archive: str, using: str, stack: ExitStack
    ) -> None:
        # Longest first: a member goes to the most specific storage.
        self.storages = dict(sorted(storages.items(), key=lambda item: -len(item[0])))
        self.archive = archive
        self.using = using
        self.stack = stack
        self.load_id = uuid.uuid4().hex
        self.swaps: dict[str, StorageSwap] = {}
        self.created: list[Path] = []

    def place(self, name: str) -> Path | None:
        """Where member ``name`` goes: into the work folder of its storage."""
        found = self._storage_of(name)
        if found is None:
            return None  # verified, not written: check_members decides on it
        storage, inner = found
        return self.swap_of(storage).new / inner if inner else self.swap_of(storage).new

    def _storage_of(self, name: str) -> tuple[str, str] | None:
        """The storage of member ``name``, and its path in that storage."""
        for storage in self.storages:
            if name == storage:
                return storage, ""
            if name.startswith(f"{storage}/"):
                inner = name[len(storage) + 1 :]
                if is_work_folder(inner.split("/", 1)[0]):
                    raise UnsafeArchiveError(
                        f"member '{name}' is named like diskette's own work folders"
                    )
                return storage, inner
        return None

    def keep_in_place(self, sources: Mapping[str, Source]) -> dict[str, Source]:
        """Leave each kept file of a delta that is at its own path where it
        is; return the others, to link into the new contents.

        Only a file whose folders are real ones here stays: one reached
        through a link would vanish when the swap replaces that link.
        """
        others: dict[str, Source] = {}
        real: dict[str, bool] = {}  # per folder: whether it is where it seems
        # Paths as text: a delta may keep tens of thousands of files.
        for name, source in sources.items():
            found = self._storage_of(name)
            if found is not None and found[1]:
                swap = self.swap_of(found[0])
                path = source.path
                parent = os.path.dirname(path)
                if parent not in real:
                    real[parent] = os.path.realpath(parent) == parent
                if real[parent] and path == os.path.join(swap.folder, found[1]):
                    swap.keep(found[1], source.status)
                    continue
            others[name] = source
        return others

    def swap_of(self, storage: str) -> StorageSwap:
        if storage not in self.swaps:
            folder = self._folder(storage)
            self.stack.enter_context(locked([folder]))
            self.swaps[storage] = StorageSwap.start(
                folder, self.load_id, self.archive, self.using
            )
        return self.swaps[storage]

    def _folder(self, storage: str) -> Path:
        """The real folder a storage restores into: a symlink's target, kept as is."""
        destination = self.storages[storage]
        if destination.is_symlink() or destination.exists():
            real = destination.resolve()
            if not real.is_dir():
                raise LoadError(
                    f"storage '{storage}' cannot be restored: '{destination}' is not a folder"
                )
            if destination.parent.resolve().is_relative_to(real):
                raise LoadError(
                    f"storage '{storage}' leads to '{real}', which holds the storage "
                    "itself (the project, say): refusing to replace its contents"
                )
            return real
        missing = destination
        while not missing.parent.exists():
            missing = missing.parent
        destination.mkdir(parents=True)
        self.created.append(missing)
        return destination

    def swap(self, reporter: Reporter, unpacked: Unpacked) -> list[str]:
        """Swap every storage's new contents in; return the storages swapped."""
        restored = []
        for storage, swap in self.swaps.items():
            size = sum(
                m.size
                for m in unpacked.members.values()
                if m.name.startswith(f"{storage}/")
            )
            reporter.info(f"Restoring storage directory ({human_size(size)}): {storage}")
            try:
                swap.swap()
            except OSError as exc:
                raise LoadError(
                    f"storage '{storage}' could not be swapped into '{swap.folder}': "
                    f"{exc.strerror or exc}"
                ) from exc
            restored.append(storage)
        return restored

    def folders(self) -> dict[str, Path]:
        """The folder each storage swapped, by its path in the archive."""
        return {storage: swap.folder for storage, swap in self.swaps.items()}

    def kept(self) -> dict[str, dict[str, os.stat_result]]:
        """The files each storage kept in place, with their ``lstat``."""
        return {storage: swap.kept for storage, swap in self.swaps.items()}

    def finish(self) -> None:
        for swap in self.swaps.values():
            swap.finish()
        self.swaps.clear()

    def undo(self) -> None:
        for swap in self.swaps.values():
            swap.undo()
        self.swaps.clear()
        for folder in self.created:
            with contextlib.suppress(OSError):  # only if still empty
                _remove_empty_tree(folder)


def _remove_empty_tree(folder: Path) -> None:
    for inner in sorted(folder.rglob("*"), reverse=True):
        inner.rmdir()
    folder.rmdir()


def _check_declared(storage: str, storages: dict[str, Path]) -> None:
    refused = storages.refused if isinstance(storages, DeclaredStorages) else {}
    if storage in refused:
        raise UntrustedDataError(f"the archive holds '{storage}', but {refused[storage]}")
    if storage not in storages and storage.startswith(f"{ALIASES_DIR}/"):
        alias = storage.split("/")[1]
        raise UntrustedDataError(
            f"the archive holds the files of storage {alias!r} ('{storage}'), which "
            "DISKETTE_STORAGES does not declare here, or declares without a local "
            f'folder to load into: declare {{"storage": "{alias}"}} (with a \'load_to\' '
            "folder if it is not a FileSystemStorage here), or load with --no-storages"
        )
    if storage not in storages:
        declared = ", ".join(f"'{s}'" for s in storages) or "none"
        raise UntrustedDataError(
            f"the archive holds storage '{storage}', which DISKETTE_STORAGES does not "
            f"declare here (declared: {declared}): declare it, or load with --no-storages"
        )


def _chosen_datas(unpacked: Unpacked, exclude: Sequence[str]) -> list[str]:
    """Data members to load, after ``--exclude-data``; unknown names refused."""
    names = {
        a.get("data"): a.get("name")
        for a in unpacked.manifest.get("applications") or []
        if isinstance(a, dict)
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
    unpacked: Unpacked,
    using: str,
    strict: bool,
    reporter: Reporter,
    local: dict[str, list[str]] | None = None,
) -> None:
    try:
        differing = migration_differences(unpacked.manifest.get("migrations"), using, local)
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


@dataclass(frozen=True)
class _Plan:
    """What a verified archive loads: its data files and the models each may hold."""

    unpacked: Unpacked
    files: list[_DataFile]
    #: Per data member, the models its manifest lists (``None``: not listed).
    listed: dict[str, frozenset[str] | None]
    policy: ModelPolicy

    def labels(self) -> set[str]:
        """Every model the data may write to: the tables that must be empty."""
        labels: set[str] = set()
        for known in self.listed.values():
            labels |= known if known is not None else self.policy.allowed
        return labels


def _restore(
    plan: _Plan, restore: _Restore, options: LoadOptions, reporter: Reporter
) -> LoadResult:
    """Data, then storages, in one transaction; storages undone on any failure."""
    using = options.using
    result = LoadResult(plan.unpacked)

    def announce(member: str) -> None:
        size = human_size(plan.unpacked.members[member].size)
        reporter.info(f"Loading data from dump '{Path(member).name}' ({size})")
        result.loaded.append(member)

    if not _has_load_table(using):
        raise LoadError(
            f"diskette's table '{Load._meta.db_table}' is missing from the database: "
            "run manage.py migrate first"
        )
    try:
        with _alone(using):
            Load.objects.using(using).create(
                id=restore.load_id, archive=plan.unpacked.path.name[:255]
            )
            refuse_populated(plan.labels(), using, overwrite=options.overwrite)
            if not options.loaddata:
                fast_load(
                    [(f.path, f.member) for f in plan.files],
                    using,
                    announce,
                    options.ignorenonexistent,
                    check=lambda data, member: plan.policy.check(
                        data, member, plan.listed[member]
                    ),
                    note=reporter.detail,
                    overwrite=options.overwrite,
                )
            for data in plan.files if options.loaddata else []:
                announce(data.member)
                _load_fixture(data, options.ignorenonexistent, using)
            result.restored = restore.swap(reporter, plan.unpacked)
            if options.hooks:
                _after_load(plan.unpacked, result, options, reporter)
    except DatabaseError as exc:  # a busy database, a deferred constraint at COMMIT
        raise LoadError(f"the data could not be committed: {_one_line(exc)}") from exc
    folders, kept = restore.folders(), restore.kept()
    restore.finish()
    for storage in result.restored:  # the next pull reads none of them again
        files = plan.unpacked.files(storage)
        record_loaded(
            folders[storage],
            {name: m.sha256 for name, m in files.items()},
            kept.get(storage),
        )
    return result


def _after_load(
    unpacked: Unpacked, result: LoadResult, options: LoadOptions, reporter: Reporter
) -> None:
    """The hooks, then ``post_load``'s receivers: still in the transaction,
    so that one failing rolls the load back (the caller undoes the media)."""
    loaded = Loaded(
        archive=unpacked.path.name,
        manifest=unpacked.manifest,
        using=options.using,
        storages=list(result.restored),
    )
    for hook in options.after_load:
        reporter.info(f"Running after-load hook '{hook.path}'")
        hook(loaded)
    for receiver, outcome in post_load.send_robust(sender=Load, loaded=loaded):
        if isinstance(outcome, Exception):
            name = f"{receiver.__module__}.{getattr(receiver, '__qualname__', receiver)}"
            raise LoadError(
                f"post_load receiver '{name}' failed ({type(outcome).__name__}: "
                f"{error_line(outcome)}); nothing was loaded"
            ) from outcome


def _has_load_table(using: str) -> bool:
    try:
        return Load._meta.db_table in connections[using].introspection.table_names()
    except DatabaseError:
        return True  # cannot tell: assume so, and let the query's error speak


@contextlib.contextmanager
def _alone(using: str) -> Iterator[None]:
    """The load's transaction, once any other load into this database has ended.

    PostgreSQL holds a transaction-level advisory lock; MySQL's named locks
    belong to the session, so one is taken before the transaction starts and
    released after it ends, committed or not. SQLite: the first write (the
    ``Load`` row) takes the database's write lock.
    """
    connection = connections[using]
    if connection.vendor != "mysql":
        with transaction.atomic(using=using):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK])
            yield
        return
    # Named locks are server-wide: the name says which database (64 characters
    # at most). MariaDB refuses a negative ("forever") timeout: a year it is.
    name = f"diskette-load:{connection.settings_dict['NAME']}"[:64]
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, %s)", [name, MYSQL_LOCK_WAIT])
        (taken,) = cursor.fetchone()
    if taken != 1:
        raise LoadError(
            f"could not take the named lock {name!r} that keeps two loads apart "
            f"(GET_LOCK answered {taken!r}): try again"
        )
    try:
        with transaction.atomic(using=using):
            yield
    finally:
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", [name])


def _vetted(
    data: _DataFile,
    policy: ModelPolicy,
    listed: frozenset[str] | None,
    *,
    checked_later: bool,
) -> _DataFile:
    """Check every object of ``data`` may be loaded here; JSON arrays become JSON Lines.

    :param checked_later: JSON Lines objects are checked as they load
        (unless ``--loaddata``), so they are not read twice here.
    """
    convert = data.member.endswith(".json")
    if checked_later and not convert:
        return data
    output = data.path.with_suffix(".jsonl") if convert else None
    with (
        open(output, "w", encoding="utf-8") if output else contextlib.nullcontext() as sink
    ):
        for _, obj in json_objects(data.path, data.member):
            policy.check(obj, data.member, listed)
            if sink is not None:
                sink.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return _DataFile(output, data.member) if output else data


def _load_fixture(data: _DataFile, ignorenonexistent: bool, using: str) -> None:
    if data.path.stat().st_size == 0:
        return  # an empty file: loaddata would only warn "No fixture data found"
    try:
        call_command(
            "loaddata",
            str(data.path),
            ignorenonexistent=ignorenonexistent,
            database=using,
            verbosity=0,
            stdout=StringIO(),
        )
    except FIXTURE_ERRORS as exc:
        detail = _one_line(exc)
        cause = _one_line(exc.__cause__) if exc.__cause__ is not None else ""
        if cause not in detail:  # Django 4.2 chains the reason to an empty error
            detail = f"{detail} {cause}"
        detail = detail.replace(str(data.path), data.member)
        raise LoadError(f"data '{data.member}' could not be loaded: {detail}") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
