"""Opt-in fast loading of JSON Lines data (``diskette_load --fast``).

``loaddata`` saves objects one at a time and looks every natural foreign key
up with its own query. This path reads the same files, line by line, and
writes the same rows, but:

- natural keys are resolved through a cache: the first lookup into a model
  reads all of that model's natural keys in one query (joining what they
  read), later misses query one key; it holds one small bytes object a
  referenced row (about 130 bytes), the one part of the peak that grows
  with the data;
- objects are inserted with ``bulk_create`` in batches, many-to-many rows too.

What it cannot batch it loads as ``loaddata`` does, one object at a time,
and says so at verbosity 2: rows of a multi-table inherited model (a
``Restaurant(Place)``, every django-polymorphic child), which
``bulk_create`` refuses. Forward references by natural key (an object
naming one that comes later in the files) are handled as ``loaddata``
handles them: the field is set once everything else is written (each such
object waits in memory until then). Over rows that exist (``--overwrite``)
natural keys are looked up one by one, since the load may move them, and
a loaded object's many-to-many links are replaced, as ``set()`` does. Where the
database cannot update a row on a primary key conflict (MySQL names no
conflict target), rows that exist already are updated one by one.

What differs, and why it is opt-in: no ``pre_save``/``post_save`` or
``m2m_changed`` signals are sent for batched rows (``loaddata`` sends them
with ``raw=True``), and models' ``save()`` methods are not called. Like
``loaddata``, it runs with constraint checks deferred, checks them at the
end, and resets sequences; the caller holds the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.core.management.color import no_style
from django.core.serializers.base import DeserializedObject
from django.core.serializers.json import DjangoJSONEncoder
from django.core.serializers.python import Deserializer as PythonDeserializer
from django.db import connections
from django.db.models import Model, QuerySet

from .data import natural_relations, own_rows
from .exceptions import LoadError
from .trust import json_objects

#: Called with a serialized object and its data file; raises to refuse it.
Checker = Callable[[Any, str], None]
#: Called with a message for a person who asked for details (verbosity 2).
Note = Callable[[str], None]

BATCH_SIZE = 2000


#: What :meth:`_Loader.pk_of` answers for a natural key no row has yet.
_UNKNOWN = object()


class _Loader:
    def __init__(
        self,
        using: str,
        ignorenonexistent: bool = False,
        check: Checker | None = None,
        note: Note | None = None,
        overwrite: bool = False,
    ) -> None:
        self.using = using
        #: Loading over rows that exist: natural keys may change under the
        #: cache, and links the data does not list must go.
        self.overwrite = overwrite
        #: Per auto-created through table, the objects whose links the data lists.
        self.relinked: dict[Any, tuple[str, list[Any]]] = {}
        self.ignorenonexistent = ignorenonexistent
        self.check = check
        self.note = note or _ignore
        self.pending: dict[type[Model], list[Model]] = defaultdict(list)
        self.links: dict[Any, list[Model]] = defaultdict(list)
        self.keys: dict[type[Model], dict[bytes, Any]] = {}
        self.models: set[type[Model]] = set()
        #: Objects waiting for a forward reference, with where they were read.
        self.deferred: list[tuple[DeserializedObject, str, int]] = []
        #: Models loaded one object at a time, each named once at verbosity 2.
        self.one_by_one: set[type[Model]] = set()
        # Queries logged before the load are the caller's (a test capturing
        # queries, say): only the ones the load adds are dropped.
        self.logged_before = len(connections[using].queries_log)

    def load(self, path: Path, member: str) -> None:
        for number, data in json_objects(path, member):
            if self.check is not None:
                self.check(data, member)  # before anything of it is written
            try:
                self.add(data, member, number)
            except Exception as exc:  # one line names the file, the line, the cause
                raise LoadError(
                    f"data '{member}' line {number} could not be loaded: {exc}"
                ) from exc
        try:
            self.flush()
        except Exception as exc:
            raise LoadError(
                f"data '{member}' (its last rows) could not be loaded: {exc}"
            ) from exc

    def add(self, data: dict[str, Any], member: str, number: int) -> None:
        try:
            model = apps.get_model(data["model"])
        except LookupError:
            if self.ignorenonexistent:  # as loaddata --ignorenonexistent does
                return
            raise
        if "pk" not in data and "id" not in data.get("fields", {}):
            raise LoadError(
                f"{data['model']} objects have no primary key (natural_primary): "
                "load without --fast"
            )
        self.resolve(model, data["fields"])
        (deserialized,) = PythonDeserializer(
            [data],
            using=self.using,
            ignorenonexistent=self.ignorenonexistent,
            handle_forward_references=True,
        )
        self.models.add(model)
        if deserialized.deferred_fields:
            _refuse_empty(deserialized.deferred_fields)
            self.deferred.append((deserialized, member, number))
        if not batchable(model):
            self.save_one(model, deserialized)
            return
        self.pending[model].append(deserialized.object)
        for name, values in (deserialized.m2m_data or {}).items():
            field = model._meta.get_field(name)
            through = field.remote_field.through
            if not through._meta.auto_created:
                continue
            source, target = field.m2m_field_name(), field.m2m_reverse_field_name()
            if self.overwrite:  # as loaddata's set(): the data's links, no others
                self.relinked.setdefault(through, (f"{source}_id", []))[1].append(
                    deserialized.object.pk
                )
            for value in values:
                self.links[through].append(
                    through(
                        **{f"{source}_id": deserialized.object.pk, f"{target}_id": value}
                    )
                )
        if len(self.pending[model]) >= BATCH_SIZE:
            self.flush()

    def save_one(self, model: type[Model], deserialized: DeserializedObject) -> None:
        """Save as ``loaddata`` does: this table's row only, many-to-many too."""
        if model not in self.one_by_one:
            self.one_by_one.add(model)
            self.note(
                f"{model._meta.label}: multi-table inheritance, loaded one object "
                "at a time (bulk inserts cannot write a child table alone)"
            )
        deserialized.save(using=self.using)

    def resolve(self, model: type[Model], fields: dict[str, Any]) -> None:
        """Replace natural keys in ``fields`` by primary keys, from the cache.

        A key no row has yet is left as it is: the deserializer defers the
        field, which :meth:`finish` sets once every file is written.
        """
        for name, value in fields.items():
            if not isinstance(value, list) or not value:
                continue
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                continue  # the deserializer refuses it, or ignores it if asked to
            if not field.is_relation or not _refers_to_pk(field):
                continue  # a list of values, or a to_field: the deserializer reads it
            related = field.related_model
            if field.many_to_many and isinstance(value[0], list):
                keys = [self.pk_of(related, key) for key in value]
                if _UNKNOWN not in keys:
                    fields[name] = keys
            elif (field.many_to_one or field.one_to_one) and not isinstance(value[0], list):
                key = self.pk_of(related, value)
                if key is not _UNKNOWN:
                    fields[name] = key

    def pk_of(self, model: type[Model], key: list[Any]) -> Any:
        """The primary key of the ``model`` row with natural ``key``, or :data:`_UNKNOWN`."""
        packed = pack(key)
        if self.overwrite or packed not in self.keys.get(model, {}):
            # The row, or one its natural key joins, may sit in a batch.
            self.flush()
        if self.overwrite:  # rows may change keys under a cache: ask each time
            return self.lookup(model, key)
        known = self.keys.get(model)
        if known is None:
            known = self.keys[model] = dict(self._all_keys(model))
        if packed not in known:
            found = self.lookup(model, key)
            if found is _UNKNOWN:
                return found
            known[packed] = found
        return known[packed]

    def lookup(self, model: type[Model], key: list[Any]) -> Any:
        """One natural key, queried: its row's primary key, or :data:`_UNKNOWN`."""
        manager = model._default_manager.db_manager(self.using)
        try:
            return manager.get_by_natural_key(*key).pk
        except ObjectDoesNotExist:  # the model's, or one its key looks up
            return _UNKNOWN

    def _all_keys(self, model: type[Model]) -> Iterator[tuple[bytes, Any]]:
        rows = own_rows(model._default_manager.db_manager(self.using).all())
        rows = rows.select_related(*natural_relations(model))
        for obj in rows.iterator(chunk_size=BATCH_SIZE):
            yield pack(obj.natural_key()), obj.pk

    def flush(self) -> None:
        for model, objects in list(self.pending.items()):
            if objects:
                _upsert(model, objects, self.using)
                objects.clear()
        for through, (column, owners) in self.relinked.items():
            if owners:
                QuerySet(model=through, using=self.using).filter(
                    **{f"{column}__in": owners}
                ).delete()
                owners.clear()
        for through, rows in list(self.links.items()):
            if rows:
                manager = through._base_manager.db_manager(self.using)
                manager.bulk_create(rows, BATCH_SIZE, ignore_conflicts=True)
                rows.clear()
        # With DEBUG on, as on the laptops loads are for, Django keeps the
        # last 9,000 queries, and each batch insert is kilobytes of SQL: 16 MB
        # at 200,000 rows, growing with them. Nobody reads those here.
        log = connections[self.using].queries_log
        while len(log) > self.logged_before:
            log.pop()

    def finish(self) -> None:
        """Write what waits, then set the fields that referred forward."""
        self.flush()
        if self.deferred:
            count = sum(len(d.deferred_fields) for d, _, _ in self.deferred)
            self.note(f"{count} forward references by natural key set last")
        for deserialized, member, number in self.deferred:
            try:
                deserialized.save_deferred_fields(using=self.using)
            except Exception as exc:
                raise LoadError(
                    f"data '{member}' line {number} could not be loaded: {exc}"
                ) from exc


def _refuse_empty(deferred: dict[Any, Any]) -> None:
    """Refuse a forward reference the row cannot wait for.

    A deferred field is written empty, then set at the end: a column that
    may not be empty refuses that at once (``loaddata`` fails there too).
    """
    for field, key in deferred.items():
        if not field.many_to_many and not field.null:
            raise LoadError(
                f"{field.related_model._meta.label} {key!r} does not exist (yet): it is "
                f"missing, or comes later in the data, and {field.model._meta.label}."
                f"{field.name} cannot be empty meanwhile"
            )


def batchable(model: type[Model]) -> bool:
    """Whether ``bulk_create`` writes ``model``: not for a multi-table child."""
    concrete = model._meta.concrete_model
    return all(p._meta.concrete_model is concrete for p in model._meta.get_parent_list())


def pack(key: list[Any] | tuple[Any, ...]) -> bytes:
    """A natural key as the cache holds it: its JSON, as one bytes object.

    The cache holds a key per referenced row (all of a model's, once one is
    looked up), so its size is what grows with the data: one bytes object
    takes less than half of a tuple of strings. JSON keeps keys apart that
    differ (``None`` and ``"None"``) and spells dates as the file does; a key
    the file spells otherwise than the database only misses the cache, and
    is looked up with a query.
    """
    return _encode_key(key).encode()


class _KeyEncoder(DjangoJSONEncoder):
    """Django's encoder, and ``repr`` for what it cannot encode.

    Keys from the file are JSON already; a ``natural_key()`` may return what
    JSON has no form for (bytes, say). Such a key can only miss the cache,
    and a miss is looked up with ``get_by_natural_key``, never refused.
    """

    def default(self, o: Any) -> Any:
        try:
            return super().default(o)
        except TypeError:
            return repr(o)


#: One encoder for every key: ``json.dumps`` with options builds one a call,
#: and a load packs a key per foreign key of every row.
_encode_key = _KeyEncoder(separators=(",", ":")).encode


def _upsert(model: type[Model], objects: list[Model], using: str) -> None:
    """Insert ``objects``, updating rows whose primary key exists already.

    That is what ``loaddata``'s ``save()`` does: ``migrate`` creates some rows
    (the default site) that a dump carries too. Rows are written through a
    plain queryset: a model's own manager may change what ``bulk_create``
    does (django-polymorphic's drops the conflict options). MySQL updates on
    a conflict with any unique key, not with a named one: there, the rows
    that may exist are saved one by one as ``loaddata`` saves them (update,
    else insert), which is rare (the default site), and the others inserted
    in one batch.
    """
    pk = model._meta.pk
    fields = [f.name for f in model._meta.concrete_fields if not f.primary_key]
    rows = QuerySet(model=model, using=using)
    if not fields:
        rows.bulk_create(objects, BATCH_SIZE, ignore_conflicts=True)
    elif connections[using].features.supports_update_conflicts_with_target:
        rows.bulk_create(
            objects,
            BATCH_SIZE,
            update_conflicts=True,
            unique_fields=[pk.name],
            update_fields=fields,
        )
    else:
        found = rows.filter(pk__in=[o.pk for o in objects]).values_list("pk", flat=True)
        existing = {_collated(key) for key in found}
        new = []
        for obj in objects:
            if _collated(obj.pk) in existing:
                obj.save_base(raw=True, using=using)
            else:
                new.append(obj)
        rows.bulk_create(new, BATCH_SIZE)


def _collated(key: Any) -> Any:
    """A primary key as a case-insensitive, trailing-space-blind collation
    compares it: a text key the database holds in another case is saved,
    not inserted twice. Saving a row that turns out new inserts it."""
    return key.casefold().rstrip(" ") if isinstance(key, str) else key


def _refers_to_pk(field: Any) -> bool:
    """Whether ``field`` stores its target's primary key (no ``to_field``)."""
    target = field.remote_field.field_name if not field.many_to_many else None
    return target is None or target == field.related_model._meta.pk.name


def fast_load(
    paths: list[tuple[Path, str]],
    using: str,
    before: Callable[[str], None] = print,
    ignorenonexistent: bool = False,
    check: Checker | None = None,
    note: Note | None = None,
    overwrite: bool = False,
) -> None:
    """Load JSON Lines files ``(path, member name)`` in order, in batches.

    :param before: called with each member name before it loads.
    :param check: called with each object and its member name before it is
        added; raises to refuse it (:meth:`diskette.trust.ModelPolicy.check`).
    :param note: called with what a person asking for details should know
        (models loaded one object at a time, forward references).
    :param overwrite: the tables may hold rows already (``--overwrite``):
        natural keys are looked up one by one rather than cached, and a
        loaded object's many-to-many links are replaced, as ``loaddata`` does.
    The caller holds the transaction; on any error nothing it wrote stays.
    """
    connection = connections[using]
    loader = _Loader(using, ignorenonexistent, check, note, overwrite)
    if connection.vendor == "postgresql":
        # Django's foreign keys there are deferrable, deferred unless the
        # transaction said otherwise; rows refer to rows later in the files
        # (a child table's row to its parent's, still in a batch).
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    with connection.constraint_checks_disabled():
        for path, member in paths:
            before(member)
            loader.load(path, member)
        loader.finish()
    tables = [model._meta.db_table for model in loader.models]
    connection.check_constraints(table_names=tables)
    statements = connection.ops.sequence_reset_sql(no_style(), list(loader.models))
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


def _ignore(message: str) -> None:
    """Details nobody asked for."""
