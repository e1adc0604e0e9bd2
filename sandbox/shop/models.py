"""A small shop with every model kind real Django sites have.

The demo library covers plain foreign keys, a many-to-many and files; this
app adds what a dump and a load get wrong most easily: multi-table
inheritance (three levels) and a proxy, django-polymorphic models, generic
relations, a self-referencing tree, a cycle of foreign keys, primary keys
that are UUIDs, strings or a one-to-one field, a many-to-many through a model
of its own, fields whose values must come back exactly, and a swappable
custom user model.
"""

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models
from polymorphic.models import PolymorphicModel


class NameManager(models.Manager):
    def get_by_natural_key(self, name):
        return self.get(name=name)


class Shopper(AbstractUser):
    """A custom user model, swappable exactly as ``auth.User`` is.

    With ``AUTH_USER_MODEL = "auth.User"`` (the sandbox) it is swapped out
    and has no table; a project saying ``AUTH_USER_MODEL = "shop.Shopper"``
    uses it instead of ``auth.User``.
    """

    loyalty_points = models.PositiveIntegerField(default=0)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


class Profile(models.Model):
    """A one-to-one primary key: the user's own key, whichever model it is."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True
    )
    nickname = models.CharField(max_length=50, blank=True)
    preferences = models.JSONField(default=dict, blank=True)
    avatar = models.BinaryField(blank=True, default=b"")

    def __str__(self):
        return self.nickname or str(self.user)


class Category(models.Model):
    """A self-referencing tree with a natural key: parents by name."""

    name = models.CharField(max_length=100, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )

    objects = NameManager()

    class Meta:
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name

    def natural_key(self):
        return (self.name,)


class Place(models.Model):
    """The root of a three-level multi-table inheritance; notes point at it."""

    name = models.CharField(max_length=100)
    address = models.CharField(max_length=200)
    notes = GenericRelation("Note")

    def __str__(self):
        return self.name


class Restaurant(Place):
    """Second level: a row of its own joined to its place row."""

    serves_pizza = models.BooleanField(default=False)


class Pizzeria(Restaurant):
    """Third level: three rows, one per table, make one pizzeria."""

    oven = models.CharField(max_length=50)


class Landmark(Place):
    """A proxy: no table and no rows of its own, so nothing of it in a dump."""

    class Meta:
        proxy = True
        ordering = ["name"]

    def postcard(self):
        return f"Greetings from {self.name}, {self.address}"


class Shape(PolymorphicModel):
    """django-polymorphic: querying shapes gives back circles and squares."""

    name = models.CharField(max_length=100)

    def __str__(self):
        return self.name


class Circle(Shape):
    radius = models.DecimalField(max_digits=8, decimal_places=3)


class Square(Shape):
    side = models.DecimalField(max_digits=8, decimal_places=3)


class ColoredSquare(Square):
    """A third polymorphic level: its ``polymorphic_ctype`` names it in every row."""

    colour = models.CharField(max_length=30)


class Note(models.Model):
    """Generic relations: a note on any object, integer, UUID or string key.

    ``object_id`` is text so that it holds every kind of primary key; the
    content type's id differs between databases, so a load must map it.
    """

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.CharField(max_length=64)
    target = GenericForeignKey("content_type", "object_id")
    text = models.TextField()
    #: Set on every save(): a load must keep the archive's value, as
    #: loaddata's raw save does, never stamp the time of the load.
    edited = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["content_type", "object_id"])]

    def __str__(self):
        return self.text[:40]


class Chef(models.Model):
    """Half of a cycle: a chef's signature dish is cooked by that chef."""

    name = models.CharField(max_length=100, unique=True)
    signature = models.ForeignKey(
        "Dish", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = NameManager()

    def __str__(self):
        return self.name

    def natural_key(self):
        return (self.name,)


class Dish(models.Model):
    """The other half of the cycle; with natural keys one refers forward."""

    name = models.CharField(max_length=100, unique=True)
    chef = models.ForeignKey(
        Chef, null=True, blank=True, on_delete=models.SET_NULL, related_name="dishes"
    )
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="dishes"
    )
    price = models.DecimalField(max_digits=8, decimal_places=2)

    objects = NameManager()

    class Meta:
        verbose_name_plural = "dishes"

    def __str__(self):
        return self.name

    def natural_key(self):
        return (self.name,)


class Coupon(models.Model):
    """A string primary key, the value customers type."""

    code = models.CharField(max_length=32, primary_key=True)
    discount = models.DecimalField(max_digits=5, decimal_places=2)
    valid_until = models.DateField()
    notes = GenericRelation("Note")

    def __str__(self):
        return self.code


class Order(models.Model):
    """A UUID primary key, and a many-to-many through order lines."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    coupon = models.ForeignKey(Coupon, null=True, blank=True, on_delete=models.SET_NULL)
    placed_at = models.DateTimeField()
    items = models.ManyToManyField(Dish, through="OrderLine", related_name="orders")
    notes = GenericRelation("Note")

    def __str__(self):
        return str(self.id)


class OrderLine(models.Model):
    """The custom through model: dumped as rows of its own, not with orders."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    dish = models.ForeignKey(Dish, on_delete=models.PROTECT)
    quantity = models.PositiveSmallIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=8, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "dish"], name="unique_order_dish")
        ]

    def __str__(self):
        return f"{self.quantity} x {self.dish}"


class LedgerEntry(models.Model):
    """Values that must come back exactly, not nearly.

    Thirty digits of decimal, microseconds on aware datetimes, times and
    durations, bytes with NULs and 0xff, and nested unicode JSON with
    floats, nulls and booleans.
    """

    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL)
    amount = models.DecimalField(max_digits=30, decimal_places=10)
    booked_at = models.DateTimeField()
    booked_on = models.DateField()
    cutoff = models.TimeField()
    settle_within = models.DurationField()
    signature = models.BinaryField()
    payload = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "ledger entries"

    def __str__(self):
        return f"{self.amount} on {self.booked_on}"


class Customer(models.Model):
    """A typical customer record: the personal data anonymization rules cover.

    Its user is referred to by natural key (the username) in dumps, so a
    rule on usernames must give the user's row and this reference the same
    fake. ``handle`` is unique, ``tier`` has choices (no personal data), and
    ``id_scan`` is a file whose content is personal too.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="customer",
    )
    #: Refers to a user by username (``to_field``): the column holds the
    #: username itself, which must become the fake the user's row gets.
    referrer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        to_field="username",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="referrals",
    )
    handle = models.CharField(max_length=40, unique=True)
    email = models.EmailField()
    phone = models.CharField(max_length=30, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    address = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    profile = models.JSONField(default=dict, blank=True)
    id_scan = models.FileField(upload_to="customers/", blank=True)
    tier = models.CharField(
        max_length=10, choices=[("basic", "Basic"), ("gold", "Gold")], default="basic"
    )

    def __str__(self):
        return self.handle
