"""Serialize the models of a definition, streaming, as Django's serializers do.

The files are plain fixtures that ``loaddata`` reads. The default format is
JSON Lines: its deserializer reads line by line, where the JSON one reads
the whole file first. JSON Lines is written from rows rather than model
instances (:mod:`diskette.rows`: the same lines, several times faster);
other formats, a model whose fields are not all columns and a definition's
own ``dump_command`` go through Django's serializers, objects coming from
``QuerySet.iterator()`` (a server-side cursor on PostgreSQL). Either way no
table is ever held in memory.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.core import serializers
from django.core.management import call_command
from django.core.serializers.base import SerializationError
from django.db import DatabaseError, connections, router, transaction
from django.db.models import Model, QuerySet, prefetch_related_objects

from .definitions import ARCHIVE_FORMAT, COMMAND_FORMAT, Definition
from .exceptions import DumpError
from .rows import (
    BATCH_ROWS,
    ExactJSONEncoder,
    ManyToMany,
    ModelRows,
    NaturalKeys,
    in_list_size,
    line_encoder,
    natural_relations,
    own_rows,
)

if TYPE_CHECKING:
    from .anonymize import Anonymizer
    from .subset import Selection

# ExactJSONEncoder, natural_relations and own_rows lived here: still importable.

#: Text is encoded and handed to the binary stream in blocks this large,
#: rather than once per small ``write()`` of the JSON encoder.
WRITE_BUFFER = 64 * 1024


def model_rows(definition: Definition, model: type[Model], using: str) -> QuerySet[Any]:
    """Rows of ``model`` to dump, through the manager ``dumpdata`` would use."""
    manager = model._base_manager if definition.use_base_manager else model._default_manager
    return own_rows(manager.using(using))


def row_sets(
    definition: Definition, model: type[Model], using: str
) -> Iterator[QuerySet[Any]]:
    """:func:`model_rows` as one queryset; in a subset dump, the rows the
    subset keeps (:mod:`diskette.subset`), one ``IN`` list the database
    accepts at a time, and nothing for a model it does not reach."""
    rows = model_rows(definition, model, using)
    if definition.selection is None:
        yield rows
        return
    keys = definition.selection.keys(model)
    size = in_list_size(connections[using])
    for start in range(0, len(keys), size):
        yield rows.filter(pk__in=keys[start : start + size])


def queryset(
    definition: Definition,
    model: type[Model],
    using: str,
    rows: QuerySet[Any] | None = None,
) -> QuerySet[Any]:
    """Rows of ``model`` to serialize, in primary key order, as ``dumpdata`` reads them.

    :param rows: those of :func:`row_sets` to read; all of them by default.
    """
    if rows is None:
        rows = model_rows(definition, model, using)
    rows = rows.order_by(model._meta.pk.name)
    # A natural foreign key reads the related object (and what its natural
    # key reads) per row: join them in the same query instead. Without
    # natural foreign keys, references to migrate-made models still are.
    joined = natural_relations(model)
    if not definition.natural_foreign:
        joined = [path for path in joined if _migrate_made(model, path.split("__")[0])]
    if joined:
        rows = rows.select_related(*joined)
    # The serializer reads each many-to-many field per object unless prefetched.
    m2m = [
        f.name
        for f in model._meta.many_to_many
        if f.remote_field.through._meta.auto_created
    ]
    return rows.prefetch_related(*m2m) if m2m else rows


def dumped_models(definition: Definition, using: str) -> list[type[Model]]:
    """Models of ``definition`` the database router lets live in ``using``."""
    return [m for m in definition.models if router.allow_migrate_model(using, m)]


def count_objects(definition: Definition, using: str) -> dict[str, int]:
    """Rows per model label that :func:`write_data` would dump."""
    try:
        return {
            m._meta.label_lower: sum(
                rows.count() for rows in row_sets(definition, m, using)
            )
            for m in dumped_models(definition, using)
        }
    except DatabaseError as exc:
        raise DumpError(f"{definition.name!r}: cannot read the database: {exc}") from exc


def write_data(
    definition: Definition,
    stream: IO[bytes],
    *,
    using: str,
    indent: int | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    anonymizer: Anonymizer | None = None,
) -> dict[str, int]:
    """Serialize ``definition`` into the binary ``stream``.

    :param progress: given the number of objects to write, returns the
        function to call as they are written (see
        :meth:`diskette.reporting.Reporter.progress`); counting them costs a
        query per model, so it is only done when someone watches.
    :param anonymizer: replaces personal data as it is read (see
        :mod:`diskette.anonymize`).
    :returns: the number of objects written per model label.
    :raises DumpError: naming the definition when the database or the
        serializer fails.
    """
    if definition.dump_command:
        _refuse_unanonymizable(definition, anonymizer, using)
        return _write_with_command(definition, stream, using=using, indent=indent)
    tally = _Tally({m._meta.label_lower: 0 for m in dumped_models(definition, using)})
    if progress is not None:
        tally.advance = progress(sum(count_objects(definition, using).values()))
    text = _EncodingWriter(stream)
    fmt = definition.format or ARCHIVE_FORMAT
    try:
        if fmt == "jsonl":
            _write_rows(definition, text, using, tally, anonymizer)
        else:
            _serialize(
                definition,
                fmt,
                text,
                indent,
                using,
                tally,
                dumped_models(definition, using),
                anonymizer,
            )
    except (DatabaseError, SerializationError) as exc:
        raise DumpError(f"{definition.name!r}: cannot serialize: {exc}") from exc
    text.flush()
    return tally.counts


class _Tally:
    """Objects written per model label, and the progress they make."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self.advance: Callable[[int], None] = _ignore

    def add(self, label: str, count: int) -> None:
        self.counts[label] += count
        self.advance(count)


def _write_rows(
    definition: Definition,
    text: _EncodingWriter,
    using: str,
    tally: _Tally,
    anonymizer: Anonymizer | None,
) -> None:
    """Write ``definition`` as JSON Lines from rows (:mod:`diskette.rows`);
    a model rows cannot tell whole (a composite primary key, a field that is
    no column) goes through the serializer."""
    naturals = NaturalKeys(using, anonymizer)
    encode = line_encoder()
    for model in dumped_models(definition, using):
        if not ModelRows.supports(model):
            _serialize(definition, "jsonl", text, None, using, tally, [model], anonymizer)
            continue
        for chosen in row_sets(definition, model, using):
            rows = ModelRows(
                model,
                chosen,
                using=using,
                naturally=lambda field: _natural(definition.natural_foreign, field),
                natural_primary=definition.natural_primary,
                naturals=naturals,
                anonymizer=anonymizer,
            )
            if definition.selection is not None:
                _keep_related(rows, definition.selection, using)
            for batch in rows.batches():
                text.write(rows.lines(batch, encode))
                tally.add(model._meta.label_lower, len(batch))


def _serialize(
    definition: Definition,
    fmt: str,
    text: _EncodingWriter,
    indent: int | None,
    using: str,
    tally: _Tally,
    models: list[type[Model]],
    anonymizer: Anonymizer | None = None,
) -> None:
    """Write ``models`` with Django's serializer for ``fmt``, each object
    anonymized first."""

    def objects() -> Iterator[Model]:
        for model in models:
            label = model._meta.label_lower
            for chosen in row_sets(definition, model, using):
                rows = queryset(definition, model, using, chosen).iterator(
                    chunk_size=BATCH_ROWS
                )
                # Closed here, even on Ctrl-C: a cursor left to the garbage
                # collector after its connection closed prints a traceback.
                with contextlib.closing(rows):
                    for obj in rows:
                        tally.add(label, 1)
                        if definition.selection is not None:
                            _keep_prefetched(obj, definition.selection)
                        if anonymizer is not None:
                            anonymizer.instance(obj)
                        yield obj

    serializer_class(fmt, anonymizer)().serialize(
        objects(),
        stream=text,
        indent=indent,
        use_natural_foreign_keys=definition.natural_foreign,
        use_natural_primary_keys=definition.natural_primary,
        cls=ExactJSONEncoder,
    )


def _write_with_command(
    definition: Definition, stream: IO[bytes], *, using: str, indent: int | None
) -> dict[str, int]:
    """Run the definition's own ``dump_command`` (a ``dumpdata`` work-alike).

    Such commands write to a named file, so the output goes through a
    temporary file; counts come from the same querysets ``dumpdata`` reads.
    """
    counts = count_objects(definition, using)
    with tempfile.TemporaryDirectory(prefix="diskette-") as folder:
        output = Path(folder) / definition.filename()
        try:
            call_command(
                definition.dump_command,
                *definition.labels,
                format=definition.format or ARCHIVE_FORMAT,
                indent=indent,
                output=str(output),
                database=using,
                use_natural_foreign_keys=definition.natural_foreign,
                use_natural_primary_keys=definition.natural_primary,
                use_base_manager=definition.use_base_manager,
                verbosity=0,
                stdout=io.StringIO(),
            )
        except Exception as exc:
            raise DumpError(
                f"{definition.name!r}: dump_command {definition.dump_command!r} "
                f"failed: {exc}"
            ) from exc
        with open(output, "rb") as produced:
            while block := produced.read(WRITE_BUFFER):
                stream.write(block)
    return counts


def _subset_fields(model: type[Model]) -> list[Any]:
    """The many-to-many fields of ``model`` whose values a subset dump keeps
    only when the related row is kept: those of auto-created tables (a
    through model's rows are rows of their own), but to what ``migrate``
    makes, which every database has."""
    return [
        f
        for f in model._meta.concrete_model._meta.local_many_to_many
        if f.remote_field.through._meta.auto_created
        and f.related_model._meta.label_lower not in MIGRATE_CREATED
    ]


def _keep_related(rows: ModelRows, selection: Selection, using: str) -> None:
    """Make ``rows`` write only the many-to-many values whose related row
    the subset keeps: any other would refer to a row the archive lacks."""
    fields = {f.name: f for f in _subset_fields(rows.model)}
    rows.many_to_many = [
        _KeptManyToMany(m, fields[m.name], using, selection.kept(m.related))
        if m.name in fields
        else m
        for m in rows.many_to_many
    ]


def _keep_prefetched(obj: Model, selection: Selection) -> None:
    """:func:`_keep_related` for an instance the serializer writes: its
    prefetched values (:func:`queryset`), which the serializer reads."""
    cache = getattr(obj, "_prefetched_objects_cache", {})
    for f in _subset_fields(type(obj)):
        if f.name in cache:
            kept = selection.kept(f.related_model)
            prefetched = cache[f.name]  # a queryset: the serializer asks it for more
            # What prefetch_related_objects itself fills in.
            prefetched._result_cache = [r for r in prefetched if r.pk in kept]


class _KeptManyToMany(ManyToMany):
    """The values of a many-to-many field (:class:`ManyToMany`) whose related
    row is kept: read as primary keys, kept or not, then written as the
    field writes them (natural keys included)."""

    def __init__(  # noqa: PLW0231 - it wraps two fields, it is neither
        self, shown: ManyToMany, field: Any, using: str, kept: Collection[Any]
    ) -> None:
        self.name, self.shown, self.kept = shown.name, shown, kept
        self.raw = ManyToMany(field, using, None)
        self.raw.convert = None  # primary keys as read, to compare with the kept ones

    def values(self, owners: list[Any], *, whole: bool) -> dict[Any, list[Any]]:
        kept = self.kept
        grouped = {
            owner: [pk for pk in pks if pk in kept]
            for owner, pks in self.raw.values(owners, whole=whole).items()
        }
        shown = self.shown
        if shown.naturals is not None:
            pks = (pk for values in grouped.values() for pk in values)
            shown.naturals.fetch(shown.related, shown.pk_attname, pks)
            convert = shown.naturals.table(shown.related, shown.pk_attname).__getitem__
        elif shown.convert is not None:
            convert = shown.convert
        else:
            return grouped
        return {owner: [convert(pk) for pk in pks] for owner, pks in grouped.items()}


#: Models whose rows ``migrate`` creates: their ids depend on the order
#: migrations ran in, so they differ between two databases of one project.
MIGRATE_CREATED = frozenset({"contenttypes.contenttype", "auth.permission"})


def serializer_class(fmt: str, anonymizer: Anonymizer | None = None) -> type[Any]:
    """Django's serializer for ``fmt``, writing references to
    :data:`MIGRATE_CREATED` models by natural key, whatever the definition says,
    and anonymizing the related objects natural keys are read from.

    A generic relation, a django-polymorphic ``polymorphic_ctype`` or a
    group's permissions hold content type and permission ids: loaded into a
    database whose ``migrate`` numbered them otherwise, they would point at
    other models. Their natural keys (``["shop", "circle"]``) mean the same
    everywhere, and ``loaddata`` reads a natural key wherever one is given.
    """
    base = serializers.get_serializer(fmt)

    class Serializer(base):  # type: ignore[valid-type, misc]
        def handle_fk_field(self, obj: Model, field: Any) -> None:
            with _naturally(self, field):
                if anonymizer is not None and _by_natural_key(self, field):
                    # Cached on obj: the serializer reads this very instance.
                    anonymizer.natural(getattr(obj, field.name))
                super().handle_fk_field(obj, field)

        def handle_m2m_field(self, obj: Model, field: Any) -> None:
            with _naturally(self, field):
                if (
                    anonymizer is not None
                    and field.remote_field.through._meta.auto_created
                    and _by_natural_key(self, field)
                ):
                    # Prefetched (as queryset() does): the serializer reads
                    # these very instances.
                    prefetch_related_objects([obj], field.name)
                    for related in obj._prefetched_objects_cache[field.name]:
                        anonymizer.natural(related)
                super().handle_m2m_field(obj, field)

    return Serializer


def _by_natural_key(serializer: Any, field: Any) -> bool:
    """Whether ``serializer`` writes the relation ``field`` by natural key."""
    return serializer.use_natural_foreign_keys and hasattr(
        field.remote_field.model, "natural_key"
    )


def _refuse_unanonymizable(
    definition: Definition, anonymizer: Anonymizer | None, using: str
) -> None:
    """Refuse a ``dump_command`` definition whose objects hold data to anonymize:
    the command writes them itself, so diskette cannot replace a value."""
    if anonymizer is None:
        return
    for model in dumped_models(definition, using):
        if anonymizer.touches(model):
            raise DumpError(
                f"{definition.name!r}: dump_command {definition.dump_command!r} writes "
                f"{model._meta.label_lower} itself, which anonymization rules cover; "
                "remove dump_command (diskette dumps every model kind itself) or pass "
                "--no-anonymize"
            )


def _migrate_made(model: type[Model], name: str) -> bool:
    related = model._meta.get_field(name).related_model
    return related is not None and related._meta.label_lower in MIGRATE_CREATED


def _natural(natural_foreign: bool, field: Any) -> bool:
    """Whether the serializer writes the relation ``field`` by natural key."""
    related = field.remote_field.model
    return hasattr(related, "natural_key") and (
        natural_foreign or field.related_model._meta.label_lower in MIGRATE_CREATED
    )


@contextmanager
def _naturally(serializer: Any, field: Any) -> Iterator[None]:
    """Natural foreign keys on for ``field`` if it refers to a migrate-made model."""
    if serializer.use_natural_foreign_keys or (
        field.related_model._meta.label_lower not in MIGRATE_CREATED
    ):
        yield
        return
    serializer.use_natural_foreign_keys = True
    try:
        yield
    finally:
        serializer.use_natural_foreign_keys = False


def dumpdata_command(definition: Definition, data_dir: Path, indent: int | None) -> str:
    """The ``dumpdata`` line that dumps ``definition`` by hand.

    It runs as printed once prefixed with ``manage.py``. It writes JSON, plain
    ``dumpdata``'s default and what diskette 0.6 printed, unless the
    definition chose a format through its ``filename``.
    """
    fmt = definition.format or COMMAND_FORMAT
    args = [definition.dump_command or "dumpdata", *definition.labels]
    if definition.natural_foreign:
        args.append("--natural-foreign")
    if definition.natural_primary:
        args.append("--natural-primary")
    if definition.use_base_manager:
        args.append("--all")
    if fmt != COMMAND_FORMAT:
        args.append(f"--format={fmt}")
    if indent is not None:
        args.append(f"--indent={indent}")
    args.append(f"--output={data_dir / definition.filename(COMMAND_FORMAT)}")
    return shlex.join(args)


@contextmanager
def consistent_snapshot(using: str) -> Iterator[None]:
    """Read every table from one snapshot of the database.

    Without it, rows written while a long dump runs could appear in one table
    and not in another that references it. On PostgreSQL the transaction is
    ``REPEATABLE READ, READ ONLY``; SQLite reads from one snapshot inside any
    transaction. Inside a caller's transaction, that transaction decides.
    """
    connection = connections[using]
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic(using=using):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


class _EncodingWriter:
    """Text stream over a binary one, encoding UTF-8 in blocks."""

    def __init__(self, binary: IO[bytes]) -> None:
        self.binary = binary
        self.parts: list[str] = []
        self.pending = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.pending += len(text)
        if self.pending >= WRITE_BUFFER:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self.parts:
            self.binary.write("".join(self.parts).encode())
            self.parts.clear()
            self.pending = 0


def _ignore(count: int) -> None:
    """Progress nobody watches."""
