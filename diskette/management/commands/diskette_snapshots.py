"""``manage.py diskette_snapshots``: list, publish and prune the snapshot registry."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from diskette.conf import get_settings
from diskette.encryption import new_identity
from diskette.exceptions import ConfigurationError, DisketteError
from diskette.management.base import DisketteCommand
from diskette.registry import MAX_KEEP_DAYS, Registry, Snapshot
from diskette.reporting import human_size


class Command(DisketteCommand):
    help = (
        "List the snapshots of the registry (DISKETTE_REGISTRY_STORAGE), newest "
        "first; publish an archive to it; remove old ones (--prune); or make this "
        "machine's age key for encrypted snapshots (--new-key)."
    )
    json_help = (
        "Print one JSON object instead of messages: the snapshots (as their index "
        "objects hold them), and with --prune what was removed."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--publish",
            type=Path,
            metavar="ARCHIVE",
            help="Publish this archive (encrypted to DISKETTE_REGISTRY_RECIPIENTS if set).",
        )
        action.add_argument(
            "--prune",
            action="store_true",
            help="Remove the snapshots that --keep-last and --keep-days do not keep, "
            "and archives left by interrupted publishes.",
        )
        action.add_argument(
            "--new-key",
            action="store_true",
            help="Write a new age key to DISKETTE_REGISTRY_IDENTITY and print its public "
            "key, to add to DISKETTE_REGISTRY_RECIPIENTS.",
        )
        parser.add_argument(
            "--keep-last",
            type=count,
            metavar="N",
            help="With --prune: keep the N newest snapshots.",
        )
        parser.add_argument(
            "--keep-days",
            type=days,
            metavar="D",
            help="With --prune: keep the snapshots of the last D days.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="With --prune: say what would be removed, remove nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reporter = self.reporter(options)
        try:
            self.refuse_conflicts(options)
            settings = get_settings()
            if options["new_key"]:
                return self.new_key(settings.registry_identity, options)
            registry = Registry.from_settings(settings, reporter)
            if options["publish"]:
                snapshot = registry.publish(
                    options["publish"].absolute(), settings.registry_recipients
                )
                if options["json"]:
                    return self.write_json({"snapshot": snapshot.as_index()})
                return self.stdout.write(f"Published snapshot {snapshot.id}")
            if options["prune"]:
                return self.prune(registry, options)
            listing = registry.listing()
        except DisketteError as exc:
            raise CommandError(str(exc)) from exc
        for problem in listing.damaged:
            self.stderr.write(self.style.WARNING(f"Warning: {problem}"))
        if options["json"]:
            return self.write_json(
                {
                    "storage": registry.alias,
                    "snapshots": [s.as_index() for s in listing.snapshots],
                    "damaged": listing.damaged,
                }
            )
        if not listing.snapshots:
            self.stdout.write(
                f"Storage {registry.alias!r} holds no snapshot yet: publish one with "
                "`manage.py diskette_dump --publish`"
            )
            return
        self.stdout.write(
            _row("ID", "CREATED", "SIZE", "APPLICATIONS", "ANONYMIZED", "ENCRYPTED")
        )
        for snapshot in listing.snapshots:
            self.stdout.write(_line(snapshot))

    def refuse_conflicts(self, options: dict[str, Any]) -> None:
        pruning = options["keep_last"] is not None or options["keep_days"] is not None
        if (pruning or options["dry_run"]) and not options["prune"]:
            raise ConfigurationError(
                "--keep-last, --keep-days and --dry-run go with --prune"
            )

    def prune(self, registry: Registry, options: dict[str, Any]) -> None:
        removed, orphans = registry.prune(
            options["keep_last"], options["keep_days"], dry_run=options["dry_run"]
        )
        if options["json"]:
            return self.write_json(
                {
                    "storage": registry.alias,
                    "dry_run": options["dry_run"],
                    "removed": [s.id for s in removed],
                    "orphans": orphans,
                }
            )
        verb = "Would remove" if options["dry_run"] else "Removed"
        for snapshot in removed:
            self.stdout.write(f"{verb} snapshot {snapshot.id} ({snapshot.created})")
        for name in orphans:
            self.stdout.write(f"{verb} '{name}', left by an interrupted publish")
        if not removed and not orphans:
            self.stdout.write("Nothing to remove")

    def new_key(self, path: Path, options: dict[str, Any]) -> None:
        public = new_identity(path)
        if options["json"]:
            return self.write_json({"identity": str(path), "recipient": public})
        self.stdout.write(f"Wrote a new age key to '{path}' (keep it private).")
        self.stdout.write(
            f"Its public key, to add to DISKETTE_REGISTRY_RECIPIENTS: {public}"
        )


def _row(*cells: str) -> str:
    widths = (22, 26, 10, 30, 11, 9)
    return "  ".join(
        cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
    ).rstrip()


def _line(snapshot: Snapshot) -> str:
    applications = printable(", ".join(snapshot.applications)) or "-"
    if len(applications) > 30:
        applications = applications[:27] + "..."
    return _row(
        snapshot.id,
        printable(snapshot.created),
        human_size(snapshot.archive_size),
        applications,
        "yes" if snapshot.anonymized else "no",
        "yes" if snapshot.encrypted else "no",
    )


def count(value: str) -> int:
    """``--keep-last``: a whole number of snapshots, one or more."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: keep 1 or more snapshots")
    return number


def days(value: str) -> float:
    """``--keep-days``: a number of days, above 0 and at most a century."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number <= MAX_KEEP_DAYS:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give a number of days above 0, at most {MAX_KEEP_DAYS:,}"
        )
    return number


def printable(text: str) -> str:
    """``text`` from an index object, safe for a terminal: no escapes."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)
