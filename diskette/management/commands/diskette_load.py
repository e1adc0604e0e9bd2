"""``manage.py diskette_load ARCHIVE``: restore data and storages from an archive."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from diskette.conf import check_database, get_settings
from diskette.delta import Base, read_base_file
from diskette.download import download, download_target, is_url
from diskette.exceptions import ConfigurationError, DisketteError, LoadError
from diskette.guards import refuse_production
from diskette.hooks import AfterLoad, after_load
from diskette.load import LoadOptions, load, project_storages
from diskette.management.base import DisketteCommand
from diskette.plan import plan_load
from diskette.registry import SCHEME, Registry
from diskette.reporting import CommandReporter, error_line
from diskette.reset import Spare, describe, reset


def is_snapshot(source: str) -> bool:
    """Whether ``source`` names a snapshot of the registry (and no local file)."""
    return source.startswith(SCHEME) and not Path(source).exists()


#: The archive argument that reads the standard input.
STDIN = "-"


def piped(source: str) -> IO[bytes] | None:
    """The standard input, when ``source`` says to read the archive there.

    :raises LoadError: it is a terminal: nobody types an archive.
    """
    if source != STDIN:
        return None
    if sys.stdin.isatty():
        raise LoadError(
            "the archive '-' is read from the standard input, a terminal here: pipe "
            "it in (... | manage.py diskette_load -), or give its path"
        )
    return sys.stdin.buffer


def is_remote(source: str) -> bool:
    """Whether the command downloads the archive, and so removes it after a failure."""
    return is_url(source) or is_snapshot(source)


class ResetFirst:
    """``--reset``: drop the database, create it again and migrate, once the
    load has verified and staged the archive (:attr:`LoadOptions.reset`).

    Remembers how far it went, for the answer: a task that sees the load
    fail needs to know whether the database may have been dropped.
    """

    def __init__(
        self, command: DisketteCommand, options: dict[str, Any], reporter: CommandReporter
    ) -> None:
        self.command = command
        self.options = options
        self.reporter = reporter
        #: The database, once confirmed and about to be dropped.
        self.database: str | None = None
        #: How it was reset, once the reset (migrations included) finished.
        self.how: str | None = None
        #: An SQLite database migrated while the archive comes (:meth:`prepared`).
        self.spare: Spare | None = None

    @contextlib.contextmanager
    def prepared(self) -> Iterator[None]:
        """Migrate a spare SQLite database while the load reads its archive,
        for the reset to swap in (:class:`~diskette.reset.Spare`); dropped
        on the way out if the reset did not use it."""
        if self.options["reset"]:
            self.spare = Spare.beside(self.options["database"])
        try:
            yield
        finally:
            if self.spare is not None:
                self.spare.drop()

    def __call__(self) -> None:
        target = describe(self.options["database"])
        self.command.confirm_reset(target, self.options)
        self.database = str(target)  # from here on, it may be gone
        self.reporter.info(f"Resetting {target}")
        self.how = reset(
            self.options["database"],
            verbosity=max(self.options["verbosity"] - 1, 0),
            spare=self.spare,
        )
        self.reporter.info(f"Reset {target}: {self.how}, then applied all migrations")

    def failed(self, error: str) -> CommandError:
        """The load's failure, saying what the reset (if it began) left; with
        ``--json``, ``dropped`` and ``reset`` say it instead."""
        self.command.failure_answer = {"error": error, **self.answer()}
        if self.how is not None:
            error += f"; {self.database} was reset and is empty, the media unchanged"
        elif self.database is not None:
            error += (
                f"; {self.database} may have been dropped (its reset did not finish), "
                "the media unchanged"
            )
        return CommandError(error)

    def answer(self) -> dict[str, Any]:
        """With ``--reset`` only: ``database`` (once it was to be dropped),
        ``dropped`` (whether the reset began: the database may be gone), and
        ``reset`` (how it was reset, once it finished)."""
        if not self.options["reset"]:
            return {}
        return {
            "database": self.database,
            "dropped": self.database is not None,
            "reset": self.how,
        }


class Command(DisketteCommand):
    help = (
        "Restore the data and storages of a diskette archive (a path, an "
        "http(s) URL, or snapshot:latest / snapshot:ID from the snapshot registry) "
        "into a freshly migrated database. The archive is verified "
        "whole first, data loads in one transaction, and the archive is removed "
        "once loaded unless --keep."
    )
    missing_args_message = (
        "give the archive to load: a path, an http(s):// URL, or snapshot:latest"
    )
    json_help = (
        "Print one JSON object instead of messages: the archive (a downloaded one "
        "included), what was verified or loaded, and whether the archive was removed."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "archive",
            help="Archive path, http(s):// URL, snapshot:latest / snapshot:ID "
            "(from the registry, DISKETTE_REGISTRY_STORAGE), or - for the standard "
            "input (ssh HOST manage.py diskette_dump --to-stdout | manage.py "
            "diskette_load - --reset --noinput).",
        )
        parser.add_argument(
            "--storages-basepath",
            type=Path,
            metavar="DIR",
            help="Directory storages are restored under. Default: "
            "DISKETTE_LOAD_STORAGES_PATH, else DISKETTE_BASE_DIR (by default BASE_DIR).",
        )
        parser.add_argument(
            "--exclude-data",
            action="append",
            default=[],
            metavar="NAME",
            help="Leave out this data, by definition name or file name (repeatable).",
        )
        parser.add_argument("--no-data", action="store_true", help="Restore storages only.")
        parser.add_argument("--no-storages", action="store_true", help="Load data only.")
        parser.add_argument(
            "--download-destination",
            type=Path,
            metavar="PATH",
            help="File or folder to download a URL to (a folder for a snapshot). "
            "Default: the current directory.",
        )
        parser.add_argument(
            "--ignorenonexistent",
            action="store_true",
            help="Skip fields and models that no longer exist, as loaddata does.",
        )
        parser.add_argument(
            "--keep", action="store_true", help="Keep the archive file once loaded."
        )
        parser.add_argument(
            "--checksum",
            metavar="SHA256",
            help="Refuse the archive unless its sha256 is this one.",
        )
        parser.add_argument(
            "--strict",
            action="store_true",
            help="Refuse when the archive's applied migrations differ from this database's.",
        )
        speed = parser.add_mutually_exclusive_group()
        speed.add_argument(
            "--loaddata",
            action="store_true",
            help="Load with Django's loaddata, one object at a time, instead of in "
            "batches: the same rows and signals, many times slower (see the docs).",
        )
        speed.add_argument(
            "--fast",
            action="store_true",
            help="Accepted for scripts written before batched loading became the "
            "default: it changes nothing.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Verify the archive (and the migration state) only; change nothing "
            "and keep the archive.",
        )
        parser.add_argument(
            "--no-hooks",
            action="store_true",
            help="Run no DISKETTE_AFTER_LOAD hook and send no post_load signal (the "
            "tasks put a safety snapshot back so: its data had its fix-ups).",
        )
        parser.add_argument(
            "--plan",
            action="store_true",
            help="Verify the archive and say what loading it into a reset database "
            "would change: rows per model now and after, files added, changed and "
            "removed per storage. Change nothing; a downloaded archive is removed "
            "unless --keep.",
        )
        parser.add_argument(
            "--base",
            metavar="FILE",
            help="With --plan: compare the archive's files with this list of media "
            "(diskette_index on the host the archive is for) instead of the folders here.",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Drop the database, create it again and migrate (as diskette_reset "
            "does) once the archive is verified, then load: one command where a "
            "reset and a load took two, and a broken archive drops nothing. Asks "
            "first unless --noinput.",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="With --reset: do not ask for confirmation (for scripts).",
        )
        parser.add_argument(
            "--everything",
            action="store_true",
            help="Accept objects of every model, not only those of DISKETTE_APPS: for "
            "a whole-database snapshot (diskette_dump --everything) you made yourself.",
        )
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="Load into a database whose tables already hold data of the archive's "
            "models: rows with the same primary key are overwritten, others kept.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Load even though DEBUG is False (that is, probably production).",
        )
        parser.add_argument(
            "--override-protection",
            action="store_true",
            help="Load even though this project sets DISKETTE_PROTECTED (no task "
            "passes this: it is for someone working on the protected host).",
        )
        parser.add_argument(
            "--allow-raw",
            action="store_true",
            help="Load an archive that is not anonymized although "
            "DISKETTE_LOAD_REQUIRE_ANONYMIZED is set (a safety snapshot of this "
            "project's own data, for instance).",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help='Database to load into. Default: "default".',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reporter = self.reporter(options)
        reset_first = ResetFirst(self, options, reporter)
        archive = None
        try:
            if options["no_data"] and options["no_storages"]:
                raise ConfigurationError("nothing to load: --no-data and --no-storages")
            if options["base"] and not options["plan"]:
                raise ConfigurationError(
                    "--base is the list a --plan compares with: add --plan"
                )
            if options["reset"] and (options["check"] or options["plan"]):
                raise ConfigurationError(
                    "--reset empties the database, which --check and --plan never "
                    "change: drop one of them"
                )
            if options["reset"] and options["overwrite"]:
                raise ConfigurationError(
                    "--reset leaves no row for --overwrite to overwrite: drop one of them"
                )
            if options["reset"]:  # before a download and a verification
                self.can_confirm(options)
            base = read_base_file(options["base"]) if options["base"] else None
            check_database(options["database"])
            settings = get_settings()
            target = options["storages_basepath"] or settings.load_storages_path
            if target is not None and not options["no_storages"] and not target.is_dir():
                raise LoadError(f"storages base path '{target}' is not a directory")
            storages = project_storages(settings, target)
            hooks: tuple[AfterLoad, ...] = ()
            if not options["no_hooks"]:  # a typo fails before a download
                hooks = after_load(settings.after_load)
            if options["reset"]:  # refused before a spare database is made for it
                refuse_production(
                    "load into",
                    force=options["force"],
                    override_protection=options["override_protection"],
                )
            reporter.info("=== Starting restoration ===")
            with reset_first.prepared():  # migrated while the archive comes
                archive = self.fetch(options["archive"], options, settings, reporter)
                stream = piped(options["archive"])
                result = load(
                    archive,
                    storages=storages,
                    definitions=settings.apps,
                    options=LoadOptions(
                        with_data=not options["no_data"],
                        with_storages=not options["no_storages"],
                        exclude_data=options["exclude_data"],
                        ignorenonexistent=options["ignorenonexistent"],
                        checksum=options["checksum"],
                        strict=options["strict"],
                        check=options["check"] or options["plan"],
                        loaddata=options["loaddata"],
                        everything=options["everything"],
                        overwrite=options["overwrite"],
                        force=options["force"],
                        override_protection=options["override_protection"],
                        require_anonymized=settings.load_require_anonymized
                        and not options["allow_raw"],
                        using=options["database"],
                        after_load=hooks,
                        hooks=not options["no_hooks"],
                        reset=reset_first if options["reset"] else None,
                    ),
                    reporter=reporter,
                    stream=stream,
                )
        except DisketteError as exc:
            self.drop_download(archive, options)
            raise reset_first.failed(str(exc)) from exc
        except KeyboardInterrupt:
            self.drop_download(archive, options)
            raise reset_first.failed("interrupted: nothing was loaded") from None
        except Exception as exc:
            # A refusal to reset, a migration that fails: the download goes,
            # and with --reset the answer still says what became of the database.
            self.drop_download(archive, options)
            if not options["reset"]:
                raise
            if isinstance(exc, CommandError):
                raise reset_first.failed(str(exc)) from exc
            raise reset_first.failed(
                f"{type(exc).__name__}: {error_line(exc)} (--traceback shows where)"
            ) from exc
        if options["plan"]:
            return self.report_plan(result, archive, storages, options, reporter, base)
        removed = (
            not options["check"]
            and not options["keep"]
            and stream is None
            and self.remove(archive, reporter)
        )
        if options["keep"] and not options["check"] and stream is None:
            reporter.info(f"Archive kept at: {archive}")
        if options["json"]:
            self.write_json(
                {
                    "archive": str(archive),
                    "checked": options["check"],
                    "anonymized": result.archive.manifest.get("anonymized") is True,
                    "datas": result.archive.datas if not options["no_data"] else [],
                    "storages": result.archive.storages
                    if not options["no_storages"]
                    else [],
                    "loaded": result.loaded,
                    "objects": {
                        str(application.get("name")): application.get("objects", {})
                        for application in result.archive.manifest.get("applications", [])
                        if isinstance(application, dict)
                        and application.get("data") in result.loaded
                    },
                    "restored": result.restored,
                    "removed": removed,
                    **reset_first.answer(),
                }
            )

    def report_plan(
        self,
        result: Any,
        archive: Path,
        storages: dict[str, Path],
        options: dict[str, Any],
        reporter: CommandReporter,
        base: Base | None,
    ) -> None:
        """Say what a load would change (``--plan``); remove a download."""
        plan = plan_load(
            result.archive,
            storages,
            options["database"],
            with_data=not options["no_data"],
            with_storages=not options["no_storages"],
            base=base,
        )
        removed = (
            is_remote(options["archive"])
            and not options["keep"]
            and self.remove(archive, reporter)
        )
        if options["json"]:
            return self.write_json(
                {"archive": str(archive), "plan": plan.as_json(), "removed": removed}
            )
        reporter.info("Loading it into a reset database would change:")
        for line in plan.lines():
            self.stdout.write(line)
        reporter.info("Nothing was changed.")
        return None

    def drop_download(self, archive: Path | None, options: dict[str, Any]) -> None:
        """Remove an archive this command downloaded and could not use.

        Kept, it would only make the next attempt refuse "already exists";
        a local archive the user gave is never removed after a failure.
        """
        if archive is not None and is_remote(options["archive"]):
            archive.unlink(missing_ok=True)

    def remove(self, archive: Path, reporter: CommandReporter) -> bool:
        """Remove the loaded archive, as diskette always did; warn if it cannot be."""
        try:
            archive.unlink()
        except OSError as exc:  # everything is loaded; only the clean-up failed
            reporter.warning(
                f"the archive '{archive}' could not be removed: {exc.strerror}"
            )
            return False
        reporter.info(f"Archive removed: {archive}")
        return True

    def fetch(
        self, source: str, options: dict[str, Any], settings: Any, reporter: Any
    ) -> Path:
        """The local archive path, downloading ``source`` first if it is a URL
        or a snapshot of the registry (``-``, the standard input: :func:`piped`)."""
        if source == STDIN:
            return Path(STDIN)
        if is_snapshot(source):
            registry = Registry.from_settings(settings, reporter)
            snapshot = registry.find(source[len(SCHEME) :])
            return registry.fetch(
                snapshot,
                (options["download_destination"] or Path.cwd()).absolute(),
                settings.registry_identity,
            )
        if not is_url(source):
            path = Path(source).absolute()
            if path.is_dir():
                raise LoadError(
                    f"archive '{source}' is a folder: give the archive file in it"
                )
            if not path.is_file():
                raise LoadError(f"archive '{source}' does not exist")
            return path
        return download(
            source,
            download_target(source, options["download_destination"]),
            allowed_protocols=settings.download_allowed_protocols,
            allow_redirect=settings.download_allow_redirect,
            timeout=settings.download_timeout,
            reporter=reporter,
            api_key=settings.api_key,
            identity=settings.registry_identity,
        )
