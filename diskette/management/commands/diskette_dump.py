"""``manage.py diskette_dump``: write the project's data and storages to an archive."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Collection, Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.db import DEFAULT_DB_ALIAS

from diskette import DOCS_URL
from diskette.anonymize import Anonymizer, configured, coverage, for_dump
from diskette.archive import DATA_DIR
from diskette.conf import check_archive_filename, check_database, get_settings
from diskette.data import dumpdata_command
from diskette.definitions import Definition, everything, load_definitions
from diskette.delta import Delta, FileKey, StorageDelta, compare, read_base_file
from diskette.dump import (
    archive_filename,
    check_something_to_dump,
    dump,
    plan_data,
    plan_storage,
)
from diskette.exceptions import ConfigurationError, DisketteError
from diskette.load import project_storages, recover_interrupted
from diskette.management.base import DisketteCommand
from diskette.registry import Registry, Snapshot
from diskette.reporting import human_size
from diskette.storages import (
    AnyStorage,
    Storage,
    missing_storages,
    resolve_aliases,
    resolve_storages,
)
from diskette.subset import Subset, read_subset


class Command(DisketteCommand):
    help = (
        "Dump application data (DISKETTE_APPS) and storage directories "
        "(DISKETTE_STORAGES) into one .tar.gz archive."
    )
    json_help = (
        "Print one JSON object instead of messages: the archive's path, size and "
        "sha256, objects per application and the storages (with --check: what would "
        "be dumped)."
    )
    # Settings are validated below with the same messages as the system
    # checks, on one line; other apps' check errors must not block a dump.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--destination",
            type=Path,
            metavar="DIR",
            help="Directory to write the archive into. Default: DISKETTE_DUMP_PATH, "
            "else the current directory.",
        )
        parser.add_argument(
            "--to-stdout",
            action="store_true",
            # Not --stdout: call_command(stdout=...) would set it.
            help="Write the archive to the standard output, for a pipe (ssh HOST "
            "manage.py diskette_dump --to-stdout > FILE); every message, the --json answer "
            "included, then goes to the standard error.",
        )
        parser.add_argument(
            "--filename",
            metavar="TEMPLATE",
            help="Archive file name, with optional {features} and {date} fields. "
            "Default: DISKETTE_DUMP_FILENAME.",
        )
        parser.add_argument(
            "--appconf",
            type=Path,
            metavar="FILE",
            help="JSON file of application definitions to use instead of DISKETTE_APPS.",
        )
        parser.add_argument(
            "--everything",
            action="store_true",
            help="Dump every model instead of DISKETTE_APPS (content types and "
            "permissions aside, which migrate recreates): a snapshot of the whole "
            "database that loads back into a freshly migrated one.",
        )
        parser.add_argument(
            "--subset",
            metavar="NAME",
            help="Dump only the rows a subset starts from and needs, and the files "
            "they name: a name of DISKETTE_SUBSETS, or a JSON file holding one "
            f"({DOCS_URL}subset.md).",
        )
        parser.add_argument(
            "--storage",
            action="append",
            dest="storages",
            metavar="DIR",
            help="Storage directory to dump instead of DISKETTE_STORAGES (repeatable).",
        )
        parser.add_argument(
            "--storages-basepath",
            type=Path,
            metavar="DIR",
            help="Directory storages are archived relative to. Default: "
            "DISKETTE_BASE_DIR, else BASE_DIR, else the current directory.",
        )
        parser.add_argument(
            "--storages-exclude",
            action="append",
            dest="storages_excludes",
            metavar="PATTERN",
            help="fnmatch pattern, relative to each storage, of files to leave out, "
            "instead of DISKETTE_STORAGES_EXCLUDES (repeatable).",
        )
        parser.add_argument(
            "--no-storages-excludes",
            action="store_true",
            help="Dump storages whole, ignoring every exclude pattern.",
        )
        parser.add_argument(
            "--indent",
            type=int,
            metavar="N",
            help="Indent .json data files and the --no-archive command lines "
            "(JSON Lines files hold one object per line).",
        )
        parser.add_argument(
            "--no-anonymize",
            action="store_true",
            help="Write personal data raw, although DISKETTE_ANONYMIZE has rules "
            "(refused when DISKETTE_ANONYMIZE_REQUIRED is set).",
        )
        parser.add_argument("--no-data", action="store_true", help="Leave data out.")
        parser.add_argument(
            "--no-storages", action="store_true", help="Leave storages out."
        )
        parser.add_argument(
            "--no-archive",
            action="store_true",
            help="Print the dumpdata command lines that dump the data by hand, "
            "creating their output folder, and write no archive.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Validate the configuration and report what would be dumped; "
            "write nothing.",
        )
        parser.add_argument(
            "--publish",
            action="store_true",
            help="Upload the archive to the snapshot registry (DISKETTE_REGISTRY_STORAGE), "
            "encrypted to DISKETTE_REGISTRY_RECIPIENTS if set, then remove it here "
            "unless --keep.",
        )
        parser.add_argument(
            "--keep",
            action="store_true",
            help="With --publish: keep the local archive once published.",
        )
        parser.add_argument(
            "--no-checksum",
            action="store_true",
            help="Skip the sha256 of the archive and of its members.",
        )
        parser.add_argument(
            "--base",
            metavar="FILE",
            help="What the loading side's storages hold (diskette_index; - for the "
            "standard input): files it has unchanged are listed, not archived, "
            "making a delta that loads only there.",
        )
        parser.add_argument(
            "--link-media",
            action="store_true",
            help="Hard-link the storage folders' files into a folder beside the "
            "archive (NAME.media) instead of archiving them: the safety snapshot of a "
            "reset, made in an instant, loaded back with that folder beside it.",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help='Database to dump from. Default: "default".',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["to_stdout"]:  # every word, errors and answer included
            self.stdout = OutputWrapper(sys.stderr)
        try:
            self.refuse_conflicts(options)
            with contextlib.ExitStack() as stack:
                stream = (
                    stack.enter_context(archive_on_stdout())
                    if options["to_stdout"]
                    else None
                )
                self.dump_or_plan(options, stream)
        except DisketteError as exc:
            raise CommandError(str(exc)) from exc

    def dump_or_plan(self, options: dict[str, Any], stream: IO[bytes] | None) -> None:
        """The command's work, once its options agree (``stream``: ``--to-stdout``)."""
        # First of all: a pull starts this dump while it checks its own side,
        # and sends the list of media there (``--base -``) once the user said
        # yes. Until then nothing is done here, not even an interrupted load
        # settled; a pull that stops sends nothing, which is refused.
        delta = self.delta(options)
        settings = get_settings()
        definitions = [] if options["no_data"] else self.definitions(options, settings)
        destination = (
            options["destination"] or settings.dump_path or Path.cwd()
        ).absolute()
        anonymizer = self.anonymizer(options)
        subset = self.subset(options, settings)
        if options["no_archive"]:
            if anonymizer is not None:
                raise ConfigurationError(
                    "--no-archive prints dumpdata commands, which write personal "
                    "data raw; DISKETTE_ANONYMIZE has rules: drop --no-archive"
                )
            if subset is not None:
                raise ConfigurationError(
                    "--no-archive prints dumpdata commands, which dump whole "
                    "tables: drop --subset or --no-archive"
                )
            return self.print_commands(definitions, destination, options["indent"])
        # Never archive media halfway through a load that a crash cut.
        declared = project_storages(settings)
        for line in recover_interrupted(declared.values(), options["database"]):
            self.stderr.write(line)
        storages, excludes = self.storages(options, settings)
        archive = destination / self.archive_name(
            options, settings, with_data=bool(definitions), with_storages=bool(storages)
        )
        check_something_to_dump(
            definitions,
            storages,
            with_data=not options["no_data"],
            with_storages=not options["no_storages"],
        )
        if options["check"]:
            using = options["database"]
            selection = None if subset is None else subset.selection(definitions, using)
            if selection is not None:  # count the rows it keeps
                definitions = selection.definitions
            # A plan against a list (--base, a pull's dry run) leaves out the
            # files the dump would: those a rule clears, those a subset's
            # rows do not name.
            left_out = (
                set(anonymizer.dropped_files(using))
                if anonymizer is not None and delta is not None
                else set()
            )
            only = (
                selection.files() if selection is not None and delta is not None else None
            )
            return self.report_plan(
                definitions,
                storages,
                excludes,
                archive,
                options,
                anonymizer,
                delta,
                (left_out, only),
            )
        self.run_dump(
            definitions,
            storages,
            excludes,
            archive,
            settings,
            options,
            anonymizer,
            delta,
            subset,
            stream,
        )

    def subset(self, options: dict[str, Any], settings: Any) -> Subset | None:
        """The subset ``--subset`` names, validated, or ``None``."""
        if options["subset"] is None:
            return None
        return read_subset(options["subset"], settings.subsets)

    def anonymizer(self, options: dict[str, Any]) -> Anonymizer | None:
        """The rules' anonymizer; ``--no-anonymize`` over rules is said loudly."""
        anonymizer = for_dump(requested=not options["no_anonymize"])
        if options["no_anonymize"] and configured():
            self.stderr.write(
                self.style.WARNING(
                    "Warning: --no-anonymize: this archive holds personal data raw; "
                    "keep it where production data may be"
                )
            )
        return anonymizer

    def refuse_conflicts(self, options: dict[str, Any]) -> None:
        if options["no_archive"] and options["json"]:
            raise ConfigurationError(
                "--no-archive prints dumpdata command lines, not a --json answer: "
                "drop one of them"
            )
        if options["publish"] and (options["no_archive"] or options["no_checksum"]):
            other = "--no-archive" if options["no_archive"] else "--no-checksum"
            raise ConfigurationError(f"--publish uploads a verified archive: drop {other}")
        delta = "--base" if options["base"] else "--link-media" * options["link_media"]
        if options["base"] and options["link_media"]:
            raise ConfigurationError("--base and --link-media exclude each other")
        if delta and (options["publish"] or options["no_archive"]):
            other = "--publish" if options["publish"] else "--no-archive"
            where = (
                "where its list of media was made"
                if options["base"]
                else "beside its folder of media"
            )
            raise ConfigurationError(
                f"{delta} makes an archive that loads only {where}: drop {other}"
            )
        if options["to_stdout"]:
            for flag in ("publish", "link_media", "no_archive", "check", "destination"):
                if options[flag]:
                    raise ConfigurationError(
                        f"--to-stdout and --{flag.replace('_', '-')} do not go together: "
                        "drop one of them"
                    )
        if options["keep"] and not options["publish"]:
            raise ConfigurationError(
                "--keep keeps the archive after --publish; without it, it is kept anyway"
            )
        if options["no_data"] and (options["no_storages"] or options["no_archive"]):
            other = "--no-storages" if options["no_storages"] else "--no-archive"
            raise ConfigurationError(
                f"nothing to dump: --no-data leaves nothing for {other}"
            )
        check_database(options["database"])

    def definitions(self, options: dict[str, Any], settings: Any) -> list[Definition]:
        path = options["appconf"]
        if options["everything"]:
            if path is not None:
                raise ConfigurationError("--everything and --appconf exclude each other")
            return load_definitions(everything(), source="--everything")
        if path is None:
            return load_definitions(settings.apps)
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise ConfigurationError(f"--appconf '{path}' cannot be read: {exc}") from exc
        return load_definitions(raw, source=f"--appconf '{path}'")

    def storages(
        self, options: dict[str, Any], settings: Any
    ) -> tuple[list[AnyStorage], list[str]]:
        """Storages to dump and the exclude patterns that apply to them."""
        if options["no_storages"]:
            return [], []
        basepath = options["storages_basepath"] or settings.base_dir
        paths = options["storages"] or settings.storages
        if options["everything"]:  # a snapshot: a folder not made yet holds nothing
            paths, missing = missing_storages(paths, basepath)
            for path in missing:
                self.stderr.write(
                    self.style.WARNING(
                        f"Warning: storage '{path}' does not exist: left out of the archive"
                    )
                )
        storages: list[AnyStorage] = list(resolve_storages(paths, basepath))
        if not options["storages"]:  # --storage names folders instead of the settings'
            storages += resolve_aliases(settings.storage_aliases, basepath, storages)
        if options["no_storages_excludes"]:
            return storages, []
        return storages, list(options["storages_excludes"] or settings.storages_excludes)

    def archive_name(
        self,
        options: dict[str, Any],
        settings: Any,
        *,
        with_data: bool,
        with_storages: bool,
    ) -> str:
        """The archive's file name; ``{features}`` says what it holds."""
        template = options["filename"] or settings.dump_filename
        if options["filename"]:
            try:
                check_archive_filename(template)
            except ConfigurationError as exc:
                raise ConfigurationError(f"--filename: {exc}") from None
        return archive_filename(
            template, with_data=with_data, with_storages=with_storages, now=datetime.now()
        )

    def print_commands(
        self, definitions: list[Definition], destination: Path, indent: int | None
    ) -> None:
        data_dir = destination / DATA_DIR
        data_dir.mkdir(parents=True, exist_ok=True)  # dumpdata does not create it
        for definition in definitions:
            self.stdout.write(f"# {definition.name}")
            if definition.models:
                self.stdout.write(dumpdata_command(definition, data_dir, indent))
            else:  # a bare dumpdata would dump every model
                self.stdout.write("# (no model left to dump)")

    def report_plan(
        self,
        definitions: list[Definition],
        storages: list[AnyStorage],
        excludes: list[str],
        archive: Path,
        options: dict[str, Any],
        anonymizer: Anonymizer | None,
        delta: Delta | None,
        leaving: tuple[Collection[FileKey], Collection[FileKey] | None] = ((), None),
    ) -> None:
        counts = plan_data(definitions, options["database"])
        plans = [plan_storage(storage, excludes) for storage in storages]
        changes = self.changes(storages, excludes, delta, leaving)
        uncovered = coverage(
            [model for definition in definitions for model in definition.models]
        )
        # --publish: the registry is listed, so a cron job is told now, not at
        # night, that its credentials or its bucket are wrong.
        registry = None
        if options["publish"]:
            hub = Registry.from_settings(get_settings())
            registry = {"storage": hub.alias, "snapshots": len(hub.listing().snapshots)}
        if options["json"]:
            return self.write_json(
                {
                    "archive": str(archive),
                    "checked": True,
                    "registry": registry,
                    "anonymized": anonymizer is not None,
                    "uncovered": uncovered,
                    "objects": counts,
                    "storages": {
                        str(plan.storage.relpath): {"files": plan.files, "size": plan.size}
                        for plan in plans
                    },
                    "skipped": [str(s.path) for plan in plans for s in plan.skipped],
                    "delta": None if changes is None else [asdict(c) for c in changes],
                }
            )
        self.stdout.write("=== Checking dump (nothing is written) ===")
        for definition in definitions:
            objects = counts[definition.name]
            self.stdout.write(
                f"Data for application '{definition.name}' "
                f"({DATA_DIR}/{definition.filename()}): {_count(sum(objects.values()))}"
            )
            for label, count in objects.items():
                self.stdout.write(f"  - {label}: {count}")
        for plan in plans:
            self.stdout.write(
                f"Storage '{plan.storage.relpath}': {plan.files} files "
                f"({human_size(plan.size)})"
            )
            for skipped in plan.skipped:
                self.stderr.write(f"  - would skip '{skipped.path}': {skipped.reason}")
        for change in changes or ():
            self.stdout.write(
                f"Against --base, storage '{change.storage}' would send "
                f"{change.added} new and {change.changed} changed files "
                f"({human_size(change.bytes_sent)}), keep {change.kept} "
                f"({human_size(change.bytes_kept)}) and remove {change.removed}"
            )
        self.report_anonymization(anonymizer, uncovered)
        self.stdout.write(f"Archive would be created at: {archive}")
        if registry is not None:
            self.stdout.write(
                f"It would be published to storage {registry['storage']!r}, which "
                f"answers and holds {registry['snapshots']} snapshots"
            )

    def report_anonymization(
        self, anonymizer: Anonymizer | None, uncovered: dict[str, list[str]]
    ) -> None:
        """The ``--check`` section on anonymization: what is replaced, what no
        rule covers (only once rules exist: a project without any is told nothing)."""
        if anonymizer is None and not configured():
            return
        if anonymizer is None:
            self.stdout.write("Anonymization: off (--no-anonymize); data is written raw")
        else:
            described = anonymizer.described()
            fields = described["fields"]
            self.stdout.write(
                f"Anonymization: {sum(map(len, fields.values()))} fields of "
                f"{len(fields)} models ({described['rules']})"
            )
            for label, rules in fields.items():
                listed = ", ".join(f"{name}: {rule}" for name, rule in rules.items())
                self.stdout.write(f"  - {label}: {listed}")
        for label, names in uncovered.items():
            self.stdout.write(
                f"  ! not covered by any rule: {label}: {', '.join(names)} "
                "(add a rule, or 'keep')"
            )

    def run_dump(
        self,
        definitions: list[Definition],
        storages: list[AnyStorage],
        excludes: list[str],
        archive: Path,
        settings: Any,
        options: dict[str, Any],
        anonymizer: Anonymizer | None,
        delta: Delta | None,
        subset: Subset | None = None,
        stream: IO[bytes] | None = None,
    ) -> None:
        reporter = self.reporter(options)
        reporter.info("=== Starting dump ===")
        try:
            result = dump(
                definitions,
                storages,
                archive,
                excludes=excludes,
                indent=options["indent"],
                checksums=not options["no_checksum"],
                permissions=settings.dump_permissions,
                using=options["database"],
                reporter=reporter,
                anonymizer=anonymizer,
                delta=delta,
                subset=subset,
                stream=stream,
            )
        except KeyboardInterrupt:
            # The writer has dropped its partial file on the way out: say so
            # in one line, and exit as a shell does for Ctrl-C (128 + SIGINT).
            left = (
                "what went to the standard output is no whole archive"
                if stream
                else "no archive was written"
            )
            raise CommandError(f"interrupted; {left}", returncode=130) from None
        info = result.archive
        snapshot, removed = None, False
        if options["publish"]:
            written = (result.manifest, info.sha256 or "")  # "": hashed again
            snapshot, removed = self.publish(
                info.path, written, settings, options, reporter
            )
        if options["json"]:
            return self.write_json(
                {
                    "archive": "-" if stream else str(info.path),
                    "filename": archive.name,
                    "snapshot": snapshot.as_index() if snapshot else None,
                    "removed": removed,
                    "checked": False,
                    "anonymized": result.anonymized,
                    "files_left_out": result.files_left_out,
                    "kept": result.kept,
                    "kept_bytes": result.kept_bytes,
                    "size": info.size,
                    "sha256": info.sha256,
                    "objects": result.counts,
                    "datas": result.datas,
                    "storages": [str(storage.relpath) for storage in storages],
                    "skipped": [str(skipped.path) for skipped in result.skipped],
                    "subset": result.manifest.get("subset"),
                }
            )
        chosen = result.manifest.get("subset")
        if chosen is not None:
            files = chosen["files"]
            named = "" if files is None else f" and the {files} files they name"
            reporter.info(
                f"Subset {chosen['name']!r}: {sum(chosen['objects'].values())} rows kept"
                f"{named}"
            )
        if result.anonymized:
            left_out = f"; {result.files_left_out} files left out" * bool(
                result.files_left_out
            )
            reporter.info(f"Personal data was anonymized{left_out}")
        if result.kept:
            how = "hard-linked beside it" if options["link_media"] else "the other side has"
            reporter.info(
                f"{result.kept} files ({human_size(result.kept_bytes)}) are not in the "
                f"archive: {how}"
            )
        where = "written to the standard output" if stream else f"created at: {info.path}"
        reporter.info(f"Dump archive was {where} ({human_size(info.size)})")
        if info.sha256:
            reporter.info(f"Archive checksum (sha256): {info.sha256}")
        if snapshot is not None:
            sealed = ", encrypted" * snapshot.encrypted
            reporter.info(
                f"Published snapshot {snapshot.id} to storage {settings.registry_storage!r}"
                f"{sealed}; load it with: manage.py diskette_load snapshot:{snapshot.id}"
            )
            if removed:
                reporter.info(f"Local archive removed: {info.path}")

    def changes(
        self,
        storages: list[AnyStorage],
        excludes: list[str],
        delta: Delta | None,
        leaving: tuple[Collection[FileKey], Collection[FileKey] | None],
    ) -> list[StorageDelta] | None:
        """With ``--base``: what a dump would send of each storage folder and
        keep; S3 storages are sent whole. ``None`` without ``--base``.

        :param leaving: the files it leaves out, and the only ones it takes
            (:func:`~diskette.delta.compare`).
        """
        if delta is None or delta.sidecar:
            return None
        left_out, only = leaving
        return [
            compare(storage, excludes, delta.base, left_out=left_out, only=only)
            for storage in storages
            if isinstance(storage, Storage)
        ]

    def delta(self, options: dict[str, Any]) -> Delta | None:
        """What ``--base`` or ``--link-media`` asks the dump to keep out."""
        if options["link_media"]:
            return Delta(sidecar=True)
        if not options["base"]:
            return None
        return Delta(read_base_file(options["base"]))

    def publish(
        self,
        archive: Path,
        written: tuple[dict[str, Any], str],
        settings: Any,
        options: dict[str, Any],
        reporter: Any,
    ) -> tuple[Snapshot, bool]:
        """Publish ``archive``; remove it here unless ``--keep``.

        A failed publish keeps the archive, so it can be published again
        (``diskette_snapshots --publish``) or copied by hand.
        """
        registry = Registry.from_settings(settings, reporter)
        try:
            snapshot = registry.publish(
                archive, settings.registry_recipients, written=written
            )
        except DisketteError as exc:
            raise CommandError(f"{exc} (the archive is kept at '{archive}')") from exc
        except KeyboardInterrupt:
            raise CommandError(
                f"interrupted: nothing was published; the archive is kept at '{archive}'",
                returncode=130,
            ) from None
        if options["keep"]:
            return snapshot, False
        try:
            archive.unlink()
        except OSError as exc:
            reporter.warning(
                f"the archive '{archive}' could not be removed: {exc.strerror}"
            )
            return snapshot, False
        return snapshot, True


def _count(objects: int) -> str:
    return f"{objects} object" if objects == 1 else f"{objects} objects"


@contextlib.contextmanager
def archive_on_stdout() -> Iterator[IO[bytes]]:
    """The standard output, taken for the archive (``--to-stdout``), given back after.

    Meanwhile whatever else is written there (a project's ``print``, the
    messages of a library) goes to the standard error, the descriptor as
    well as ``sys.stdout``: one stray byte in the archive's would break it
    for whoever reads the pipe.

    :raises ConfigurationError: no standard output to take (a terminal, the
        standard error's own file, or none at all, in process).
    """
    try:
        out, err = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        raise ConfigurationError(
            "--to-stdout needs a standard output to write the archive to: run "
            "manage.py diskette_dump --to-stdout with it redirected to a file or a pipe"
        ) from None
    if os.isatty(out):
        raise ConfigurationError(
            "--to-stdout writes a binary archive: redirect the standard output to a file "
            "or a pipe"
        )
    if os.path.sameopenfile(out, err):
        raise ConfigurationError(
            "--to-stdout writes the archive to the standard output and messages to the "
            "standard error, which is the same file here: redirect one of them elsewhere"
        )
    sys.stdout.flush()
    archive = os.fdopen(os.dup(out), "wb")
    saved, previous = os.dup(out), sys.stdout
    os.dup2(err, out)
    sys.stdout = sys.stderr
    try:
        yield archive
    finally:
        sys.stdout = previous
        os.dup2(saved, out)
        os.close(saved)
        with contextlib.suppress(OSError):  # a reader gone: said already
            archive.close()
