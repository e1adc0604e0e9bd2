"""``manage.py diskette_reset``: drop the database, create it empty, migrate."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from diskette.anonymize import configured
from diskette.conf import DisketteSettings, check_database, get_settings
from diskette.delta import have
from diskette.exceptions import DisketteError
from diskette.guards import database_holds_data, refuse_production
from diskette.load import project_storages, recover_interrupted
from diskette.management.base import DisketteCommand
from diskette.plan import rows_now
from diskette.reporting import error_line
from diskette.reset import Target, describe, reset


class Command(DisketteCommand):
    help = (
        "Drop the project's database, create it empty again and apply every "
        "migration, ready for diskette_load. Refused when DEBUG is False unless "
        "--force, and in a project that sets DISKETTE_PROTECTED; asks for "
        "confirmation unless --noinput."
    )
    json_help = (
        "Print one JSON object: the database, whether it holds data, and (unless "
        "--check) how it was reset."
    )
    # A project whose checks fail (say, a missing table) must still be resettable.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation (for scripts).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Reset even though DEBUG is False (that is, probably production).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Say what would be reset and whether it is allowed; change nothing.",
        )
        parser.add_argument(
            "--rows",
            action="store_true",
            help="With --check: count each model's rows, which the reset would drop "
            "(what a dry run of a pull shows as rows now).",
        )
        parser.add_argument(
            "--media-list",
            action="store_true",
            help="With --check --json: the answer's 'media' also lists what the "
            "storage folders hold (as diskette_index --output - writes it), read "
            "once any interrupted load is settled: what a pull checks and sends "
            "the host, from one command.",
        )
        parser.add_argument(
            "--override-protection",
            action="store_true",
            help="Reset even though this project sets DISKETTE_PROTECTED (no task "
            "passes this: it is for someone working on the protected host).",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help='Database to reset. Default: "default".',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        try:
            check_database(using)
            target = describe(using)
            refuse_production(
                "reset",
                force=options["force"],
                override_protection=options["override_protection"],
            )
            # A load interrupted here is settled first: its journal needs the
            # database that is about to go.
            settings = get_settings()
            # Where loads restore (DISKETTE_LOAD_STORAGES_PATH) too: that is
            # where a load may have been interrupted, and what a list reads.
            folders = {
                *project_storages(settings).values(),
                *project_storages(settings, settings.load_storages_path).values(),
            }
            recovered = recover_interrupted(sorted(folders), using)
            for line in recovered:
                self.stderr.write(line)
            holds_data = database_holds_data(using)
            if options["check"]:
                rows = rows_now(using) if options["rows"] else None
                media = (
                    self.media_list(options, settings) if options["media_list"] else None
                )
                self.report(
                    options, target, holds_data, None, settings, rows, recovered, media
                )
                return
            for flag in ("rows", "media_list"):
                if options[flag]:
                    raise CommandError(
                        f"--{flag.replace('_', '-')} says what --check finds: add --check"
                    )
            self.confirm_reset(target, options)
            how = reset(using, verbosity=max(options["verbosity"] - 1, 0))
        except DisketteError as exc:
            raise CommandError(str(exc)) from exc
        self.report(options, target, holds_data, how, settings)

    def report(
        self,
        options: dict[str, Any],
        target: Target,
        holds_data: bool,
        how: str | None,
        settings: DisketteSettings,
        rows: dict[str, int] | None = None,
        recovered: list[str] | None = None,
        media: dict[str, Any] | None = None,
    ) -> None:
        if options["json"]:
            self.write_json(
                {
                    **(media or {}),
                    "database": str(target),
                    "vendor": target.vendor,
                    "name": target.name,
                    "holds_data": holds_data,
                    "reset": how,
                    # What a task's safety snapshot needs to know: whether a
                    # dump here anonymizes, whether a load here refuses raw data.
                    "anonymizes": configured(),
                    "requires_anonymized": settings.load_require_anonymized,
                    "rows": rows,
                    # What it finished or undid first, as said on stderr.
                    "recovered": recovered or [],
                }
            )
        elif how is None:
            self.stdout.write(f"Would drop and recreate {target}, then migrate")
            for label, count in (rows or {}).items():
                self.stdout.write(f"  - {label}: {count} rows")
        elif options["verbosity"] >= 1:
            self.stdout.write(f"Reset {target}: {how}, then applied all migrations")

    def media_list(
        self, options: dict[str, Any], settings: DisketteSettings
    ) -> dict[str, Any]:
        """The answer's ``media``: what the folders a load restores into hold
        (``None``, with ``media_error``, when one cannot be read: a pull then
        has the media sent whole)."""
        if not options["json"]:
            raise CommandError("--media-list is for --json: add it")
        folders = project_storages(settings, settings.load_storages_path)
        try:
            return {"media": have(folders)}
        except (DisketteError, OSError) as exc:
            return {"media": None, "media_error": error_line(exc)}
