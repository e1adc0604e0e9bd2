"""``manage.py demo_fingerprint``: one digest of the demo data and media.

Two projects print the same fingerprint when their users, groups, books,
tags, reviews, shop objects (``shop.state``) and archived media files are the
same, whatever their primary keys; ``make demo`` compares it before a dump and
after the load.
"""

import fnmatch
import hashlib
import json

from django.conf import settings
from django.core.management.base import BaseCommand

from demo.state import data_state
from shop.state import data_state as shop_state


class Command(BaseCommand):
    help = "Print a digest of the demo data and of the media a dump carries."

    def handle(self, *args, **options):
        data, shop = data_state(), shop_state()
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
            json.dumps([data, files, shop], sort_keys=True).encode()
        ).hexdigest()
        self.stdout.write(
            f"{digest}  ({len(data['users'])} users, {len(data['books'])} books, "
            f"{len(data['reviews'])} reviews, {shop_objects(shop)} shop objects, "
            f"{len(files)} media files)"
        )


def shop_objects(shop):
    """How many shop objects: places and shapes once each, at their own class."""
    return sum(
        len(value["objects"]) if isinstance(value, dict) else len(value)
        for value in shop.values()
    )


def _excluded(relative, patterns):
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)
