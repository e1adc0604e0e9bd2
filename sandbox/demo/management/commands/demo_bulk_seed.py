"""``manage.py demo_bulk_seed``: a large demo dataset and media tree, fast.

For the benchmarks: ``--rows`` objects spread over users, authors, tags,
books (with many-to-many tags and natural keys) and reviews, inserted with
``bulk_create``; and ``--media-mb`` of media, nine tenths incompressible
files, one tenth many small text files.
"""

import os
import random

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from demo.models import Author, Book, Review, Tag

BATCH = 5000


class Command(BaseCommand):
    help = "Bulk-create a large demo dataset and media tree for benchmarks."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=200_000)
        parser.add_argument("--media-mb", type=int, default=256)
        parser.add_argument("--seed", type=int, default=11)

    @transaction.atomic
    def handle(self, *args, **options):
        if Book.objects.exists():
            raise CommandError("the database already holds demo books")
        rows, rng = options["rows"], random.Random(options["seed"])
        password = make_password("demo")  # hashed once, shared: speed, not safety
        users = User.objects.bulk_create(
            [
                User(username=f"user{i}", email=f"user{i}@example.com", password=password)
                for i in range(max(rows // 100, 1))
            ],
            batch_size=BATCH,
        )
        authors = Author.objects.bulk_create(
            [Author(name=f"Author {i}") for i in range(max(rows // 40, 1))],
            batch_size=BATCH,
        )
        tags = Tag.objects.bulk_create([Tag(name=f"tag-{i}") for i in range(500)])
        books = Book.objects.bulk_create(
            [
                Book(
                    title=f"Book {i}",
                    author=rng.choice(authors),
                    added_by=rng.choice(users),
                    cover=f"covers/cover{i % 1000}.bin",
                )
                for i in range(int(rows * 0.3))
            ],
            batch_size=BATCH,
        )
        Through = Book.tags.through
        Through.objects.bulk_create(
            [
                Through(book_id=book.pk, tag_id=tag.pk)
                for book in books
                for tag in rng.sample(tags, k=rng.randrange(4))
            ],
            batch_size=BATCH,
        )
        left = rows - len(users) - len(authors) - len(tags) - len(books)
        Review.objects.bulk_create(
            [
                Review(
                    book=rng.choice(books),
                    reviewer=rng.choice(users),
                    rating=rng.randrange(1, 6),
                    body="A fine read. " * rng.randrange(1, 8),
                )
                for _ in range(max(left, 0))
            ],
            batch_size=BATCH,
        )
        self.write_media(options["media_mb"], rng)
        self.stdout.write(
            f"Created {len(users)} users, {len(authors)} authors, {len(tags)} tags, "
            f"{len(books)} books and {max(left, 0)} reviews; {options['media_mb']} MB of media."
        )

    def write_media(self, megabytes, rng):
        covers = settings.MEDIA_ROOT / "covers"
        covers.mkdir(parents=True, exist_ok=True)
        big = megabytes * 9 // 10
        for index in range(max(big // 8, 1)):  # 8 MB each, like photos or PDFs
            (covers / f"scan{index}.bin").write_bytes(os.urandom(8 * 2**20))
        notes = settings.MEDIA_ROOT / "notes"
        for index in range(max((megabytes - big) * 2**20 // 2048, 1)):
            folder = notes / f"{index // 500:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            words = " ".join(
                rng.choice(("lorem", "ipsum", "dolor", "amet")) for _ in range(340)
            )
            (folder / f"note{index}.txt").write_text(words)
