"""``manage.py shop_seed``: fill the demo shop, every model kind of it.

The same ``--seed`` gives the same data; ``--scale`` multiplies every count
for the benchmarks. Profiles go to the users already there (``demo_seed``
makes them first), whichever the user model is.
"""

import datetime
import random
import uuid
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from shop.models import (
    Category,
    Chef,
    Circle,
    ColoredSquare,
    Coupon,
    Customer,
    Dish,
    LedgerEntry,
    Note,
    Order,
    OrderLine,
    Pizzeria,
    Place,
    Profile,
    Restaurant,
    Shape,
    Square,
)

UTC = datetime.timezone.utc
#: When the seed says notes were last edited (``Note.edited`` is ``auto_now``).
EDITED = datetime.datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
TREE = {
    "Mains": {"Pasta": ["Fresh pasta", "Baked pasta"], "Grill": ["Steaks", "Skewers"]},
    "Desserts": {"Cakes": ["Tarts", "Gâteaux"], "Ices": ["Sorbets", "Gelati"]},
}
STREETS = [
    "Market Square",
    "Harbour Road",
    "Rue de l'Église",
    "Station Square",
    "Mill Lane",
]
OVENS = ["wood", "gas", "electric", "coal"]
COLOURS = ["crimson", "teal", "ochre", "slate"]
DISHES = [
    "Margherita",
    "Carbonara",
    "Lasagne",
    "Ribeye",
    "Souvlaki",
    "Tarte Tatin",
    "Forêt-noire",
    "Lemon sorbet",
    "Pistachio gelato",
    "Risotto",
]
CHEFS = ["Ada Fontaine", "Bruno Keller", "Chiara Rossi", "Dmitri Ōta"]
COUPONS = ["WELCOME10", "ÉTÉ-2025", "black friday"]
#: Awkward exact values: thirty digits, the smallest step, a negative zero-ish.
AMOUNTS = [
    Decimal("12345678901234567890.0123456789"),
    Decimal("0.0000000001"),
    Decimal("-98765432109876543210.9876543210"),
    Decimal("0E-10"),
]
PAYLOADS = [
    {"tags": ["épicé", "辛い", "🌶"], "ratio": 0.1, "tiny": 1e-7, "big": 1.5e300},
    {"nested": {"list": [1, 2.5, None, True, False, {"deep": ["x", {}]}]}, "nil": None},
    ["top-level", "list", 3, -0.25],
    'just a string with "quotes" and \\ backslash',
    None,
]


class Command(BaseCommand):
    help = "Create demo shop data: places, shapes, notes, a menu, orders and ledger."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=7, help="Random seed.")
        parser.add_argument("--scale", type=int, default=1, help="Count multiplier.")

    @transaction.atomic
    def handle(self, *args, **options):
        if Place.objects.exists():
            raise CommandError("the database already holds demo shop places")
        rng, scale = random.Random(options["seed"]), max(options["scale"], 1)
        counts = {}
        leaves = self.categories(scale, counts)
        places = self.places(rng, scale, counts)
        shapes = self.shapes(rng, scale, counts)
        dishes = self.menu(rng, scale, leaves, counts)
        coupons = self.coupons(rng, scale, counts)
        orders = self.orders(rng, scale, dishes, coupons, counts)
        self.notes(rng, places + shapes + coupons + orders, counts)
        self.profiles(rng, counts)
        self.customers(rng, counts)
        self.ledger(rng, scale, orders, counts)
        self.stdout.write(
            "Created shop: " + ", ".join(f"{n} {name}" for name, n in counts.items()) + "."
        )

    def categories(self, scale, counts):
        """A three-level tree, and a category moved under a younger one.

        The moved category's parent has the larger primary key: a load in
        primary key order meets the child before its parent.
        """
        leaves, made = [], 0
        for copy in range(scale):
            moved = Category.objects.create(name=_numbered("Seasonal", copy))
            for root_name, children in TREE.items():
                root = Category.objects.create(name=_numbered(root_name, copy))
                for child_name, grandchildren in children.items():
                    child = Category.objects.create(
                        name=_numbered(child_name, copy), parent=root
                    )
                    for name in grandchildren:
                        leaves.append(
                            Category.objects.create(
                                name=_numbered(name, copy), parent=child
                            )
                        )
                    made += 1 + len(grandchildren)
                made += 1
            moved.parent = leaves[-1]
            moved.save(update_fields=["parent"])
            made += 1
        counts["categories"] = made
        return leaves

    def places(self, rng, scale, counts):
        """Places of every inheritance level, three of each per scale."""
        places = []
        for index in range(3 * scale):
            address = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}"
            places.append(Place.objects.create(name=f"Kiosk {index}", address=address))
            places.append(
                Restaurant.objects.create(
                    name=f"Bistro {index}",
                    address=f"{rng.randrange(1, 200)} {rng.choice(STREETS)}",
                    serves_pizza=rng.random() < 0.5,
                )
            )
            places.append(
                Pizzeria.objects.create(
                    name=f"Pizzeria {index}",
                    address=f"{rng.randrange(1, 200)} {rng.choice(STREETS)}",
                    serves_pizza=True,
                    oven=rng.choice(OVENS),
                )
            )
        counts["places"] = len(places)
        return places

    def shapes(self, rng, scale, counts):
        """Shapes of every polymorphic class, a bare one included."""
        shapes = []
        for index in range(2 * scale):
            shapes.append(Shape.objects.create(name=f"Blob {index}"))
            shapes.append(Circle.objects.create(name=f"Plate {index}", radius=_size(rng)))
            shapes.append(Square.objects.create(name=f"Tile {index}", side=_size(rng)))
            shapes.append(
                ColoredSquare.objects.create(
                    name=f"Napkin {index}", side=_size(rng), colour=rng.choice(COLOURS)
                )
            )
        counts["shapes"] = len(shapes)
        return shapes

    def menu(self, rng, scale, leaves, counts):
        """Chefs and dishes in a cycle: each signature dish cooked by its chef.

        The last chef has no signature and the last dish no chef: both keys
        are nullable.
        """
        dishes = []
        for copy in range(scale):
            chefs = [Chef.objects.create(name=_numbered(n, copy)) for n in CHEFS]
            for index, name in enumerate(DISHES):
                dishes.append(
                    Dish.objects.create(
                        name=_numbered(name, copy),
                        chef=chefs[index % len(chefs)] if index < len(DISHES) - 1 else None,
                        category=rng.choice(leaves),
                        price=Decimal(rng.randrange(450, 3200)) / 100,
                    )
                )
            for chef in chefs[:-1]:
                chef.signature = rng.choice(list(chef.dishes.all()))
                chef.save(update_fields=["signature"])
        counts["chefs"] = len(CHEFS) * scale
        counts["dishes"] = len(dishes)
        return dishes

    def coupons(self, rng, scale, counts):
        coupons = [
            Coupon.objects.create(
                code=_numbered(code, copy),
                discount=Decimal(rng.randrange(5, 50)),
                valid_until=datetime.date(2025, 1, 1)
                + datetime.timedelta(days=rng.randrange(700)),
            )
            for copy in range(scale)
            for code in COUPONS
        ]
        counts["coupons"] = len(coupons)
        return coupons

    def orders(self, rng, scale, dishes, coupons, counts):
        """Orders with seeded UUIDs, microsecond times and two or three lines."""
        customers = list(get_user_model().objects.order_by("pk")) + [None]
        orders, lines = [], 0
        for _ in range(8 * scale):
            order = Order.objects.create(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                customer=rng.choice(customers),
                coupon=rng.choice(coupons + [None]),
                placed_at=_moment(rng),
            )
            for dish in rng.sample(dishes, k=rng.randrange(2, 4)):
                OrderLine.objects.create(
                    order=order,
                    dish=dish,
                    quantity=rng.randrange(1, 5),
                    unit_price=dish.price,
                )
                lines += 1
            orders.append(order)
        counts["orders"], counts["order lines"] = len(orders), lines
        return orders

    def notes(self, rng, targets, counts):
        """One or two notes on each place, shape, coupon (text key) and order (UUID).

        Content types come from Django, whatever ids this database gave them.
        """
        made = 0
        for target in targets:
            for index in range(rng.randrange(1, 3)):
                note = Note.objects.create(
                    content_type=ContentType.objects.get_for_model(target),
                    object_id=str(target.pk),
                    text=f"Note {index} on {target}: {rng.choice(DISHES)} ✓",
                )
                # A fixed time, not save()'s now: seeds compare equal, and a
                # load that stamped its own time would show.
                Note.objects.filter(pk=note.pk).update(
                    edited=EDITED + datetime.timedelta(seconds=made, microseconds=made)
                )
                made += 1
        counts["notes"] = made

    def profiles(self, rng, counts):
        users = list(get_user_model().objects.order_by("pk"))
        for user in users:
            if hasattr(user, "loyalty_points"):  # a shop.Shopper: its own field too
                user.loyalty_points = rng.randrange(1, 10_000)
                user.save(update_fields=["loyalty_points"])
            Profile.objects.create(
                user=user,
                nickname=f"{user.get_username()}-ü",
                preferences={"diet": rng.choice(["omnivore", "végétarien", None])},
                avatar=bytes([0, 255]) + rng.randbytes(30) + b"\x00",
            )
        counts["profiles"] = len(users)

    def customers(self, rng, counts):
        """A customer record per user, the one before as its referrer (by username)."""
        users = list(get_user_model().objects.order_by("pk"))
        for number, user in enumerate(users):
            Customer.objects.create(
                user=user,
                referrer=users[number - 1] if number else None,
                handle=f"{user.get_username()}-Ü",
                email=user.email,
                phone=f"+33 1 {rng.randrange(10**8):08d}",
                ip=rng.choice([None, f"192.0.2.{number % 250}", f"2001:db8::{number:x}"]),
                address=f"{number} rue des Écoles\nParis",
                profile={"address": {"city": "Lyon"}, "phones": [], "newsletter": True},
                tier=rng.choice(["basic", "gold"]),
            )
        counts["customers"] = len(users)

    def ledger(self, rng, scale, orders, counts):
        """Entries whose every value must come back exactly."""
        made = 0
        for copy in range(scale):
            for index, amount in enumerate(
                AMOUNTS + [Decimal(rng.randrange(10**12)) / 10**10]
            ):
                moment = _moment(rng)
                LedgerEntry.objects.create(
                    order=rng.choice(orders + [None]),
                    amount=amount,
                    booked_at=moment,
                    booked_on=moment.date(),
                    cutoff=datetime.time(23, 59, 59, 999999 - index),
                    settle_within=datetime.timedelta(days=3 + copy, microseconds=7 + index),
                    signature=b"\x00\xff" + rng.randbytes(14) + b"\x00",
                    payload=PAYLOADS[(copy + index) % len(PAYLOADS)],
                )
                made += 1
        counts["ledger entries"] = made


def _numbered(name, copy):
    """Names stay unique when ``--scale`` repeats them."""
    return name if copy == 0 else f"{name} {copy}"


def _size(rng):
    return Decimal(rng.randrange(1, 10**6)) / 1000


def _moment(rng):
    """An aware datetime with microseconds, never a whole millisecond."""
    return datetime.datetime(2024, 1, 1, tzinfo=UTC) + datetime.timedelta(
        seconds=rng.randrange(10**8), microseconds=rng.randrange(1000) * 1000 + 7
    )
