"""Rows written as Django's JSON Lines serializer writes them, without model instances.

Django's serializer builds a model instance per row, then calls a handful of
methods per field on it: about 5,000 rows a second, most of it spent on
objects thrown away at once. Here each model's own columns are read as value
tuples (``values_list``: Django still applies every database converter,
``from_db_value``, SQLite's decimals and datetimes, UUIDs...), each column
goes through a function chosen once per field, and the line is encoded by
the C JSON encoder. What comes out is what ``python.Serializer`` and
``jsonl.Serializer`` write (``django/core/serializers/python.py`` and
``base.py``), value for value and in the same field order:

- ``{"model": label, "pk": ..., "fields": {...}}``, ``"pk"`` left out for a
  model with a natural key under ``natural_primary``;
- the concrete model's ``local_fields`` with ``serialize`` set (never the
  primary key, nor a parent link unless natural primary keys need it), then
  its many-to-many fields whose through model is auto-created;
- a value of a protected type (``None``, numbers, dates and times,
  decimals) as it is, anything else as ``field.value_to_string`` gives it: a
  ``FileField``'s file name (``""`` for NULL: the instance holds a
  ``FieldFile``), base64 for binary, Django's own format for durations, the
  decoded object for JSON. A field class of unknown behaviour is given a
  real instance (``Model.from_db``), as the serializer would;
- times keep their microseconds (:class:`ExactJSONEncoder`).

Rows are read in primary key order by keyset pagination (``pk > last``,
:data:`BATCH_ROWS` at a time), so memory stays flat on every database:
MySQL's client fetches whole result sets, SQLite has no server-side cursor.
Natural keys of the rows a batch refers to are fetched in one query per
referenced model (with what their own ``natural_key()`` reads joined in) and
kept in a bounded cache; many-to-many values take one query per field and
batch, ordered as the serializer's own query orders them.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import inspect
import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.core.serializers.base import SerializationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models
from django.db.models import Field, Model, QuerySet
from django.db.models.fields.files import (
    FieldFile,
    FileDescriptor,
    ImageFileDescriptor,
)
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.utils import timezone
from django.utils.duration import duration_string
from django.utils.encoding import is_protected_type

if TYPE_CHECKING:
    from .anonymize import Anonymizer

#: Rows fetched per round trip; Django's ``dumpdata`` uses the same.
BATCH_ROWS = 2000
#: Natural keys kept between batches, all referenced models together; past
#: this the oldest are forgotten, so memory stays flat whatever the size of
#: the dump (a key and its value take about 300 bytes).
NATURAL_KEYS_CACHED = 50_000


def own_rows(rows: QuerySet[Any]) -> QuerySet[Any]:
    """``rows`` as instances of the queried model itself, never of a subclass.

    A django-polymorphic manager turns each row of a parent model into an
    instance of its most derived class: serialized, every shape would come
    out as a circle or a square, and the parent table's rows would be
    missing from the dump (``shape_ptr_id`` then points at nothing on
    load). ``dumpdata`` gets plain rows only because django-polymorphic
    recognises its module on the call stack; diskette asks for them.
    """
    plain = getattr(rows, "non_polymorphic", None)
    return plain() if callable(plain) else rows


def natural_relations(model: type[Model], depth: int = 2) -> list[str]:
    """``select_related`` paths to the objects natural foreign keys will read.

    Forward foreign keys to models with a natural key and, ``depth`` levels
    down, theirs (a book's natural key holds its author's).
    """
    paths = []
    for field in model._meta.concrete_fields:
        related = field.related_model
        if field.is_relation and field.many_to_one and hasattr(related, "natural_key"):
            paths.append(field.name)
            if depth > 1:
                paths += [
                    f"{field.name}__{sub}" for sub in natural_relations(related, depth - 1)
                ]
    return paths


def natural_key_relations(model: type[Model], depth: int = 2) -> list[str]:
    """``select_related`` paths to what ``model``'s ``natural_key()`` reads.

    Those :func:`natural_relations` gives, narrowed to the models that
    ``natural_key.dependencies`` names when it says (Django's own way to
    tell what a natural key is made of, which ``dumpdata`` sorts models
    by): a book's key joins its author, not the user who added it. A key
    reading more than it says still comes right, a query per object slower.
    """
    dependencies = getattr(model.natural_key, "dependencies", None)
    paths = []
    for path in natural_relations(model, depth=1):
        related = model._meta.get_field(path).related_model
        if dependencies is not None and related._meta.label_lower not in {
            label.lower() for label in dependencies
        }:
            continue
        paths.append(path)
        if depth > 1:
            paths += [f"{path}__{sub}" for sub in natural_key_relations(related, depth - 1)]
    return paths


def iso_datetime(value: datetime.datetime) -> str:
    """ISO 8601 with every microsecond, ``Z`` for UTC (as Django writes it)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def iso_time(value: datetime.time) -> str:
    if timezone.is_aware(value):
        raise ValueError("JSON can't represent timezone-aware times.")
    return value.isoformat()


class ExactJSONEncoder(DjangoJSONEncoder):
    """Django's encoder, but times keep their microseconds.

    ``DjangoJSONEncoder`` cuts ``07:08:09.123456`` to ``07:08:09.123`` (for
    ECMAScript's sake): a snapshot would silently change data, and two rows
    a few microseconds apart under a unique constraint would collide on
    load. Full ISO 8601 is what Django parses back (``loaddata``, diskette
    0.6 and the batched load alike); everything else is encoded as Django does.
    """

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime.datetime):
            return iso_datetime(o)
        if isinstance(o, datetime.time):
            return iso_time(o)
        return super().default(o)


# Column converters: a value as the database converters left it, in; what
# the serializer hands to the JSON encoder, out, with dates, times, decimals
# and UUIDs already text so that the encoder's Python hook is rarely called.
Converter = Callable[[Any], Any]


def _plain(value: Any) -> Any:
    """``Field.value_to_string``'s rule: protected types kept, else ``str()``."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is datetime.datetime:
        return iso_datetime(value)
    if kind is decimal.Decimal:
        return str(value)
    if kind is datetime.date:
        return value.isoformat()
    if kind is datetime.time:
        return iso_time(value)
    return value if is_protected_type(value) else str(value)


def _datetime(value: Any) -> Any:
    return iso_datetime(value) if type(value) is datetime.datetime else _plain(value)


def _date(value: Any) -> Any:
    return value.isoformat() if type(value) is datetime.date else _plain(value)


def _decimal(value: Any) -> Any:
    return str(value) if type(value) is decimal.Decimal else _plain(value)


def _uuid(value: Any) -> Any:
    return str(value) if type(value) is uuid.UUID else _plain(value)


def _duration(value: Any) -> Any:
    return None if value is None else duration_string(value)


def _binary(value: Any) -> Any:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _file(value: Any) -> Any:
    return value or ""  # str(FieldFile): its name, "" when NULL or empty


def _by_instance(value: Any) -> Any:
    """Marks a field whose value needs a model instance (never called)."""
    raise AssertionError("a field read through an instance has no converter")


#: Built-in field classes whose values (str, int, bool, float, decoded JSON
#: or None) are written as they are read.
_AS_READ: frozenset[type[Any]] = frozenset(
    {
        models.AutoField,
        models.BigAutoField,
        models.SmallAutoField,
        models.IntegerField,
        models.BigIntegerField,
        models.SmallIntegerField,
        models.PositiveIntegerField,
        models.PositiveBigIntegerField,
        models.PositiveSmallIntegerField,
        models.BooleanField,
        models.FloatField,
        models.CharField,
        models.TextField,
        models.SlugField,
        models.EmailField,
        models.URLField,
        models.GenericIPAddressField,
        models.FilePathField,
        models.JSONField,
    }
)
_INTEGERS = frozenset(
    kind for kind in _AS_READ if issubclass(kind, (models.IntegerField, models.AutoField))
)
#: Other built-in field classes whose values get a converter of their own.
_BUILT_IN: dict[type[Any], Converter] = {
    models.DateTimeField: _datetime,
    models.DateField: _date,
    models.TimeField: _plain,
    models.DecimalField: _decimal,
    models.UUIDField: _uuid,
    models.DurationField: _duration,
    models.BinaryField: _binary,
}
#: What each ``value_to_string`` of Django's does to a value of an
#: unprotected type, for subclasses that keep it (``None``: the value itself).
#: The date and time ones are only reached for values that are not dates.
_BY_VALUE_TO_STRING: dict[Any, Converter | None] = {
    Field.value_to_string: _plain,
    models.DateField.value_to_string: _plain,
    models.DateTimeField.value_to_string: _plain,
    models.TimeField.value_to_string: _plain,
    models.JSONField.value_to_string: None,
    models.BinaryField.value_to_string: _binary,
    models.DurationField.value_to_string: _duration,
}
#: Descriptors that store and return the value as it was read.
_PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


def value_converter(model: type[Model], field: Any) -> Converter | None:
    """How the serializer's ``_value_from_field`` turns ``field``'s read value
    into what it writes: ``None`` when it writes it as read, ``_by_instance``
    when only a model instance tells."""
    descriptor = type(inspect.getattr_static(model, field.attname, None))
    kind = type(field)
    if kind.value_from_object is not Field.value_from_object:
        return _by_instance
    if field.remote_field is not None:  # the raw id: protected, or str() of it
        if descriptor not in _PLAIN_DESCRIPTORS or (
            kind.value_to_string is not Field.value_to_string
        ):
            return _by_instance
        return _reference_converter(field)
    if isinstance(field, models.FileField):
        # The instance holds a FieldFile, whose str() is its name or "".
        plain_file = (
            descriptor in (FileDescriptor, ImageFileDescriptor)
            and kind.value_to_string is Field.value_to_string
            and field.attr_class.__str__ is FieldFile.__str__
            and field.attr_class.__init__ is FieldFile.__init__
        )
        return _file if plain_file else _by_instance
    if descriptor not in _PLAIN_DESCRIPTORS:
        return _by_instance
    if kind in _AS_READ:
        return None
    if kind in _BUILT_IN:
        return _BUILT_IN[kind]
    return _BY_VALUE_TO_STRING.get(kind.value_to_string, _by_instance)


def _reference_converter(field: Any) -> Converter | None:
    """The converter of a foreign key's raw value (``Field.value_to_string``)."""
    target = field.target_field
    while target.remote_field is not None:
        target = target.target_field
    kind = type(target)
    if kind in _AS_READ and kind is not models.JSONField:
        return None
    return {
        models.DateTimeField: _datetime,
        models.DateField: _date,
        models.DecimalField: _decimal,
        models.UUIDField: _uuid,
    }.get(kind, _plain)


class NaturalKeys:
    """``natural_key()`` of the rows a dump refers to, fetched by batch.

    One table per referenced model and column (its primary key, or the
    ``to_field`` of a foreign key), each mapping a value to the natural key
    (and ``None`` to ``None``). Past :data:`NATURAL_KEYS_CACHED` entries,
    the largest tables forget their oldest keys at the start of the next
    batch, a quarter of the bound in all: a batch never loses the keys it
    fetched, and memory stays flat.
    """

    def __init__(self, using: str, anonymizer: Anonymizer | None = None) -> None:
        """
        :param anonymizer: applied to each object before its natural key is
            read, so a key holds the fakes the object's own row holds.
        """
        self.using = using
        self.anonymizer = anonymizer
        self.tables: dict[tuple[type[Model], str], dict[Any, Any]] = {}
        self.size = 0

    def table(self, model: type[Model], attname: str) -> dict[Any, Any]:
        """The table of ``model`` by ``attname``; it stays the same object."""
        return self.tables.setdefault((model, attname), {None: None})

    def start_batch(self) -> None:
        """Past the bound, forget the oldest keys of the largest tables, down
        to three quarters of the bound: a small table (content types, users)
        is read again and again, a large one mostly once."""
        if self.size <= NATURAL_KEYS_CACHED:
            return
        excess = self.size - NATURAL_KEYS_CACHED * 3 // 4
        for table in sorted(self.tables.values(), key=len, reverse=True):
            oldest = list(itertools.islice(table, min(excess, len(table))))
            for value in oldest:
                del table[value]
            table[None] = None
            excess -= len(oldest)
            if excess <= 0:
                break
        self.size = sum(len(table) for table in self.tables.values())

    def fetch(self, model: type[Model], attname: str, values: Iterable[Any]) -> None:
        """Make sure the table of ``model`` by ``attname`` holds ``values``."""
        table = self.table(model, attname)
        missing = {value for value in values if value not in table}
        if not missing:
            return
        rows = own_rows(model._base_manager.db_manager(self.using).all())
        joined = natural_key_relations(model)
        if joined:
            rows = rows.select_related(*joined)
        field = model._meta.get_field(attname)
        anonymize = self.anonymizer is not None and self.anonymizer.reads_rules(model)
        wanted = list(missing)
        size = in_list_size(connections[self.using])
        for start in range(0, len(wanted), size):
            chunk = wanted[start : start + size]
            # The field's own table: a child model's query joins its parent's.
            for obj in where_in(rows, field.model._meta.db_table, field, chunk):
                value = getattr(obj, attname)  # read before anonymizing
                # The serializer writes null for a related object that is false.
                table[value] = self._natural_key(obj, anonymize) if obj else None
        for value in missing - table.keys():
            # Equal for the database but not for Python (a case-insensitive
            # collation): the serializer's own lookup finds it.
            try:
                obj = rows.get(**{attname: value})
            except model.DoesNotExist:
                raise SerializationError(
                    f"{model._meta.label_lower} with {attname}={value!r} is referred "
                    "to but does not exist"
                ) from None
            table[value] = self._natural_key(obj, anonymize) if obj else None
        self.size += len(missing)

    def _natural_key(self, obj: Model, anonymize: bool) -> Any:
        """``obj``'s natural key; ``anonymize`` when it may read a field with
        rules (:meth:`~diskette.anonymize.Anonymizer.reads_rules`)."""
        if anonymize:
            self.anonymizer.natural(obj)  # type: ignore[union-attr]
        return obj.natural_key()


def in_list_size(connection: Any) -> int:
    """Values one ``IN`` list may hold on ``connection``, at most :data:`BATCH_ROWS`."""
    limits = (connection.ops.max_in_list_size(), connection.features.max_query_params)
    return min([BATCH_ROWS, *(limit for limit in limits if limit)])


def where_in(
    rows: QuerySet[Any], table: str, field: Any, values: list[Any]
) -> QuerySet[Any]:
    """``rows`` whose ``table.column`` of ``field`` is one of ``values``.

    The SQL ``field__in=values`` writes, without the preparation Django
    gives each value of such a list, which here took longer than the query.
    """
    connection = connections[rows.db]
    quote = connection.ops.quote_name
    target = field
    while target.remote_field is not None:
        target = target.target_field
    if type(target) not in _INTEGERS:
        values = [field.get_db_prep_value(value, connection) for value in values]
    placeholders = ", ".join(["%s"] * len(values))
    condition = f"{quote(table)}.{quote(field.column)} IN ({placeholders})"
    return rows.extra(where=[condition], params=values)


#: The name given to the through table's primary key in a many-to-many query.
_LINK = "_diskette_link"


class ManyToMany:
    """The values of one many-to-many field for a batch of owners.

    The serializer reads them through the related manager: the related
    model's default manager, in its ordering (``Meta.ordering``), else in
    whatever order the database gives, which is not fixed but is in practice
    the through table's: SQLite and MySQL read its unique index on (owner,
    related), so the related primary keys come in order, PostgreSQL reads
    its rows in the order they were added. Here that order is asked for,
    after the model's own. One query per batch gives the values of every
    owner of the batch.
    """

    def __init__(self, field: Any, using: str, naturals: NaturalKeys | None) -> None:
        self.name = field.name
        self.related = related = field.remote_field.model
        self.naturals = naturals
        self.pk_attname = related._meta.pk.attname
        self.convert = value_converter(related, related._meta.pk)
        self.query_name = field.related_query_name()
        through = field.remote_field.through._meta
        self.through_table = through.db_table
        self.owner_field = through.get_field(field.m2m_field_name())
        rows = own_rows(related._default_manager.db_manager(using).all())
        query = rows.query
        ordering = list(query.order_by)
        if not ordering and query.default_ordering:
            ordering = list(related._meta.ordering)
        connection = connections[using]
        if connection.vendor == "postgresql":
            # The through table's primary key, read from the join that the
            # filter on the owners makes (as prefetch_related reads its owner).
            quote = connection.ops.quote_name
            link = f"{quote(through.db_table)}.{quote(through.pk.column)}"
            rows = rows.extra(select={_LINK: link})
            ordering.append(_LINK)
        self.rows = rows.order_by(*ordering, self.pk_attname)

    def values(self, owners: list[Any], *, whole: bool) -> dict[Any, list[Any]]:
        """Each owner's list of values, by the owner's primary key as read.

        :param owners: primary keys in increasing order.
        :param whole: whether ``owners`` are all the rows between the first
            and the last (the manager hides none): the range says it all.
        """
        name, connection = self.query_name, connections[self.rows.db]
        pairs: list[tuple[Any, Any]] = []
        size = len(owners) if whole else in_list_size(connection)
        for start in range(0, len(owners), size):
            chunk = owners[start : start + size]
            # The range joins the through table and bounds the read; the list
            # leaves out the owners in that range the manager does not show.
            rows = self.rows.filter(**{f"{name}__gte": chunk[0], f"{name}__lte": chunk[-1]})
            if not whole:
                rows = where_in(rows, self.through_table, self.owner_field, chunk)
            pairs += rows.values_list(name, "pk")
        if self.naturals is not None:
            self.naturals.fetch(self.related, self.pk_attname, (pk for _, pk in pairs))
            convert = self.naturals.table(self.related, self.pk_attname).__getitem__
        elif self.convert is None:
            convert = _same
        else:
            convert = self.convert
        grouped: dict[Any, list[Any]] = {}
        for owner, pk in pairs:
            values = grouped.get(owner)
            if values is None:
                values = grouped[owner] = []
            values.append(convert(pk))
        return grouped


def _same(value: Any) -> Any:
    return value


class ModelRows:
    """The rows of one model, read by batch and written as JSON lines."""

    def __init__(
        self,
        model: type[Model],
        rows: QuerySet[Any],
        *,
        using: str,
        naturally: Callable[[Any], bool],
        natural_primary: bool,
        naturals: NaturalKeys,
        anonymizer: Anonymizer | None = None,
    ) -> None:
        """
        :param rows: the model's rows to dump, through the manager it is dumped
            with (no ordering needed).
        :param naturally: whether a relation field is written by natural key.
        :param anonymizer: replaces the values of the fields it has rules
            for, as read, before anything else looks at them.
        """
        opts = model._meta.concrete_model._meta
        self.model, self.using, self.naturals = model, using, naturals
        self.label = model._meta.label_lower
        self.with_pk = not (natural_primary and hasattr(model, "natural_key"))
        pk = opts.pk
        # A child's parent link is its primary key: with natural primary keys
        # the serializer writes it as a field, else the object would not load.
        pk_parent = (
            pk
            if natural_primary and pk.remote_field and pk.remote_field.parent_link
            else None
        )
        fields = [f for f in opts.local_fields if f.serialize or f is pk_parent]
        self.names = [f.name for f in fields]
        self.attnames = [f.attname for f in fields]
        if pk.attname not in self.attnames:
            self.attnames.append(pk.attname)
        self.pk_index = self.attnames.index(pk.attname)
        self.pk_attname = pk.attname
        self.pk_convert = value_converter(model, pk)
        self.converters: list[tuple[int, Converter]] = []
        self.by_instance: list[tuple[int, Any]] = []
        #: (column, referenced model, attname) of natural foreign keys.
        self.natural_columns: list[tuple[int, type[Model], str]] = []
        for index, field in enumerate(fields):
            if field.remote_field is not None and naturally(field):
                related, attname = field.remote_field.model, field.target_field.attname
                self.natural_columns.append((index, related, attname))
                table = naturals.table(related, attname)
                self.converters.append((index, table.__getitem__))
                continue
            convert = value_converter(model, field)
            if convert is _by_instance:
                self.by_instance.append((index, field))
            elif convert is not None:
                self.converters.append((index, convert))
        #: (column, function) of the fields to anonymize; a natural foreign
        #: key's column is looked up as read, its key anonymized by ``naturals``.
        natural = {index for index, _, _ in self.natural_columns}
        self.masks: list[tuple[int, Callable[[Any], Any]]] = [
            (self.attnames.index(field.attname), function)
            for field, function in (anonymizer.functions(model) if anonymizer else ())
            if field.attname in self.attnames
            and self.attnames.index(field.attname) not in natural
        ]
        self.many_to_many = [
            ManyToMany(f, using, naturals if naturally(f) else None)
            for f in opts.local_many_to_many
            if f.serialize and f.remote_field.through._meta.auto_created
        ]
        self.rows = rows.order_by(pk.attname).values_list(*self.attnames)
        #: Whether a batch holds every row between its first and its last.
        self.whole = not rows.query.where
        # Model.from_db takes the values in the order of the model's fields.
        concrete = [f.attname for f in model._meta.concrete_fields]
        self.instance_order = sorted(
            range(len(self.attnames)), key=lambda i: concrete.index(self.attnames[i])
        )

    @staticmethod
    def supports(model: type[Model]) -> bool:
        """Whether rows tell all the serializer writes of ``model`` (else the
        serializer itself writes it): every written field a column, and
        primary keys that need no instance."""
        opts = model._meta.concrete_model._meta
        pk = opts.pk
        if pk is None or pk.column is None or value_converter(model, pk) is _by_instance:
            return False
        if any(f.column is None for f in opts.local_fields if f.serialize):
            return False
        return all(
            value_converter(f.remote_field.model, f.remote_field.model._meta.pk)
            is not _by_instance
            for f in opts.local_many_to_many
            if f.serialize and f.remote_field.through._meta.auto_created
        )

    def batches(self) -> Iterator[list[tuple[Any, ...]]]:
        """The rows, :data:`BATCH_ROWS` at a time, by keyset pagination."""
        page = self.rows
        while True:
            batch = list(page[:BATCH_ROWS])
            if batch:
                yield batch
            if len(batch) < BATCH_ROWS:
                return
            page = self.rows.filter(pk__gt=batch[-1][self.pk_index])

    def lines(self, batch: list[tuple[Any, ...]], encode: Callable[[Any], str]) -> str:
        """The JSON lines of ``batch``, each ended by a newline."""
        naturals = self.naturals
        naturals.start_batch()
        for index, related, attname in self.natural_columns:
            naturals.fetch(related, attname, (row[index] for row in batch))
        pk_index = self.pk_index
        many = [
            (m.name, m.values([row[pk_index] for row in batch], whole=self.whole))
            for m in self.many_to_many
        ]
        names, converters, by_instance = self.names, self.converters, self.by_instance
        label, with_pk, pk_convert = self.label, self.with_pk, self.pk_convert
        masks = self.masks
        lines: list[str] = []
        append = lines.append
        for row in batch:
            values: Any = row
            if masks:  # the primary key is never masked: row[pk_index] holds
                values = list(row)
                for index, mask in masks:
                    values[index] = mask(values[index])
            if converters or by_instance:
                read = values
                values = list(read)
                for index, convert in converters:
                    values[index] = convert(values[index])
                if by_instance:
                    instance = self.instance(read)
                    for index, field in by_instance:
                        values[index] = _from_instance(instance, field)
            fields = dict(zip(names, values, strict=False))  # not the pk after them
            for name, grouped in many:
                fields[name] = grouped.get(row[pk_index], ())
            if not with_pk:
                append(encode({"model": label, "fields": fields}))
            elif pk_convert is None:
                append(encode({"model": label, "pk": row[pk_index], "fields": fields}))
            else:
                append(
                    encode(
                        {"model": label, "pk": pk_convert(row[pk_index]), "fields": fields}
                    )
                )
        append("")
        return "\n".join(lines)

    def instance(self, row: Sequence[Any]) -> Model:
        """The instance the serializer would have been given for ``row``."""
        order = self.instance_order
        return self.model.from_db(
            self.using, [self.attnames[i] for i in order], [row[i] for i in order]
        )


def _from_instance(obj: Model, field: Any) -> Any:
    """The serializer's ``_value_from_field``, for a field no converter knows."""
    value = field.value_from_object(obj)
    return value if is_protected_type(value) else field.value_to_string(obj)


def line_encoder() -> Callable[[Any], str]:
    """Encodes one object as ``jsonl.Serializer`` does, at the C encoder's speed.

    ``json.dump`` (what the serializer calls) always takes the pure Python
    encoder, and ``JSONEncoder.encode`` sets the C one up anew for each
    object, which costs more than the encoding of a row: the C encoder is
    made once, and used only if it writes what ``encode`` writes.
    """
    encoder = ExactJSONEncoder(separators=(",", ": "), ensure_ascii=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    try:
        iterencode = make(
            None,  # no check for cycles: rows and natural keys have none
            encoder.default,
            json.encoder.encode_basestring,
            None,
            encoder.key_separator,
            encoder.item_separator,
            False,
            False,
            True,
        )

        def encode(obj: Any) -> str:
            return "".join(iterencode(obj, 0))

        sample = {"a": [1, 2.5, None, True, 'é\n"', {"b": ()}], "c": decimal.Decimal("1.0")}
        if encode(sample) == encoder.encode(sample):
            return encode
    except Exception:  # another Python's private API: the public one will do
        pass
    return encoder.encode
