"""``manage.py shop_seed_customers``: users and their customer records, with
personal data in every field anonymization rules are written for.

Each value holds its row's number, so it is found again in a dump only if
it leaked: ``Given0042`` or ``198.18.0.42`` cannot come out of Faker. Each
customer has an identity scan in the media whose text names them.
"""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand
from django.db import transaction

from shop.models import Customer

BATCH = 1000


def personal(i: int) -> dict:
    """The personal values of user and customer ``i``."""
    return {
        "username": f"member{i:05d}",
        "first_name": f"Given{i:05d}",
        "last_name": f"Family{i:05d}",
        "email": f"given{i:05d}.family@mail.invalid",
        "handle": f"Handle{i:05d}",
        "phone": f"+33 6 {i:08d}",
        "ip": f"198.18.{i // 256}.{i % 256}",
        "address": f"{i:05d} Orchard Lane, Springfield",
        "notes": f"Called on behalf of Given{i:05d}; prefers mornings",
        "street": f"{i:05d} Harbour Road",
        "city": f"Townsville{i:05d}",
        "profile_phone": f"+44 7700 {i:06d}",
    }


class Command(BaseCommand):
    help = "Create users and customer records full of (made up) personal data."

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=2000)

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        # One hash for all: hashing 2,000 passwords would take minutes.
        password = make_password("original-secret-password")
        start = User.objects.count()
        media = Path(settings.MEDIA_ROOT) / "customers"
        media.mkdir(parents=True, exist_ok=True)
        for first in range(start, start + options["users"], BATCH):
            numbers = range(first, min(first + BATCH, start + options["users"]))
            values = [personal(i) for i in numbers]
            users = User.objects.bulk_create(
                [
                    User(
                        username=v["username"],
                        first_name=v["first_name"],
                        last_name=v["last_name"],
                        email=v["email"],
                        password=password,
                    )
                    for v in values
                ]
            )
            users = User.objects.filter(username__in=[v["username"] for v in values])
            by_name = {u.username: u for u in users}
            customers = []
            for i, v in zip(numbers, values, strict=True):
                scan = f"customers/scan-{i:05d}.txt"
                (media / f"scan-{i:05d}.txt").write_text(f"Passport of {v['first_name']}\n")
                customers.append(
                    Customer(
                        user=by_name[v["username"]],
                        # The customer before refers this one: a username in a column.
                        referrer_id=personal(i - 1)["username"] if i > start else None,
                        handle=v["handle"],
                        email=v["email"],
                        phone=v["phone"],
                        ip=v["ip"],
                        address=v["address"],
                        notes=v["notes"],
                        profile={
                            "address": {"street": v["street"], "city": v["city"]},
                            "phones": [v["profile_phone"]],
                            "newsletter": i % 2 == 0,
                        },
                        id_scan=scan,
                        tier="gold" if i % 10 == 0 else "basic",
                    )
                )
            Customer.objects.bulk_create(customers)
        self.stdout.write(f"{options['users']} users and customers created")
