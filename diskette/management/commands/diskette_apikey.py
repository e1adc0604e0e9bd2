"""``manage.py diskette_apikey``: make, list and revoke keys of the HTTP endpoints."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from diskette import apikeys
from diskette.exceptions import DisketteError
from diskette.management.base import DisketteCommand
from diskette.models import ApiKey


class Command(DisketteCommand):
    help = (
        "Make an API key for the HTTP endpoints (create: shown once, stored hashed), "
        "list the keys, or revoke one (by name or key id)."
    )
    json_help = (
        "Print one JSON object instead of messages: the key made (with the key "
        "itself), the keys, or the keys revoked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "action",
            choices=("create", "list", "revoke"),
            help="create: make a key and print it, this once; list: the keys (never "
            "the keys themselves); revoke: the active keys of a name or key id.",
        )
        parser.add_argument(
            "reference", nargs="?", metavar="NAME_OR_KEY_ID", help="For revoke."
        )
        parser.add_argument("--name", help="For create: who or what will use the key.")
        parser.add_argument(
            "--scope",
            action="append",
            choices=apikeys.SCOPES,
            help="For create: download (list and fetch snapshots; the default) or "
            "capture (start a new snapshot); repeat for both.",
        )
        parser.add_argument(
            "--expires",
            default="90d",
            help="For create: a lifetime such as 12h, 30d, 2w, or 'never'. Default: 90d.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "create":
                return self.create(options)
            if options["action"] == "revoke":
                if not options["reference"]:
                    raise CommandError("revoke what? give the key's name or key id")
                revoked = apikeys.revoke(options["reference"])
                if options["json"]:
                    return self.write_json({"revoked": [_describe(k) for k in revoked]})
                for key in revoked:
                    self.stdout.write(f"Revoked {key}")
                return None
            keys = list(ApiKey.objects.all())
            if options["json"]:
                return self.write_json({"keys": [_describe(k) for k in keys]})
            if not keys:
                self.stdout.write(
                    "No API key yet: manage.py diskette_apikey create --name NAME"
                )
            for key in keys:
                used = f"{key.last_used:%Y-%m-%d %H:%M}" if key.last_used else "never"
                until = f"{key.expires:%Y-%m-%d %H:%M}" if key.expires else "never"
                self.stdout.write(
                    f"{key.key_id}  {key.state():7}  {key.scopes:17}  expires {until:16}  "
                    f"used {used:16}  {key.name}"
                )
            return None
        except DisketteError as exc:
            raise CommandError(str(exc)) from exc

    def create(self, options: dict[str, Any]) -> None:
        if not options["name"]:
            raise CommandError("name the key: --name alice (who or what will use it)")
        made = apikeys.create(
            options["name"],
            options["scope"] or ["download"],
            apikeys.parse_expiry(options["expires"], timezone.now()),
        )
        if options["json"]:
            return self.write_json({**_describe(made.row), "key": made.key})
        until = f"{made.row.expires:%Y-%m-%d %H:%M} UTC" if made.row.expires else "never"
        self.stdout.write(
            f"API key {made.row.name!r} (scopes: {made.row.scopes}; expires: {until}):\n\n"
            f"    {made.key}\n\n"
            "Copy it now: only its hash is kept, it cannot be shown again. Send it as "
            "'Authorization: Bearer <key>'; diskette_load reads it from DISKETTE_API_KEY."
        )
        return None


def _describe(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "key_id": key.key_id,
        "scopes": key.scope_list,
        "state": key.state(),
        "created": key.created.isoformat(),
        "expires": key.expires.isoformat() if key.expires else None,
        "revoked": key.revoked.isoformat() if key.revoked else None,
        "last_used": key.last_used.isoformat() if key.last_used else None,
    }
