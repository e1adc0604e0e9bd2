"""``manage.py diskette_load ARCHIVE``: restore data and storages from an archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from diskette.conf import check_database, get_settings
from diskette.download import download, download_target, is_url
from diskette.exceptions import ConfigurationError, DisketteError, LoadError
from diskette.load import load
from diskette.reporting import CommandReporter


class Command(BaseCommand):
    help = (
        "Restore the data and storages of a diskette archive (a path or an "
        "http(s) URL) into a freshly migrated database. The archive is verified "
        "whole first, data loads in one transaction, and the archive is removed "
        "once loaded unless --keep."
    )
    missing_args_message = "give the archive to load: a path or an http(s):// URL"
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", help="Archive path or http(s):// URL.")
        parser.add_argument(
            "--storages-basepath",
            type=Path,
            metavar="DIR",
            help="Directory storages are restored under. Default: "
            "DISKETTE_LOAD_STORAGES_PATH, else the current directory.",
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
            help="File or folder to download a URL to. Default: the current directory.",
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
        parser.add_argument(
            "--fast",
            action="store_true",
            help="Insert JSON Lines data in batches, with cached natural keys: several "
            "times faster than loaddata, but sends no save signals (see the docs).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Verify the archive (and the migration state) only; change nothing "
            "and keep the archive.",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help='Database to load into. Default: "default".',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reporter = CommandReporter(self, options["verbosity"])
        try:
            if options["no_data"] and options["no_storages"]:
                raise ConfigurationError("nothing to load: --no-data and --no-storages")
            check_database(options["database"])
            settings = get_settings()
            reporter.info("=== Starting restoration ===")
            archive = self.fetch(options["archive"], options, settings, reporter)
            load(
                archive,
                basepath=options["storages_basepath"]
                or settings.load_storages_path
                or Path.cwd(),
                with_data=not options["no_data"],
                with_storages=not options["no_storages"],
                exclude_data=options["exclude_data"],
                ignorenonexistent=options["ignorenonexistent"],
                checksum=options["checksum"],
                strict=options["strict"],
                check=options["check"],
                fast=options["fast"],
                using=options["database"],
                reporter=reporter,
            )
        except DisketteError as exc:
            raise CommandError(str(exc)) from exc
        if options["check"]:
            return
        if options["keep"]:
            reporter.info(f"Archive kept at: {archive}")
            return
        try:
            archive.unlink()
        except OSError as exc:  # everything is loaded; only the clean-up failed
            reporter.warning(
                f"the archive '{archive}' could not be removed: {exc.strerror}"
            )
        else:
            reporter.info(f"Archive removed: {archive}")

    def fetch(
        self, source: str, options: dict[str, Any], settings: Any, reporter: Any
    ) -> Path:
        """The local archive path, downloading ``source`` first if it is a URL."""
        if not is_url(source):
            path = Path(source).absolute()
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
        )
