"""What diskette's management commands share: the ``--json`` contract.

With ``--json`` a command prints exactly one JSON object on its standard
output, on one line, and nothing else there: the result when it succeeds,
``{"error": "..."}`` when it fails, with a non-zero exit (the standard error
then holds only warnings, not the error a second time). Scripts and
diskette's own tasks read that object, never the human messages, which stay
free to change. The keys of each command are listed in ``docs/commands.md``.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    OutputWrapper,
)

from diskette.reporting import CommandReporter


class DisketteCommand(BaseCommand):
    """A management command with ``--json`` and diskette's reporter."""

    #: Help for ``--json``: what the object holds, for this command.
    json_help = "Print one JSON object with the result instead of messages."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--json", action="store_true", help=self.json_help)
        parser.add_argument(
            "--progress",
            action="store_true",
            help="Draw progress on the standard error even when it is not a terminal "
            "(for a task that relays it to one).",
        )
        usage_error = parser.error

        def error(message: str) -> None:
            # A wrong option is an error too: a script reading --json gets
            # its object (argparse then prints the usage and exits 2).
            if parser.called_from_command_line and "--json" in sys.argv:
                sys.stdout.write(json.dumps({"error": message}) + "\n")
                sys.stdout.flush()
            usage_error(message)

        parser.error = error
        return parser

    _reporter: CommandReporter | None = None
    #: What a failure's ``--json`` answer holds besides ``error`` (or in its
    #: place): a command sets it before it raises. ``diskette_load --reset``
    #: tells a person whether the database was dropped, a script ``"dropped"``.
    failure_answer: dict[str, Any] | None = None

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            if options.get("json"):
                self.write_json({"error": str(exc), **(self.failure_answer or {})})
                if not options.get("traceback"):
                    # The answer holds the error: Django's "CommandError: ..."
                    # line would say it again to whoever shows both streams.
                    self.stderr = OutputWrapper(io.StringIO())
            raise
        finally:
            if self._reporter is not None:  # a line that stopped short of its total
                self._reporter.end_progress()

    def reporter(self, options: dict[str, Any]) -> CommandReporter:
        """Messages unless ``--json``; progress on a terminal, or with ``--progress``.

        With both ``--json`` and ``--progress`` (a task relaying to a
        person), the steps go to the standard error with the progress
        lines: the standard output keeps its one object.
        """
        relayed = options["json"] and options["progress"]
        self._reporter = CommandReporter(
            self,
            verbosity=options["verbosity"] if relayed or not options["json"] else 0,
            progress=options["progress"] or None,
            steps=self.stderr if relayed else None,
        )
        return self._reporter

    def can_confirm(self, options: dict[str, Any]) -> None:
        """Refuse now what :meth:`confirm_reset` would refuse later, after
        work (a download, a verification) that would then be lost.

        :raises CommandError: with ``--json`` and no ``--noinput`` (a script
            cannot answer), or with no terminal to ask on.
        """
        if not options["interactive"]:
            return
        if options["json"]:  # the question would break the one-object output
            raise CommandError(
                "--json is for scripts, which cannot answer the question: "
                "pass --noinput too"
            )
        if not sys.stdin.isatty():
            raise CommandError(
                "no terminal to ask for confirmation on: pass --noinput to reset anyway"
            )

    def confirm_reset(self, target: object, options: dict[str, Any]) -> None:
        """Ask before ``target`` (a database) is dropped, unless ``--noinput``.

        :raises CommandError: as :meth:`can_confirm`, or when the answer is
            not "yes".
        """
        self.can_confirm(options)
        if not options["interactive"]:
            return
        if self._reporter is not None:  # not on the end of a progress line
            self._reporter.end_progress()
        answer = input(f"This drops {target} and everything in it. Type 'yes' to go on: ")
        if answer.strip().lower() != "yes":
            raise CommandError("reset cancelled")

    def write_json(self, answer: dict[str, Any]) -> None:
        if self._reporter is not None:  # its last line before the answer
            self._reporter.end_progress()
        self.stdout.write(json.dumps(answer, sort_keys=True))
