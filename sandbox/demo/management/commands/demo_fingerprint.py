"""``manage.py demo_fingerprint``: one digest of the demo data and media.

Two projects print the same fingerprint when their users, groups, books,
tags, reviews and archived media files are the same, whatever their primary
keys; ``make demo`` compares it before a dump and after the load.
"""

import fnmatch
import hashlib
import json

from django.conf import settings
from django.core.management.base import BaseCommand

from demo.state import data_state


class Command(BaseCommand):
    help = "Print a digest of the demo data and of the media a dump carries."

    def handle(self, *args, **options):
        data = data_state()
        media = settings.MEDIA_ROOT
        files = {
            str(path.relative_to(media)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(media.rglob("*"))
            if path.is_file()
            and not _excluded(
                str(path.relative_to(media)), settings.DISKETTE_STORAGES_EXCLUDES
            )
        }
        digest = hashlib.sha256(
            json.dumps([data, files], sort_keys=True).encode()
        ).hexdigest()
        self.stdout.write(
            f"{digest}  ({len(data['users'])} users, {len(data['books'])} books, "
            f"{len(data['reviews'])} reviews, {len(files)} media files)"
        )


def _excluded(relative, patterns):
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)
