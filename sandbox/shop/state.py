"""The demo shop as plain values, independent of auto-increment keys.

As :mod:`demo.state`: two databases hold the same shop when :func:`data_state`
gives the same result. Auto-increment keys can differ between databases and
content type ids always do, so rows are named by what identifies them to a
person (names, UUIDs, coupon codes); values are written so that any loss
shows: decimals as text, bytes as hex, times in ISO format with their
microseconds, durations in microseconds, JSON sorted. Nothing here imports
diskette.
"""

import datetime
import json

from django.contrib.contenttypes.models import ContentType
from django.db import models

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

#: Each model's label in a row, at its most derived class.
PLACES = {Place: "place", Restaurant: "restaurant", Pizzeria: "pizzeria"}
SHAPES = {
    Shape: "shape",
    Circle: "circle",
    Square: "square",
    ColoredSquare: "coloredsquare",
}


def data_state():
    return {
        "categories": _sorted(
            [c.name, c.parent.name if c.parent else None]
            for c in Category.objects.select_related("parent")
        ),
        "places": places(),
        "shapes": shapes(),
        "chefs": _sorted(
            [c.name, c.signature.name if c.signature else None]
            for c in Chef.objects.select_related("signature")
        ),
        "dishes": _sorted(
            [
                d.name,
                d.chef.name if d.chef else None,
                d.category.name if d.category else None,
                str(d.price),
            ]
            for d in Dish.objects.select_related("chef", "category")
        ),
        "coupons": _sorted(
            [c.code, str(c.discount), c.valid_until.isoformat()]
            for c in Coupon.objects.all()
        ),
        "orders": _sorted(
            [
                str(o.id),
                o.customer.get_username() if o.customer else None,
                o.coupon_id,
                o.placed_at.isoformat(),
            ]
            for o in Order.objects.select_related("customer").iterator()
        ),
        "order lines": _sorted(
            [str(line.order_id), line.dish.name, line.quantity, str(line.unit_price)]
            for line in OrderLine.objects.select_related("dish").iterator()
        ),
        "notes": notes(),
        "profiles": _sorted(
            [
                p.user.get_username(),
                p.nickname,
                _json(p.preferences),
                bytes(p.avatar).hex(),
            ]
            for p in Profile.objects.select_related("user")
        ),
        "customers": _sorted(
            [
                c.user.get_username() if c.user else None,
                c.referrer_id,
                c.handle,
                c.email,
                c.phone,
                c.ip,
                c.address,
                c.notes,
                _json(c.profile),
                c.id_scan.name,
                c.tier,
            ]
            for c in Customer.objects.select_related("user").iterator()
        ),
        "ledger": _sorted(
            [
                str(e.order_id) if e.order_id else None,
                str(e.amount),
                e.booked_at.isoformat(),
                e.booked_on.isoformat(),
                e.cutoff.isoformat(),
                _microseconds(e.settle_within),
                bytes(e.signature).hex(),
                _json(e.payload),
            ]
            for e in LedgerEntry.objects.iterator()
        ),
    }


def places():
    """Each place once, at its most derived class, and every table's rows.

    Querying each class counts its own table: a pizzeria is also a
    restaurant and a place, and a load that left out a parent row shows.
    """
    derived = {}
    for model, label in PLACES.items():  # parents first: children overwrite
        for place in model.objects.all():
            row = {"name": place.name, "address": place.address}
            if isinstance(place, Restaurant):
                row["serves_pizza"] = place.serves_pizza
            if isinstance(place, Pizzeria):
                row["oven"] = place.oven
            derived[place.pk] = [label, _sorted(row.items())]
    return {
        "objects": _sorted(derived.values()),
        "rows": {label: model.objects.count() for model, label in PLACES.items()},
    }


def shapes():
    """Each shape once through the polymorphic manager, and the base rows.

    The base rows' ``polymorphic_ctype`` must name the most derived class,
    or the polymorphic manager gives back the wrong class.
    """
    objects = []
    for shape in Shape.objects.all():
        row = {"name": shape.name}
        for field in ("radius", "side", "colour"):
            if hasattr(shape, field):
                row[field] = str(getattr(shape, field))
        objects.append([type(shape)._meta.model_name, _sorted(row.items())])
    ctypes = ContentType.objects.in_bulk(
        Shape.objects.non_polymorphic().values_list("polymorphic_ctype", flat=True)
    )
    return {
        "objects": _sorted(objects),
        "base rows": _sorted(
            [s.name, *_natural(ctypes.get(s.polymorphic_ctype_id))]
            for s in Shape.objects.non_polymorphic()
        ),
        "rows": {
            label: model.objects.non_polymorphic().count()
            for model, label in SHAPES.items()
        },
    }


def notes():
    """Each note with its target as (app label, model, key), its text and
    when it was last edited.

    Content type ids differ between databases, so the type is named. The key
    is the object id when the target's primary key is a value (a UUID, a
    code); behind an auto-increment key it is the target's name, so a load
    that renumbered rows but kept object ids shows.
    """
    names = {}  # content type id: {object id: name}, one query per type
    rows = []
    for note in Note.objects.iterator():
        content_type = ContentType.objects.get_for_id(note.content_type_id)
        model = content_type.model_class()
        key = note.object_id
        if _auto_key(model):
            if note.content_type_id not in names:
                # A plain query: a polymorphic one would read the subclasses' tables.
                names[note.content_type_id] = {
                    str(obj.pk): str(obj) for obj in models.QuerySet(model)
                }
            key = names[note.content_type_id].get(key, f"missing #{key}")
        rows.append([*_natural(content_type), key, note.text, note.edited.isoformat()])
    return _sorted(rows)


def _auto_key(model):
    """Whether the model's key is an auto-increment one, maybe through parents."""
    pk = model._meta.pk
    while pk.is_relation:  # a child's link to its parent, a profile's to its user
        pk = pk.target_field
    return isinstance(pk, models.AutoField)  # BigAutoField and SmallAutoField too


def _sorted(rows):
    """Rows in one order whatever the query's, ``None`` or not in any column."""
    return sorted(rows, key=_json)


def _natural(content_type):
    return [content_type.app_label, content_type.model] if content_type else [None, None]


def _json(value):
    return json.dumps(value, sort_keys=True)


def _microseconds(duration):
    return duration // datetime.timedelta(microseconds=1)
