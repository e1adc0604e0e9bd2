"""``manage.py diskette_reset``: drop the database, create it empty, migrate."""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from diskette.conf import check_database
from diskette.exceptions import DisketteError
from diskette.reset import describe, reset


class Command(BaseCommand):
    help = (
        "Drop the project's database, create it empty again and apply every "
        "migration, ready for diskette_load. Refused when DEBUG is False unless "
        "--force; asks for confirmation unless --noinput."
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
            "--database",
            default=DEFAULT_DB_ALIAS,
            help='Database to reset. Default: "default".',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_database(options["database"])
            target = describe(options["database"])
            if not settings.DEBUG and not options["force"]:
                raise CommandError(
                    f"DEBUG is False, so {target} may be production: refusing to "
                    "reset it (add --force if you mean it)"
                )
            if options["check"]:
                self.stdout.write(f"Would drop and recreate {target}, then migrate")
                return
            if options["interactive"]:
                self.confirm(target)
            how = reset(options["database"], verbosity=max(options["verbosity"] - 1, 0))
        except DisketteError as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"] >= 1:
            self.stdout.write(f"Reset {target}: {how}, then applied all migrations")

    def confirm(self, target: object) -> None:
        if not sys.stdin.isatty():
            raise CommandError(
                "no terminal to ask for confirmation on: pass --noinput to reset anyway"
            )
        answer = input(f"This drops {target} and everything in it. Type 'yes' to go on: ")
        if answer.strip().lower() != "yes":
            raise CommandError("reset cancelled")
