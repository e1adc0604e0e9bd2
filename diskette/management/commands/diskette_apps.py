"""``manage.py diskette_apps``: starter definitions for the installed apps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from diskette.discovery import LEFT_OUT, application_definitions, left_out, render
from diskette.exceptions import DisketteError


class Command(BaseCommand):
    help = (
        "Print a definition for every installed application with models, in "
        "INSTALLED_APPS order, to start DISKETTE_APPS from. Models usually left "
        "out (content types, permissions, sessions, admin log entries) are "
        "commented out, with why, in the python format; JSON lists them and a "
        "note on the standard error names them."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--format",
            choices=["json", "python"],
            default="json",
            help="json (default), or python to paste into settings.",
        )
        parser.add_argument(
            "--app",
            action="append",
            dest="include",
            default=[],
            metavar="NAME",
            help="Only this application, by name or label (repeatable).",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="NAME",
            help="Leave this application out, by name or label (repeatable).",
        )
        parser.add_argument(
            "--destination",
            type=Path,
            metavar="FILE",
            help="Write to this file instead of the standard output.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            definitions = application_definitions(options["include"], options["exclude"])
        except DisketteError as exc:
            raise CommandError(str(exc)) from exc
        output = render(definitions, options["format"])
        self.note_left_out(definitions, options)
        destination = options["destination"]
        if destination is None:
            self.stdout.write(output)
            return
        try:
            destination.write_text(output + "\n")
        except OSError as exc:
            raise CommandError(f"--destination '{destination}': {exc.strerror}") from exc
        if options["verbosity"] >= 1:
            self.stderr.write(f"Definitions written to: {destination}")

    def note_left_out(self, definitions: list[Any], options: dict[str, Any]) -> None:
        """Name, on the standard error, the models JSON lists but should not.

        JSON has no comments, and its output stays as the user guide shows it.
        """
        models = left_out(definitions)
        if options["format"] != "json" or not models or options["verbosity"] < 1:
            return
        listed = ", ".join(f"{label} ({LEFT_OUT[label]})" for label in models)
        self.stderr.write(
            f"Note: usually left out of DISKETTE_APPS: {listed}; "
            "--format python comments them out."
        )
