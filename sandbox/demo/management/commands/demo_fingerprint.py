"""``manage.py demo_fingerprint``: one digest of the demo data and media.

Two projects print the same fingerprint when their users, groups, books,
tags, reviews and archived media files are the same, whatever their primary
keys; ``make demo`` compares it before a dump and after the load. It uses
nothing from diskette, so it also runs beside diskette 0.6 in the
cross-version tests.
"""

import fnmatch
import hashlib
import json

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from demo.models import Book, Review


class Command(BaseCommand):
    help = "Print a digest of the demo data and of the media a dump carries."

    def handle(self, *args, **options):
        data = {
            "users": sorted(
                [u.username, u.email, u.password, sorted(g.name for g in u.groups.all())]
                for u in User.objects.all()
            ),
            "books": sorted(
                [
                    b.title,
                    b.author.name,
                    sorted(t.name for t in b.tags.all()),
                    b.cover.name,
                    b.added_by.username if b.added_by else None,
                    str(b.published),
                ]
                for b in Book.objects.all()
            ),
            "reviews": sorted(
                [r.book.title, r.reviewer.username, r.rating] for r in Review.objects.all()
            ),
        }
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
