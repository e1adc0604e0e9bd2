"""The load of JSON Lines data: batched rows, with ``loaddata``'s semantics.

``loaddata`` builds and saves one model instance per object and looks every
natural foreign key up with its own query: a few hundred rows a second.
This path reads the same files, line by line, and writes the same rows:

- each object becomes the row the database receives, without a model
  instance where none is observable (:mod:`diskette.modelplan`), and rows
  are written a batch at a time: ``COPY`` on PostgreSQL, one
  ``executemany`` elsewhere (:mod:`diskette.inserts`); a row whose primary
  key exists already (the default site ``migrate`` made) is updated, as
  ``save()`` would;
- natural keys are resolved through a cache: the first lookup into a model
  reads all of that model's natural keys in one query (joining what they
  read), later misses query one key; it holds one short string a row of
  each referenced model (about 100 bytes), the one part of the peak that grows
  with the data.

What ``loaddata`` does that a receiver or a model could observe, it does
too: ``pre_save``/``post_save`` with ``raw=True`` (``created`` as a save
would say) and ``m2m_changed``, in the same order, for the models that have
receivers; instances built through the deserializer where init receivers or
unusual fields want one; models' ``save()`` never called. Objects it cannot
batch it saves one at a time exactly as ``loaddata`` does, and says why at
verbosity 2 (multi-table inheritance, receivers of both save signals).
Forward references by natural key (an object naming one that comes later in
the files) are handled as ``loaddata`` handles them: the field is set once
everything else is written (each such object waits in memory until then).
Over rows that exist (``--overwrite``) natural keys are looked up one by
one, since the load may move them, and a loaded object's many-to-many
links are replaced, as ``set()`` does. Like ``loaddata``, it runs with
constraint checks deferred, checks them at the end, and resets sequences;
the caller holds the transaction.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.management.color import no_style
from django.core.serializers.base import DeserializedObject
from django.core.serializers.json import DjangoJSONEncoder
from django.core.serializers.python import Deserializer as PythonDeserializer
from django.db import connections
from django.db.models import Model, QuerySet, signals

from .exceptions import LoadError
from .inserts import LateForeignKeys, existing_keys, insert_rows, update_rows
from .modelplan import Link, ModelPlan, Unusual
from .rows import natural_key_relations, own_rows
from .trust import json_objects

#: Called with a serialized object and its data file; raises to refuse it.
Checker = Callable[[Any, str], None]
#: Called with a message for a person who asked for details (verbosity 2).
Note = Callable[[str], None]

BATCH_SIZE = 2000


#: What :meth:`_Loader.pk_of` answers for a natural key no row has yet.
_UNKNOWN = object()


class _Pending:
    """One model's objects waiting for their batch to be written.

    Rows built from data come with no instance; deserialized objects keep
    theirs, whose row is taken once ``pre_save`` receivers have seen it.
    """

    def __init__(self) -> None:
        self.rows: list[list[Any] | None] = []
        self.objects: list[Model | None] = []
        #: The batch's primary keys as the database compares them: a key
        #: seen twice writes the batch first, so the second is an update.
        self.keys: set[Any] = set()

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, key: Any, row: list[Any] | None, obj: Model | None) -> None:
        self.rows.append(row)
        self.objects.append(obj)
        self.keys.add(key)

    def clear(self) -> None:
        self.rows.clear()
        self.objects.clear()
        self.keys.clear()


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
        self.connection = connections[using]
        self.mysql = self.connection.vendor == "mysql"
        #: Loading over rows that exist: natural keys may change under the
        #: cache, and links the data does not list must go.
        self.overwrite = overwrite
        self.ignorenonexistent = ignorenonexistent
        self.check = check
        self.note = note or _ignore
        self.plans: dict[type[Model], ModelPlan] = {}
        self.by_label: dict[str, ModelPlan] = {}
        self.pending: dict[type[Model], _Pending] = {}
        #: Many-to-many rows to write, by auto-created table.
        self.links: dict[Any, list[tuple[Any, Any]]] = defaultdict(list)
        #: Per auto-created table, the objects whose links the data lists
        #: (``--overwrite``: their other links go, as ``set()`` removes them).
        self.relinked: dict[Link, list[Any]] = defaultdict(list)
        self.keys: dict[type[Model], dict[str, Any]] = {}
        self.models: set[type[Model]] = set()
        #: Tables written to, for the constraint check at the end.
        self.tables: set[str] = set()
        self.late_keys = LateForeignKeys(self.connection)
        #: The data file being read, and the lines of the objects written
        #: since the last batch, for its errors.
        self.member = ""
        self.line = self.last_line = 0
        self.first_line: int | None = None
        #: Objects waiting for a forward reference, with where they were read.
        self.deferred: list[tuple[DeserializedObject, str, int]] = []
        # Queries logged before the load are the caller's (a test capturing
        # queries, say): only the ones the load adds are dropped.
        self.logged_before = len(self.connection.queries_log)

    def load(self, path: Path, member: str) -> None:
        for number, data in json_objects(path, member):
            if self.check is not None:
                self.check(data, member)  # before anything of it is written
            self.member = member
            try:
                self.add(data, member, number)
            except _BatchFailed:  # names the rows written together, and why
                raise
            except Exception as exc:  # one line names the file, the line, the cause
                raise LoadError(
                    f"data '{member}' line {number} could not be loaded: {exc}"
                ) from exc
        self.flush()

    def plan(self, model: type[Model]) -> ModelPlan:
        plan = self.plans.get(model)
        if plan is None:
            plan = self.plans[model] = ModelPlan.of(model, self.connection)
            if plan.one_by_one:
                self.note(
                    f"{model._meta.label}: {plan.one_by_one}: loaded one object at a time"
                )
            self.models.add(model)
            for table in [plan.table, *(link.table for link in plan.links.values())]:
                self.tables.add(table)
                self.late_keys.drop(table)
        return plan

    def add(self, data: dict[str, Any], member: str, number: int) -> None:
        self.line = number
        plan = self.by_label.get(data["model"])
        if plan is None:
            try:
                model = apps.get_model(data["model"])
            except LookupError:
                if self.ignorenonexistent:  # as loaddata --ignorenonexistent does
                    return
                raise
            plan = self.by_label[data["model"]] = self.plan(model)
        fields = data.get("fields", {})
        self.resolve(plan, fields)
        if data.get("pk") is not None and not plan.one_by_one and not plan.instances:
            try:
                row = plan.row(data["pk"], fields, self.ignorenonexistent)
            except Unusual:
                pass  # the deserializer reads it, below
            else:
                self.queue(plan, row, None, fields)
                return
        (deserialized,) = PythonDeserializer(
            [data],
            using=self.using,
            ignorenonexistent=self.ignorenonexistent,
            handle_forward_references=True,
        )
        if deserialized.deferred_fields:
            _refuse_empty(deserialized.deferred_fields)
            self.deferred.append((deserialized, member, number))
        obj = deserialized.object
        if plan.one_by_one or obj.pk is None or _has_expression(plan, obj):
            self.save_one(plan, deserialized)
            return
        m2m = {
            name: values
            for name, values in (deserialized.m2m_data or {}).items()
            if name in plan.links
        }
        self.queue(plan, None, obj, m2m)

    def queue(
        self,
        plan: ModelPlan,
        row: list[Any] | None,
        obj: Model | None,
        fields: dict[str, Any],
    ) -> None:
        """Add an object's row (or instance) and its links to the pending batches."""
        model = plan.model
        if (plan.pre_save or plan.post_save) and any(
            m is not model and len(p) and _signalled(self.plans[m])
            for m, p in self.pending.items()
        ):
            self.flush()  # receivers see each model's batch in file order
        pending = self.pending.setdefault(model, _Pending())
        value = row[plan.pk_index] if row is not None else _prepared_pk(plan, obj, self)
        key = self.comparable(plan, value)
        if key in pending.keys:
            self.flush()  # the same object twice: the second one updates the first
        pending.add(key, row, obj)
        if self.first_line is None:
            self.first_line = self.line
        self.last_line = self.line
        for name, link in plan.links.items():
            targets = fields.get(name)
            if not targets:
                if self.overwrite and name in fields:
                    self._relink(link, value)
                continue
            if self.overwrite:
                self._relink(link, value)
            # In the order set() adds them (a set's), so the link rows get
            # the ids loaddata gives them: archives of diskette 0.6 list the
            # link rows too, and update them by id.
            chosen = {*map(link.target, targets)}
            self.links[link] += [(value, target) for target in chosen]
            if link.symmetrical:  # and back, as set() adds them
                self.links[link] += [(target, value) for target in chosen]
        if len(pending) >= BATCH_SIZE:
            self.flush()

    def _relink(self, link: Link, owner: Any) -> None:
        self.relinked[link].append(owner)

    def save_one(self, plan: ModelPlan, deserialized: DeserializedObject) -> None:
        """Save as ``loaddata`` does: this table's row only, many-to-many too."""
        if _signalled(plan):
            self.flush()  # the signals of what came before go first
        deserialized.save(using=self.using)

    def comparable(self, plan: ModelPlan, value: Any) -> Any:
        """A primary key as the database holds it (``value``, or what a query
        returned), in a form that compares equal to its other spellings: a
        UUID as hex text or as a ``UUID``, text in the case MySQL ignores."""
        if type(value) is int:
            return value
        with contextlib.suppress(ValidationError):  # else compared as it is
            value = plan.fields[plan.pk_index].to_python(value)
        return _collated(value) if self.mysql else value

    def resolve(self, plan: ModelPlan, fields: dict[str, Any]) -> None:
        """Replace natural keys in ``fields`` by primary keys, from the cache.

        A key no row has yet is left as it is: the deserializer defers the
        field, which :meth:`finish` sets once every file is written.
        """
        for name, (related, many) in plan.references.items():
            value = fields.get(name)
            if type(value) is not list or not value:
                continue
            if many:
                if type(value[0]) is list:
                    keys = [self.pk_of(related, key) for key in value]
                    if _UNKNOWN not in keys:
                        fields[name] = keys
            elif type(value[0]) is not list:
                key = self.pk_of(related, value)
                if key is not _UNKNOWN:
                    fields[name] = key

    def pk_of(self, model: type[Model], key: list[Any]) -> Any:
        """The primary key of the ``model`` row with natural ``key``, or :data:`_UNKNOWN`."""
        packed = pack(key)
        known = self.keys.get(model)
        if known is not None:
            found = known.get(packed, _UNKNOWN)
            if found is not _UNKNOWN:
                return found
        # The row, or one its natural key joins, may sit in a batch.
        self.flush()
        if self.overwrite:  # rows may change keys under a cache: ask each time
            return self.lookup(model, key)
        if known is None:
            known = self.keys[model] = dict(self._all_keys(model))
            if packed in known:
                return known[packed]
        found = self.lookup(model, key)
        if found is not _UNKNOWN:
            known[packed] = found
        return found

    def lookup(self, model: type[Model], key: list[Any]) -> Any:
        """One natural key, queried: its row's primary key, or :data:`_UNKNOWN`."""
        manager = model._default_manager.db_manager(self.using)
        try:
            return manager.get_by_natural_key(*key).pk
        except ObjectDoesNotExist:  # the model's, or one its key looks up
            return _UNKNOWN

    def _all_keys(self, model: type[Model]) -> Iterator[tuple[str, Any]]:
        rows = own_rows(model._default_manager.db_manager(self.using).all())
        rows = rows.select_related(*natural_key_relations(model))
        for obj in rows.iterator(chunk_size=BATCH_SIZE):
            yield pack_natural(obj.natural_key()), obj.pk

    def flush(self) -> None:
        """Write every pending batch, then the links.

        :raises _BatchFailed: naming the lines of what was written together.
        """
        try:
            self._flush()
        except Exception as exc:
            if self.first_line is None:
                raise
            raise _BatchFailed(self.member, self.first_line, self.last_line, exc) from exc
        self.first_line = None

    def _flush(self) -> None:
        for model, pending in self.pending.items():
            if len(pending):
                self._write(self.plans[model], pending)
                pending.clear()
        for link, owners in self.relinked.items():
            if owners:
                links = QuerySet(model=link.through, using=self.using)
                for column in link.columns[: 2 if link.symmetrical else 1]:
                    links.filter(**{f"{column}__in": owners}).delete()
                owners.clear()
        for link, rows in self.links.items():
            if rows:
                insert_rows(
                    self.connection, link.table, link.columns, rows, ignore_conflicts=True
                )
                rows.clear()
        # With DEBUG on, as on the laptops loads are for, Django keeps the
        # last 9,000 queries: nobody reads the load's here.
        log = self.connection.queries_log
        while len(log) > self.logged_before:
            log.pop()

    def _write(self, plan: ModelPlan, pending: _Pending) -> None:
        """Write one model's batch: new rows inserted, existing ones updated,
        save signals around it as ``save_base(raw=True)`` sends them."""
        objects = pending.objects
        if plan.pre_save:
            for obj in objects:
                if obj is not None:
                    signals.pre_save.send(
                        sender=plan.model,
                        instance=obj,
                        raw=True,
                        using=self.using,
                        update_fields=None,
                    )
        rows = [
            row if row is not None else plan.row_of(obj, self.connection)
            for row, obj in zip(pending.rows, objects, strict=True)
        ]
        keys = [row[plan.pk_index] for row in rows]
        found = existing_keys(
            self.connection, plan.table, plan.columns[plan.pk_index], keys
        )
        existing = {self.comparable(plan, k) for k in found}
        compared = [self.comparable(plan, k) for k in keys] if existing else []
        if existing:
            new = [r for r, k in zip(rows, compared, strict=True) if k not in existing]
            others = [i for i in range(len(plan.columns)) if i != plan.pk_index]
            update_rows(
                self.connection,
                plan.table,
                [plan.columns[i] for i in others],
                plan.columns[plan.pk_index],
                (
                    [r[i] for i in others] + [k]
                    for r, k, c in zip(rows, keys, compared, strict=True)
                    if c in existing
                ),
            )
        else:
            new = rows
        insert_rows(self.connection, plan.table, plan.columns, new)
        for obj, key in zip(objects, keys, strict=True):
            if obj is None:
                continue
            key = self.comparable(plan, key)
            obj._state.adding, obj._state.db = False, self.using
            if plan.post_save:
                signals.post_save.send(
                    sender=plan.model,
                    instance=obj,
                    created=key not in existing,
                    update_fields=None,
                    raw=True,
                    using=self.using,
                )

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


def pack(key: list[Any]) -> str:
    """A natural key read from the file as the cache holds it: the ``repr``
    of its values.

    The cache holds a key per referenced row (all of a model's, once one is
    looked up), so its size is what grows with the data: one string takes
    less than half of a tuple of strings. ``repr`` keeps keys apart that
    differ (``None`` and ``"None"``, ``1`` and ``"1"``), at C speed.
    """
    return repr(tuple(key))


def pack_natural(key: tuple[Any, ...]) -> str:
    """What ``natural_key()`` returned, packed as :func:`pack` packs the
    file's spelling of it: a value JSON has no type for (a date) as
    Django's encoder writes it. A key the file spells otherwise than the
    database only misses the cache, and is looked up with a query."""
    if all(type(value) in _JSON_TYPES for value in key):
        return repr(tuple(key))
    return repr(
        tuple(value if type(value) in _JSON_TYPES else _spelled(value) for value in key)
    )


#: Types a value read from JSON has (lists aside): kept as they are in a key.
_JSON_TYPES = frozenset({str, int, float, bool, type(None)})


def _spelled(value: Any) -> Any:
    """``value`` as Django's JSON encoder writes it, or its ``repr``.

    A ``natural_key()`` may return what JSON has no form for (bytes, say):
    such a key can only miss the cache, and a miss is looked up with
    ``get_by_natural_key``, never refused.
    """
    try:
        return _ENCODER.default(value)
    except TypeError:
        return repr(value)


_ENCODER = DjangoJSONEncoder()


class _BatchFailed(LoadError):
    """A batch could not be written: its rows are named by their lines.

    The database says what is wrong, not which row of the batch: the
    lines written together are what the message can name.
    """

    def __init__(self, member: str, first: int, last: int, cause: Exception) -> None:
        span = f"line {first}" if first == last else f"lines {first} to {last}"
        super().__init__(
            f"data '{member}' {span} (written together) could not be loaded: {cause}"
        )


def _signalled(plan: ModelPlan) -> bool:
    """Whether receivers watch ``plan``'s model being saved."""
    return plan.pre_save or plan.post_save or bool(plan.one_by_one)


def _has_expression(plan: ModelPlan, obj: Model) -> bool:
    """Whether a field of ``obj`` holds an expression (a database default
    the data left out): only a save writes that."""
    return any(hasattr(getattr(obj, f.attname), "resolve_expression") for f in plan.fields)


def _prepared_pk(plan: ModelPlan, obj: Model | None, loader: _Loader) -> Any:
    assert obj is not None
    return plan.fields[plan.pk_index].get_db_prep_save(obj.pk, loader.connection)


def _collated(key: Any) -> Any:
    """A primary key as a case-insensitive, trailing-space-blind collation
    compares it: a text key the database holds in another case is saved,
    not inserted twice. Saving a row that turns out new inserts it."""
    return key.casefold().rstrip(" ") if isinstance(key, str) else key


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
        loader.late_keys.restore()
    connection.check_constraints(table_names=sorted(loader.tables))
    statements = connection.ops.sequence_reset_sql(no_style(), list(loader.models))
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


def _ignore(message: str) -> None:
    """Details nobody asked for."""
