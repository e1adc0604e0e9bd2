"""How the loader writes each model's objects, decided once per model.

``loaddata`` builds a model instance per object (field by field through
``to_python``), saves it with ``save_base(raw=True)`` and sends the signals
that saving sends. Most models have no receiver for any of them, and for
those building the instance is pure cost: a :class:`ModelPlan` turns a
serialized object straight into the row the database receives, through the
same two conversions Django applies (``to_python``, then
``get_db_prep_save``), with a shortcut where both are the identity (a
``str`` for a ``CharField``).

Where an instance is observable, it is built as ``loaddata`` builds it:

- ``pre_init``/``post_init`` receivers (an ``ImageField``'s dimensions),
  ``pre_save`` or ``post_save`` receivers, fields with a descriptor of their
  own: the object is deserialized, the signals are sent around its batch's
  write, in the order ``loaddata`` sends them (a ``pre_save`` receiver sees
  the table as it was before the batch, not before its own object);
- both ``pre_save`` and ``post_save`` receivers, ``m2m_changed`` receivers
  on one of its many-to-many tables, multi-table inheritance (a child row
  needs its own ``save_base``), a composite primary key, a field with an SQL
  placeholder of its own (GIS): objects are saved one at a time, exactly as
  ``loaddata`` saves them, since a batch would change the order receivers
  see, or write what only a save writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, signals
from django.db.models.fields.files import FileDescriptor, ImageFileDescriptor
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute

#: Field classes whose ``to_python`` and ``get_db_prep_save`` return a value
#: of this type unchanged on every backend: the row takes it as it is.
IDENTITY: dict[type[models.Field], type] = {
    models.CharField: str,
    models.TextField: str,
    models.SlugField: str,
    models.EmailField: str,
    models.URLField: str,
    models.IntegerField: int,
    models.BigIntegerField: int,
    models.SmallIntegerField: int,
    models.PositiveIntegerField: int,
    models.PositiveBigIntegerField: int,
    models.PositiveSmallIntegerField: int,
    models.BooleanField: bool,
    models.FloatField: float,
}
#: Descriptors that store what they are given: an object built without
#: them (a row) holds what one built with them would.
PLAIN_DESCRIPTORS = (
    DeferredAttribute,
    ForeignKeyDeferredAttribute,
    FileDescriptor,
    ImageFileDescriptor,
)

Convert = Callable[[Any], Any]

#: In a row being built: the field's callable default, not called yet.
_MISSING: Any = object()


class Unusual(Exception):
    """An object the row path does not write as ``loaddata`` would: a value
    that is a list where a key was expected, a field it does not know, a
    database default. The loader deserializes it instead."""


@dataclass(eq=False)
class Link:
    """An auto-created many-to-many table, as one of the model's fields fills it."""

    through: type[Model]
    table: str
    columns: tuple[str, str]
    #: Turns a target's primary key (as the data or a lookup gives it) into the column's value.
    target: Convert
    #: A symmetrical relation to the model itself: each link is written both ways.
    symmetrical: bool = False


@dataclass
class ModelPlan:
    model: type[Model]
    table: str
    fields: list[Any]
    columns: list[str]
    pk_index: int
    #: Position of each concrete field in a row, by name (as the data names it).
    index: dict[str, int]
    converters: list[Convert]
    #: Every name the model answers to, for ``--ignorenonexistent``.
    names: frozenset[str]
    #: Generated fields: the data may hold their value, which is not written.
    generated: frozenset[str]
    links: dict[str, Link] = field(default_factory=dict)
    #: Relations the data may name by natural key: the related model, and
    #: whether the field holds many.
    references: dict[str, tuple[type[Model], bool]] = field(default_factory=dict)
    pre_save: bool = False
    post_save: bool = False
    #: Why the model's objects are saved one at a time ("" when they are not).
    one_by_one: str = ""
    #: Objects are built as instances (signals, init receivers, fields that need one).
    instances: bool = False
    #: The row of an object whose data names no field: each field's default.
    defaults: list[Any] = field(default_factory=list)
    #: Fields whose default is a callable, called for a row whose data leaves them out.
    dynamic_defaults: list[tuple[int, Any]] = field(default_factory=list)
    #: Fields whose default the database computes (``db_default``).
    database_defaults: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, model: type[Model], connection: BaseDatabaseWrapper) -> ModelPlan:
        meta = model._meta
        # A generated column (Django 5's GeneratedField) is the database's to
        # write: a save leaves it out, and so does a row. A composite primary
        # key (Django 5.2) is no column of its own: such a model is saved.
        fields = [
            f
            for f in meta.concrete_fields
            if not getattr(f, "generated", False) and f.column is not None
        ]
        plan = cls(
            model=model,
            table=meta.db_table,
            fields=fields,
            columns=[f.column for f in fields],
            pk_index=fields.index(meta.pk) if meta.pk in fields else -1,
            index={f.name: i for i, f in enumerate(fields)},
            converters=[converter(f, connection) for f in fields],
            names=frozenset(f.name for f in meta.get_fields()),
            generated=frozenset(
                f.name for f in meta.concrete_fields if getattr(f, "generated", False)
            ),
            pre_save=signals.pre_save.has_listeners(model),
            post_save=signals.post_save.has_listeners(model),
        )
        for m2m in meta.many_to_many:
            through = m2m.remote_field.through
            if through._meta.auto_created:
                target = through._meta.get_field(m2m.m2m_reverse_field_name())
                plan.links[m2m.name] = Link(
                    through,
                    through._meta.db_table,
                    (
                        through._meta.get_field(m2m.m2m_field_name()).column,
                        target.column,
                    ),
                    converter(target, connection),
                    # set() on a symmetrical field writes each link both ways.
                    symmetrical=bool(m2m.remote_field.symmetrical)
                    and m2m.related_model == model,
                )
        for f in [*fields, *meta.many_to_many]:
            if f.is_relation and refers_to_pk(f):
                plan.references[f.name] = (f.related_model, f.many_to_many)
        plan.one_by_one = _one_by_one_reason(plan)
        plan.instances = bool(
            plan.pre_save
            or plan.post_save
            or signals.pre_init.has_listeners(model)
            or signals.post_init.has_listeners(model)
            or any(_needs_instance(f) for f in fields)
        )
        for i, f in enumerate(fields):
            if f.has_default() and callable(f.default):
                plan.defaults.append(_MISSING)
                plan.dynamic_defaults.append((i, f))
            else:
                plan.defaults.append(_prepared_default(f, connection))
                if hasattr(plan.defaults[-1], "resolve_expression"):
                    plan.database_defaults.append(i)
        return plan

    def row(self, pk: Any, fields: dict[str, Any], ignorenonexistent: bool) -> list[Any]:
        """The row of a serialized object, in :attr:`columns` order.

        :raises Unusual: for what only the deserializer reads right.
        :raises ValidationError: a value the field refuses, named.
        """
        values = self.defaults.copy()
        converters, index = self.converters, self.index
        i, value = self.pk_index, pk
        try:
            values[i] = converters[i](value)
            for name, value in fields.items():
                i = index.get(name, -1)
                if i >= 0:
                    values[i] = converters[i](value)
                elif name in self.links:
                    if type(value) is not list or any(type(v) is list for v in value):
                        raise Unusual(value)  # a natural key no row has yet
                elif name in self.generated:
                    continue
                elif not ignorenonexistent or name in self.names:
                    raise Unusual(name)
        except ValidationError as exc:
            raise ValidationError(
                f"{self.model._meta.label}.{self.fields[i].name}: "
                f"{'; '.join(exc.messages)} (value {value!r})"
            ) from exc
        for position, f in self.dynamic_defaults:
            if values[position] is _MISSING:  # called, as Model() calls it, when missing
                values[position] = converters[position](f.get_default())
        for position in self.database_defaults:
            if hasattr(values[position], "resolve_expression"):
                raise Unusual(values[position])  # only a save writes it
        return values

    def row_of(self, obj: Model, connection: BaseDatabaseWrapper) -> list[Any]:
        """The row of a built instance: what ``save_base(raw=True)`` inserts."""
        return [
            f.get_db_prep_save(getattr(obj, f.attname), connection) for f in self.fields
        ]


def converter(f: Any, connection: BaseDatabaseWrapper) -> Convert:
    """``value`` as the database receives it, as the deserializer and a raw
    save would make it: ``to_python`` (the target's, for a foreign key),
    then ``get_db_prep_save``."""
    if f.is_relation:
        return _reference(converter(f.target_field, connection), f, connection)
    to_python, prepare = f.to_python, f.get_db_prep_save
    kind = IDENTITY.get(type(f))
    # An automatic key takes an int as it is, but 0, which MySQL refuses
    # through get_db_prep_save (it would mean "the next one" there).
    auto = isinstance(f, models.AutoField | models.BigAutoField | models.SmallAutoField)
    if auto:
        kind = int
    if kind is None:
        return lambda value: prepare(to_python(value), connection)
    null = f.null

    def convert(value: Any) -> Any:
        if type(value) is kind and (value or not auto) or (value is None and null):
            return value
        return prepare(to_python(value), connection)

    return convert


def refers_to_pk(f: Any) -> bool:
    """Whether relation ``f`` stores its target's primary key (no ``to_field``):
    a natural key there resolves to that key; the deserializer reads the others."""
    target = f.remote_field.field_name if not f.many_to_many else None
    return target is None or target == f.related_model._meta.pk.name


def _reference(target: Convert, f: Any, connection: BaseDatabaseWrapper) -> Convert:
    """A foreign key's converter: its target's, the foreign key's own
    ``get_db_prep_save`` where it differs (an empty string on Oracle)."""
    exact = type(f).get_db_prep_save is models.ForeignKey.get_db_prep_save
    prepare = f.get_db_prep_save
    to_python = f.target_field.to_python

    def convert(value: Any) -> Any:
        if value is None:
            return None  # as the deserializer reads it, whatever the target
        if type(value) is list or type(value) is dict:
            raise Unusual(value)  # a natural key no row has yet, or a to_field's
        if exact:
            return target(value)
        return prepare(to_python(value), connection)

    return convert


def _one_by_one_reason(plan: ModelPlan) -> str:
    meta = plan.model._meta
    if plan.pk_index < 0:
        return "a composite primary key (each object saved as loaddata does)"
    if any(hasattr(f, "get_placeholder") for f in plan.fields):
        return (
            "a field with its own SQL placeholder, a geometry say (saved as loaddata does)"
        )
    if any(
        p._meta.concrete_model is not meta.concrete_model for p in meta.get_parent_list()
    ):
        return "multi-table inheritance (a child row is saved on its own)"
    if plan.pre_save and plan.post_save:
        return "pre_save and post_save receivers (each object saved as loaddata does)"
    for link in plan.links.values():
        if signals.m2m_changed.has_listeners(link.through):
            return "m2m_changed receivers (each object saved as loaddata does)"
    return ""


def _needs_instance(f: Any) -> bool:
    """A field whose value an instance could change on the way: one with a
    descriptor of its own."""
    descriptor = getattr(f, "descriptor_class", DeferredAttribute)
    return descriptor not in PLAIN_DESCRIPTORS


def _prepared_default(f: Any, connection: BaseDatabaseWrapper) -> Any:
    value = f.get_default()
    if hasattr(value, "resolve_expression"):
        return value  # a database default: the row path hands such objects on
    return f.get_db_prep_save(value, connection)
