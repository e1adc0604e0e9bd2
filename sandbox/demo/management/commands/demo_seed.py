"""``manage.py demo_seed``: fill the sandbox with demo data and media.

Then ``shop_seed`` with the same seed, so the demo round trip covers every
model kind of the shop app too.
"""

import random
from datetime import date, datetime, timedelta, timezone

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from demo.models import Author, Book, Review, Tag

WORDS = [
    "amber",
    "atlas",
    "beacon",
    "cedar",
    "delta",
    "ember",
    "fable",
    "garnet",
    "harbor",
    "iris",
    "juniper",
    "kestrel",
    "lantern",
    "meadow",
    "nimbus",
    "orchid",
    "prairie",
    "quartz",
    "raven",
    "sierra",
    "tundra",
    "umber",
    "willow",
]


JOINED = datetime(2020, 1, 1, 9, 30, tzinfo=timezone.utc)


class Command(BaseCommand):
    help = "Create demo users, authors, tags, books with covers, and reviews."

    def add_arguments(self, parser):
        parser.add_argument("--books", type=int, default=40)
        parser.add_argument("--users", type=int, default=5)
        parser.add_argument("--seed", type=int, default=7, help="Random seed.")
        parser.add_argument(
            "--no-shop",
            action="store_true",
            help="The library alone, without the shop's model kinds.",
        )

    @transaction.atomic
    def handle(self, *args, **options):
        if Book.objects.exists():
            raise CommandError("the database already holds demo books")
        rng = random.Random(options["seed"])
        editors = Group.objects.create(name="editors")
        users = []
        for index in range(options["users"]):
            user = get_user_model().objects.create_user(
                f"user{index}",
                f"user{index}@example.com",
                password="demo",
                # Whole seconds: diskette 0.6 dumps with dumpdata, which cuts
                # microseconds (the shop's ledger has them, for diskette).
                date_joined=JOINED + timedelta(days=index, hours=index),
            )
            if index % 2 == 0:
                user.groups.add(editors)
            users.append(user)
        authors = [Author.objects.create(name=f"{w.title()} Writer") for w in WORDS[:10]]
        tags = [Tag.objects.create(name=w) for w in WORDS[10:]]
        for index in range(options["books"]):
            book = Book(
                title=f"The {rng.choice(WORDS).title()} of {rng.choice(WORDS).title()} {index}",
                author=rng.choice(authors),
                added_by=rng.choice(users + [None]),
                published=date(2000, 1, 1) + timedelta(days=rng.randrange(9000)),
            )
            # Incompressible bytes, as real images are.
            book.cover.save(
                f"cover{index}.bin", ContentFile(rng.randbytes(4096)), save=False
            )
            book.save()
            book.tags.set(rng.sample(tags, k=rng.randrange(4)))
            for reviewer in rng.sample(users, k=rng.randrange(len(users) + 1)):
                Review.objects.create(
                    book=book, reviewer=reviewer, rating=rng.randrange(1, 6)
                )
        # Files the sandbox's DISKETTE_STORAGES_EXCLUDES leave out of a dump.
        for folder in ("cache", "public/thumbnails"):
            path = settings.MEDIA_ROOT / folder
            path.mkdir(parents=True, exist_ok=True)
            (path / "generated.txt").write_text("regenerated on demand\n")
        self.stdout.write(
            f"Created {len(users)} users, {len(authors)} authors, {len(tags)} tags, "
            f"{options['books']} books and {Review.objects.count()} reviews."
        )
        if not options["no_shop"]:
            call_command("shop_seed", seed=options["seed"], stdout=self.stdout)
