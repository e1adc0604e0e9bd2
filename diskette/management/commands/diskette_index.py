"""``manage.py diskette_index``: what the storages hold here, for a delta made elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from diskette.conf import get_settings
from diskette.delta import have
from diskette.exceptions import DisketteError
from diskette.files import PartialFile
from diskette.load import project_storages, recover_interrupted
from diskette.management.base import DisketteCommand
from diskette.reporting import human_size


class Command(DisketteCommand):
    help = (
        "Write what the storage folders hold here (per file: path, size, sha256) "
        "for diskette_dump --base on another host, which then archives only the "
        "files this side lacks. Files unchanged since the last load or index are "
        "not read again."
    )
    json_help = (
        "Print one JSON object instead of messages: where the list was written, and "
        "its files and bytes per storage."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            type=Path,
            metavar="FILE",
            required=True,
            help="File to write the list to (replaced whole); - for the standard "
            "output, which then holds nothing else.",
        )
        parser.add_argument(
            "--read-only",
            action="store_true",
            help="Write nothing but the list: the sha256 read are not kept for next "
            "time, and an interrupted load is not settled first (for a dry run).",
        )
        parser.add_argument(
            "--storages-basepath",
            type=Path,
            metavar="DIR",
            help="Where loads restore the storages, if not where the settings say "
            "(as diskette_load's option).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output: Path = options["output"]
        to_stdout = str(output) == "-"
        if to_stdout and options["json"]:
            raise CommandError("--output - prints the list itself: drop --json")
        reporter = self.reporter(options)
        try:
            settings = get_settings()
            target = options["storages_basepath"] or settings.load_storages_path
            folders = project_storages(settings, target)
            if not options["read_only"]:
                for line in recover_interrupted(folders.values(), "default"):
                    reporter.warning(line)
            listed = have(
                folders,
                reporter.progress(0, "Reading media not indexed yet"),
                save=not options["read_only"],
            )
        except DisketteError as exc:
            raise CommandError(str(exc)) from exc
        if to_stdout:
            self.stdout.write(json.dumps(listed, separators=(",", ":")))
            return
        try:
            with PartialFile(output.absolute(), digest=False) as partial:
                partial.write(json.dumps(listed, separators=(",", ":")).encode())
                partial.commit()
        except OSError as exc:
            raise CommandError(f"cannot write '{output}': {exc.strerror or exc}") from exc
        summary = {
            name: {"files": len(files), "bytes": sum(f[0] for f in files.values())}
            for name, files in listed["storages"].items()
        }
        if options["json"]:
            return self.write_json({"output": str(output), "storages": summary})
        for name, counts in summary.items():
            reporter.info(
                f"{name}: {counts['files']} files ({human_size(counts['bytes'])})"
            )
        reporter.info(f"List of media written to {output}")
