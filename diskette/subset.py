"""Subset dumps: a starting set of rows, and every row those rows need.

A whole database is often too much for a laptop, and a ``filter`` on one
model alone is not enough: an article without its author does not load. A
*subset* names starting rows per model (lookups, a percentage of a table,
or both) and the relations to follow on request; diskette adds what the
rows refer to, level by level, until nothing new turns up:

- always: foreign keys and one-to-ones (multi-table inheritance parent
  links included) and generic foreign keys, which a row cannot load
  without; and the rows of the child tables of a multi-table inheritance
  parent, the rest of the very same objects;
- on request (``follow``): reverse relations, many-to-many fields (either
  side), generic relations.

Each level reads, per model, the rows that the previous level's new rows
need, in one query (per ``IN`` list the database accepts), keeping each
row's own references in the same read. Only rows not met before make the
next level, so cycles of foreign keys end. The dump then reads only the
kept rows (:func:`diskette.data.row_sets`), writes only the values of
many-to-many fields whose related rows are kept, and archives only the
files the kept rows' file fields name.

Content types and permissions are never followed: ``migrate`` makes them,
and the dump refers to them by natural key (:data:`diskette.data.MIGRATE_CREATED`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from django.apps import apps
from django.core.exceptions import (
    FieldDoesNotExist,
    SuspiciousFileOperation,
    ValidationError,
)
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models
from django.db.models import Model, Q

from .data import MIGRATE_CREATED, consistent_snapshot
from .definitions import Definition
from .exceptions import ConfigurationError, DumpError
from .objectstorage import local_folder, storage_identity
from .rows import BATCH_ROWS, in_list_size, own_rows

#: The keys a model's rule may hold.
RULE_KEYS = ("filter", "percent", "follow")
#: What a subset looks like, for error messages.
EXAMPLE = '{"demo.Book": {"filter": {"published__year": 2026}, "follow": ["reviews"]}}'

Row = TypeVar("Row")

#: A file a kept row names: its real path on a local folder, else the
#: storage (:func:`storage_identity`) and its name there, as
#: :meth:`diskette.anonymize.Anonymizer.dropped_files` tells them.
FileKey = Path | tuple[int, str]


@dataclass(frozen=True)
class Follow:
    """A relation a rule names: the rows of :attr:`model` whose ``lookup``
    is one of the keys of the rule's rows are needed too.

    :param content_type: for a generic relation, the content type column of
        :attr:`model` and the model whose content type it must hold; the
        keys are then compared as ``object_field`` stores them.
    """

    name: str
    model: type[Model]
    lookup: str
    content_type: tuple[str, type[Model], bool] | None = None
    object_field: Any = None


@dataclass(frozen=True)
class Rule:
    """What a subset says of one model: its starting rows, what to follow.

    :param filter: lookups selecting starting rows (``{}``: every row);
        ``None`` with no ``percent`` means the model starts nothing.
    :param percent: the share of the (filtered) rows to start from, taken
        evenly along primary key order (:func:`sample`).
    """

    model: type[Model]
    filter: dict[str, Any] | None = None
    percent: Fraction | None = None
    follow: tuple[Follow, ...] = ()

    @property
    def starts(self) -> bool:
        return self.filter is not None or self.percent is not None


@dataclass(frozen=True)
class Subset:
    """A validated subset definition (:func:`parse_subset`)."""

    name: str
    rules: tuple[Rule, ...]
    #: The definition as written, for the manifest.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def follows(self, model: type[Model]) -> tuple[Follow, ...]:
        for rule in self.rules:
            if rule.model is model:
                return rule.follow
        return ()

    def selection(self, definitions: Sequence[Definition], using: str) -> Selection:
        """The rows and files of this subset that ``definitions`` dump."""
        return Selection(self, definitions, using)

    def described(self) -> dict[str, Any]:
        """The definition as JSON holds it (dates as ISO text, as Django writes them)."""
        return json.loads(json.dumps(self.raw, cls=_Encoder))


class _Encoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        try:
            return super().default(o)
        except TypeError:
            return str(o)


# Definitions -----------------------------------------------------------------


def parse_subset(raw: Any, name: str, where: str | None = None) -> Subset:
    """Validate one subset definition and resolve it against the app registry.

    :param raw: ``{"app.Model": {"filter": {...}, "percent": N, "follow": [...]}}``.
    :param where: how messages name it; ``DISKETTE_SUBSETS['name']`` by default.
    :raises ConfigurationError: naming the model and key at fault, and the fix.
    """
    where = where or f"DISKETTE_SUBSETS[{name!r}]"
    if not isinstance(raw, dict) or not raw:
        shown = "an empty dict" if raw == {} else type(raw).__name__
        raise ConfigurationError(
            f"{where} must be a dict of model labels to rules, e.g. {EXAMPLE}, not {shown}"
        )
    rules: list[Rule] = []
    for label, options in raw.items():
        here = f"{where}[{label!r}]"
        model = _model(label, here)
        if any(rule.model is model for rule in rules):
            raise ConfigurationError(
                f"{here}: {model._meta.label} is named twice; merge them"
            )
        rules.append(_rule(model, options, here))
    if not any(rule.starts for rule in rules):
        raise ConfigurationError(
            f"{where} has no starting rows: give a model a 'filter' ({{}} for every row) "
            "or a 'percent'"
        )
    return Subset(name=name, rules=tuple(rules), raw=raw)


def subsets_problems(raw: Any) -> list[ConfigurationError]:
    """Every problem of ``DISKETTE_SUBSETS`` beyond its shape, one per subset
    (for the system checks, which need the app registry)."""
    if not isinstance(raw, dict):
        return []  # the shape is diskette.conf's business (E001)
    problems = []
    for name, definition in raw.items():
        try:
            parse_subset(definition, name)
        except ConfigurationError as exc:
            problems.append(exc)
    return problems


def _model(label: Any, here: str) -> type[Model]:
    if not isinstance(label, str) or label.count(".") != 1:
        raise ConfigurationError(f"{here}: name a model by its label, such as 'demo.Book'")
    try:
        model = apps.get_model(label)
    except LookupError:
        raise ConfigurationError(f"{here}: unknown model {label!r}") from None
    if model._meta.proxy:
        concrete = model._meta.concrete_model._meta.label
        raise ConfigurationError(
            f"{here}: {model._meta.label} is a proxy without rows of its own; name {concrete}"
        )
    if model._meta.label_lower in MIGRATE_CREATED:
        raise ConfigurationError(
            f"{here}: migrate makes {model._meta.label}'s rows, which a dump never "
            "carries; remove it"
        )
    return model


def _rule(model: type[Model], options: Any, here: str) -> Rule:
    if not isinstance(options, dict):
        raise ConfigurationError(
            f"{here} must be a dict such as {{'filter': {{...}}, 'follow': [...]}}, "
            f"not {type(options).__name__}"
        )
    unknown = sorted(set(options) - set(RULE_KEYS), key=str)
    if unknown:
        raise ConfigurationError(
            f"{here}: unknown key {unknown[0]!r} (valid: {', '.join(RULE_KEYS)})"
        )
    lookups = options.get("filter")
    if lookups is not None:
        _check_filter(model, lookups, here)
    percent = options.get("percent")
    if percent is not None:
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not 0 < percent <= 100  # NaN fails this too
        ):
            raise ConfigurationError(
                f"{here}: 'percent' must be a number above 0 and at most 100, "
                f"such as 10, not {percent!r}"
            )
        percent = Fraction(str(percent))  # 0.1 as written, not as a float holds it
    follow = options.get("follow", [])
    if not isinstance(follow, list | tuple) or not all(isinstance(n, str) for n in follow):
        raise ConfigurationError(
            f"{here}: 'follow' must be a list of relation names, such as ['reviews'], "
            f"not {follow!r}"
        )
    rule = Rule(
        model=model,
        filter=lookups,
        percent=percent,
        follow=tuple(_follow(model, name, here) for name in dict.fromkeys(follow)),
    )
    if not rule.starts and not rule.follow:
        raise ConfigurationError(
            f"{here} starts nothing and follows nothing: give it a 'filter' "
            "({} for every row), a 'percent' or 'follow', or remove it"
        )
    return rule


def _check_filter(model: type[Model], lookups: Any, here: str) -> None:
    """Build the filter's query, without running it: a misspelt field or a
    value of the wrong kind is told now, not halfway through a dump."""
    if not isinstance(lookups, dict) or not all(isinstance(k, str) for k in lookups):
        raise ConfigurationError(
            f"{here}: 'filter' must be a dict of lookups such as "
            f"{{'published__year': 2026}} ({{}} for every row), not {lookups!r}"
        )
    try:
        model._base_manager.filter(**lookups)
    # FieldError, ValidationError, ValueError, TypeError are the usual ones;
    # a field's own lookups may raise anything, and the checks must not crash.
    except Exception as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else exc
        raise ConfigurationError(f"{here}: 'filter': {message}") from None


def _follow(model: type[Model], name: str, here: str) -> Follow:
    """Resolve a name of ``follow``: a reverse relation (by related name or
    accessor), a many-to-many field of either side, a generic relation."""
    relation = _relation(model, name)
    label = model._meta.label
    if relation is None:
        names = ", ".join(sorted(followable(model))) or "none"
        raise ConfigurationError(
            f"{here}: 'follow': {label} has no relation {name!r} to follow "
            f"(reverse relations and many-to-many fields: {names})"
        )
    if _is_generic_relation(relation):
        from django.contrib.contenttypes.fields import GenericRelation

        assert isinstance(relation, GenericRelation)
        related = relation.related_model
        content_type = related._meta.get_field(relation.content_type_field_name)
        object_field = related._meta.get_field(relation.object_id_field_name)
        return Follow(
            name=name,
            model=related,
            lookup=f"{object_field.attname}__in",
            content_type=(content_type.attname, model, relation.for_concrete_model),
            object_field=object_field,
        )
    if relation.many_to_many:
        forward = not relation.auto_created  # the field itself, not its reverse
        m2m = relation if forward else relation.field
        through = m2m.remote_field.through
        if through._meta.auto_created:
            if forward:
                query_name = m2m.related_query_name()
                if query_name.endswith("+"):
                    raise ConfigurationError(
                        f"{here}: 'follow': {label}.{name} has no way back "
                        f"(related_name {query_name!r}); give it a related_name"
                    )
                return Follow(name, m2m.related_model, f"{query_name}__in")
            return Follow(name, m2m.model, f"{m2m.name}__in")
        # A through model of the project's own: its rows are followed, and
        # they bring the other side as any row brings what it refers to.
        side = m2m.m2m_field_name() if forward else m2m.m2m_reverse_field_name()
        return Follow(name, through, f"{side}__in")
    if relation.concrete or not relation.auto_created:
        raise ConfigurationError(
            f"{here}: 'follow': {label}.{name} refers forward, which is always "
            "followed; remove it"
        )
    # A reverse foreign key or one-to-one: the rows that refer to these.
    fk = relation.field
    lookup = f"{fk.name}__in" if fk.target_field.primary_key else f"{fk.name}__pk__in"
    return Follow(name, relation.related_model, lookup)


def _relation(model: type[Model], name: str) -> Any:
    try:
        found = model._meta.get_field(name)
    except FieldDoesNotExist:
        found = None
    if found is not None and found.is_relation:
        return found
    for relation in model._meta.related_objects:
        if relation.get_accessor_name() == name:  # review_set, as code spells it
            return relation
    return None


def _is_generic_relation(relation: Any) -> bool:
    if not apps.is_installed("django.contrib.contenttypes"):
        return False
    from django.contrib.contenttypes.fields import GenericRelation

    return isinstance(relation, GenericRelation)


def followable(model: type[Model]) -> list[str]:
    """The names ``follow`` accepts for ``model``."""
    names = [f.name for f in model._meta.many_to_many]
    names += [f.name for f in model._meta.private_fields if _is_generic_relation(f)]
    for relation in model._meta.related_objects:
        if not relation.hidden:
            names.append(relation.get_accessor_name() or relation.name)
    return names


# The closure -------------------------------------------------------------------


@dataclass
class Closure:
    """The rows a subset needs: primary keys per model, as the database gives them.

    :param reasons: per model, what first brought its rows in (``"starting
        set"``, ``"demo.book.author"``), for messages.
    :param levels: the models read at each level, in order: the queries made,
        one per model per level (per ``IN`` list the database accepts).
    """

    keys: dict[type[Model], set[Any]] = field(default_factory=dict)
    reasons: dict[type[Model], str] = field(default_factory=dict)
    levels: list[list[str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            model._meta.label_lower: len(keys)
            for model, keys in sorted(
                self.keys.items(), key=lambda i: i[0]._meta.label_lower
            )
            if keys
        }


#: A condition on a model's rows: a lookup and the fixed values beside it
#: (a content type), mapped to the values the lookup takes.
Conditions = dict[tuple[str, tuple[tuple[str, Any], ...]], set[Any]]


def closure(subset: Subset, using: str = DEFAULT_DB_ALIAS) -> Closure:
    """The rows ``subset`` starts from and every row they need, read level by level.

    Reads through base managers: a row a manager hides is still referred to.
    Call it inside a transaction (:func:`consistent_snapshot`) to read one
    snapshot.

    :raises DumpError: when the database cannot be read.
    """
    graph = _Graph(subset, using)
    found = Closure()
    frontier: dict[type[Model], list[tuple[Any, ...]]] = {}
    try:
        first = []
        for rule in subset.rules:
            if rule.starts:
                first.append(rule.model._meta.label_lower)
                graph.take(
                    found, rule.model, _start(rule, graph, using), frontier, "starting set"
                )
        found.levels.append(first)
        while frontier:
            wanted, reasons = graph.wanted(found, frontier)
            frontier = {}
            level = []
            for model, conditions in wanted.items():
                level.append(model._meta.label_lower)
                for rows in graph.read(model, conditions):
                    graph.take(found, model, rows, frontier, reasons[model])
            if level:
                found.levels.append(level)
    except DatabaseError as exc:
        raise DumpError(f"subset {subset.name!r}: cannot read the database: {exc}") from exc
    return found


def sample(rows: Iterable[Row], percent: Fraction) -> Iterator[Row]:
    """Every row of ``rows`` (in primary key order) at an even step, so that
    ``percent`` of them are kept, the first one always.

    Row *i* is kept when ``i * percent / 100`` reaches a new whole number:
    10% of 95 rows keeps rows 0, 10, 20, … 90 (ten rows). The same rows give
    the same sample, whatever the database, and the sample spreads over the
    whole table rather than its oldest rows.
    """
    share = percent / 100
    previous = -1
    for index, row in enumerate(rows):
        step = math.floor(index * share)
        if index == 0 or step > previous:
            yield row
        previous = step


def _start(rule: Rule, graph: _Graph, using: str) -> list[tuple[Any, ...]]:
    """The starting rows of ``rule``, read with their references: one query."""
    rows = own_rows(rule.model._base_manager.db_manager(using).all())
    read = rows.filter(**(rule.filter or {})).values_list("pk", *graph.columns(rule.model))
    if rule.percent is None:
        return list(read)
    ordered = read.order_by("pk").iterator(chunk_size=BATCH_ROWS)
    return list(sample(_once(ordered), rule.percent))


def _once(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """``rows`` in primary key order without repeats: a filter across a
    many-valued relation (``reviews__rating=5``) gives a row once per match,
    and a sample counts rows, not matches."""
    previous: Any = object()
    for row in rows:
        if row[0] != previous:
            yield row
        previous = row[0]


class _Graph:
    """How a subset's models refer to each other, worked out once per model."""

    def __init__(self, subset: Subset, using: str) -> None:
        self.subset, self.using = subset, using
        self.size = in_list_size(connections[using])
        self._edges: dict[type[Model], _Edges] = {}

    def edges(self, model: type[Model]) -> _Edges:
        found = self._edges.get(model)
        if found is None:
            found = self._edges[model] = _Edges(model)
        return found

    def columns(self, model: type[Model]) -> list[str]:
        return self.edges(model).columns

    def take(
        self,
        found: Closure,
        model: type[Model],
        rows: Iterable[tuple[Any, ...]],
        frontier: dict[type[Model], list[tuple[Any, ...]]],
        reason: str,
    ) -> None:
        """Keep the rows not met before; they make the next level."""
        keys = found.keys.setdefault(model, set())
        for row in rows:
            if row[0] not in keys:
                keys.add(row[0])
                frontier.setdefault(model, []).append(row)
        if keys:
            found.reasons.setdefault(model, reason)

    def wanted(
        self, found: Closure, frontier: dict[type[Model], list[tuple[Any, ...]]]
    ) -> tuple[dict[type[Model], Conditions], dict[type[Model], str]]:
        """What the rows of ``frontier`` need: conditions per model."""
        wanted: dict[type[Model], Conditions] = {}
        reasons: dict[type[Model], str] = {}

        def want(
            model: type[Model],
            lookup: str,
            values: set[Any],
            reason: str,
            fixed: tuple[tuple[str, Any], ...] = (),
        ) -> None:
            if lookup == "pk__in":
                values = values - found.keys.get(model, set())
            if values:
                wanted.setdefault(model, {}).setdefault((lookup, fixed), set()).update(
                    values
                )
                reasons.setdefault(model, reason)

        for model, rows in frontier.items():
            edges, label = self.edges(model), model._meta.label_lower
            keys = {row[0] for row in rows}
            for index, fk, target, lookup in edges.forward:
                values = {row[index] for row in rows if row[index] is not None}
                want(target, lookup, values, f"{label}.{fk.name}")
            for ct_index, id_index, name in edges.generic:
                for target, values in self._generic_targets(rows, ct_index, id_index):
                    want(target, "pk__in", values, f"{label}.{name}")
            for child, lookup in edges.children:
                want(child, lookup, keys, f"the {child._meta.label_lower} rows of {label}")
            for follow in self.subset.follows(model):
                reason = f"{label} follow {follow.name!r}"
                if follow.content_type is None:
                    want(follow.model, follow.lookup, keys, reason)
                    continue
                column, owner, concrete = follow.content_type
                content_type = _content_types(self.using).get_for_model(
                    owner, for_concrete_model=concrete
                )
                ids = {follow.object_field.to_python(key) for key in keys}
                want(follow.model, follow.lookup, ids, reason, ((column, content_type.pk),))
        return wanted, reasons

    def _generic_targets(
        self, rows: list[tuple[Any, ...]], ct_index: int, id_index: int
    ) -> Iterator[tuple[type[Model], set[Any]]]:
        """The rows generic foreign keys point at, by model, keys converted
        to the model's own primary key values."""
        by_type: dict[Any, set[Any]] = {}
        for row in rows:
            if row[ct_index] is not None and row[id_index] not in (None, ""):
                by_type.setdefault(row[ct_index], set()).add(row[id_index])
        for type_id, ids in by_type.items():
            model = _content_types(self.using).get_for_id(type_id).model_class()
            if model is None or model._meta.label_lower in MIGRATE_CREATED:
                continue  # a stale content type, or what migrate makes
            model = model._meta.concrete_model
            keys = set()
            for value in ids:
                try:
                    keys.add(model._meta.pk.to_python(value))
                except ValidationError:
                    continue  # no row can have that key: nothing to keep
            yield model, keys

    def read(
        self, model: type[Model], conditions: Conditions
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``model`` that meet any of ``conditions``, with their
        references: one query, or one per ``IN`` list the database accepts."""
        pieces = []
        for (lookup, fixed), values in conditions.items():
            ordered = _ordered(values)
            for start in range(0, len(ordered), self.size):
                pieces.append((lookup, fixed, ordered[start : start + self.size]))
        rows = own_rows(model._base_manager.db_manager(self.using).all())
        columns = self.columns(model)
        while pieces:
            batch: list[tuple[str, Any, list[Any]]] = []
            total = 0
            while pieces and (not batch or total + len(pieces[0][2]) <= self.size):
                piece = pieces.pop(0)
                batch.append(piece)
                total += len(piece[2])
            where = Q()
            for lookup, fixed, chunk in batch:
                where |= Q(**dict(fixed), **{lookup: chunk})
            yield list(rows.filter(where).values_list("pk", *columns))


class _Edges:
    """The references of one model's rows: the columns read with each row,
    where they lead, and the child tables of a multi-table inheritance."""

    def __init__(self, model: type[Model]) -> None:
        opts = model._meta
        self.columns: list[str] = []
        #: (column index in a row, field, model referred to, lookup on it)
        self.forward: list[tuple[int, Any, type[Model], str]] = []
        #: (content type index, object id index, name) of generic foreign keys.
        self.generic: list[tuple[int, int, str]] = []
        local = set(opts.local_concrete_fields)
        for fk in opts.local_concrete_fields:
            target = fk.related_model if fk.is_relation else None
            if target is None or not (fk.many_to_one or fk.one_to_one):
                continue
            if target._meta.label_lower in MIGRATE_CREATED:
                continue  # migrate makes them; the dump names them by natural key
            self.columns.append(fk.attname)
            lookup = (
                "pk__in" if fk.target_field.primary_key else f"{fk.target_field.name}__in"
            )
            self.forward.append(
                (len(self.columns), fk, target._meta.concrete_model, lookup)
            )
        for private in opts.private_fields:
            if not _is_generic_foreign_key(private):
                continue
            content_type = opts.get_field(private.ct_field)
            object_id = opts.get_field(private.fk_field)
            if content_type not in local or object_id not in local:
                continue  # a parent's: read with the parent's rows
            self.columns += [content_type.attname, object_id.attname]
            self.generic.append((len(self.columns) - 1, len(self.columns), private.name))
        self.children = [
            (relation.related_model, f"{relation.field.name}__in")
            for relation in opts.related_objects
            if relation.one_to_one and relation.parent_link
        ]


def _is_generic_foreign_key(field: Any) -> bool:
    if not apps.is_installed("django.contrib.contenttypes"):
        return False
    from django.contrib.contenttypes.fields import GenericForeignKey

    return isinstance(field, GenericForeignKey)


def _content_types(using: str) -> Any:
    """Django's content type manager on ``using``: cached lookups, the first
    of each id or model costing one query."""
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.db_manager(using)


def _ordered(values: Collection[Any]) -> list[Any]:
    """``values`` in order when they have one: the same queries each time."""
    try:
        return sorted(values)
    except TypeError:
        return list(values)


# Files -------------------------------------------------------------------------


def named_files(keys: Mapping[type[Model], Collection[Any]], using: str) -> set[FileKey]:
    """The files the file fields of the kept rows name, as the storage
    walk tells them (:data:`FileKey`): one query per model with such fields
    (per ``IN`` list the database accepts)."""
    size = in_list_size(connections[using])
    found: set[FileKey] = set()
    for model, kept in keys.items():
        fields = [
            f for f in model._meta.local_concrete_fields if isinstance(f, models.FileField)
        ]
        if not fields or not kept:
            continue
        rows = own_rows(model._base_manager.db_manager(using).all())
        ordered = _ordered(kept)
        for start in range(0, len(ordered), size):
            chunk = ordered[start : start + size]
            for names in rows.filter(pk__in=chunk).values_list(
                *(f.attname for f in fields)
            ):
                for file_field, name in zip(fields, names, strict=True):
                    if name:
                        found.update(_file_key(file_field.storage, name))
    return found


def _file_key(storage: Any, name: str) -> Iterator[FileKey]:
    if local_folder(storage) is None:
        yield (storage_identity(storage), name)
        return
    try:
        yield Path(os.path.realpath(storage.path(name)))
    except SuspiciousFileOperation:  # outside the storage: never archived anyway
        return


# The selection a dump reads ---------------------------------------------------------


class Selection:
    """A subset's rows and files in one database, for one dump.

    Worked out on first use: the dump reads its data inside one snapshot
    (:func:`consistent_snapshot`) and asks for the first keys there, so the
    kept rows and the references they hold come from that same snapshot.
    """

    def __init__(
        self, subset: Subset, definitions: Sequence[Definition], using: str
    ) -> None:
        """
        :raises DumpError: for a definition with a ``dump_command``, which
            writes its rows itself, all of them.
        """
        for definition in definitions:
            if definition.dump_command:
                raise DumpError(
                    f"{definition.name!r}: dump_command {definition.dump_command!r} "
                    f"dumps every row, not subset {subset.name!r}; remove dump_command "
                    "(diskette dumps every model kind itself)"
                )
        self.subset, self.using = subset, using
        self.dumped = {model for d in definitions for model in d.models}
        #: The definitions, each restricted to the kept rows.
        self.definitions = [replace(d, selection=self) for d in definitions]
        self._closure: Closure | None = None
        self._files: set[FileKey] | None = None

    @property
    def closure(self) -> Closure:
        """The kept rows.

        :raises DumpError: when a kept row needs rows no definition dumps:
            the archive would not load.
        """
        if self._closure is None:
            with consistent_snapshot(self.using):
                found = closure(self.subset, self.using)
            if self.definitions:  # --no-data archives files only
                self._check(found)
            self._closure = found
        return self._closure

    def keys(self, model: type[Model]) -> list[Any]:
        """The kept primary keys of ``model``, in order."""
        return _ordered(self.closure.keys.get(model, ()))

    def kept(self, model: type[Model]) -> Collection[Any]:
        """The kept primary keys of ``model``, to test membership."""
        return self.closure.keys.get(model, set())

    def files(self) -> set[FileKey]:
        """The files the kept rows name, the only ones the archive holds."""
        if self._files is None:
            keys = self.closure.keys
            with consistent_snapshot(self.using):
                try:
                    self._files = named_files(keys, self.using)
                except DatabaseError as exc:
                    raise DumpError(
                        f"subset {self.subset.name!r}: cannot read file names: {exc}"
                    ) from exc
        return self._files

    def described(self) -> dict[str, Any]:
        """The manifest's ``subset``: its name and definition, rows kept per
        model, and how many files they name (``None`` when no storage was read)."""
        return {
            "name": self.subset.name,
            "definition": self.subset.described(),
            "objects": self.closure.counts(),
            "files": None if self._files is None else len(self._files),
        }

    def _check(self, found: Closure) -> None:
        for model, keys in found.keys.items():
            if keys and model not in self.dumped:
                raise DumpError(
                    f"subset {self.subset.name!r} needs rows of {model._meta.label_lower} "
                    f"({found.reasons[model]}), which no definition dumps; add "
                    f"{model._meta.label} to a definition, or follow less"
                )


def read_subset(value: str, subsets: Mapping[str, Any]) -> Subset:
    """The subset ``--subset`` names: a key of ``DISKETTE_SUBSETS``, else a
    JSON file holding one definition (named after the file).

    :raises ConfigurationError: for an unknown name, or a file that cannot
        be read or holds no valid definition.
    """
    if value in subsets:
        return parse_subset(subsets[value], value)
    path = Path(value)
    if path.suffix != ".json" and not path.is_file():
        known = ", ".join(sorted(map(str, subsets))) or "none in DISKETTE_SUBSETS"
        raise ConfigurationError(
            f"--subset: no subset {value!r} (known: {known}); name one, or a .json file"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigurationError(f"--subset '{value}' cannot be read: {reason}") from None
    return parse_subset(raw, path.stem, where=f"--subset '{value}'")
