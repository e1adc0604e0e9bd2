"""Application definitions: ``[name, {options}]`` pairs turned into model lists.

A definition says which models go into one data file of the archive and how
they are serialized. This module validates definitions (shape, option keys,
labels, file names) and resolves each one to the concrete models it dumps, in
dump order, including the *drain*: the one definition that collects every
model no other definition covers.

Validation collects every problem rather than stopping at the first, so the
system checks can list them all; :func:`load_definitions` raises the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.management import get_commands
from django.db.models import Model
from django.utils.text import slugify

from .exceptions import DefinitionError

if TYPE_CHECKING:
    from .subset import Selection

_LABELS = ((str, list, tuple), "a label or a list of labels")
_FLAG = ((bool,), "True or False")
_TEXT = ((str,), "a string")
#: Option name -> (accepted types, what to call them in an error).
OPTIONS: dict[str, tuple[tuple[type, ...], str]] = {
    "comments": _TEXT,
    "natural_foreign": _FLAG,
    "natural_primary": _FLAG,
    "use_base_manager": _FLAG,
    "models": _LABELS,
    "excludes": _LABELS,
    "filename": _TEXT,
    "dump_command": _TEXT,
    "allow_drain": _FLAG,
    "is_drain": _FLAG,
}
#: Data formats a definition may ask for with its ``filename`` extension.
FORMATS = ("jsonl", "json")
#: Written into the archive when a definition does not choose: JSON Lines is
#: the one Django format whose deserializer reads line by line.
ARCHIVE_FORMAT = "jsonl"
#: Used by the ``--no-archive`` command lines when a definition does not
#: choose: plain ``dumpdata`` writes JSON, as diskette 0.6 printed it.
COMMAND_FORMAT = "json"


@dataclass(frozen=True)
class Definition:
    """One validated application definition, resolved to concrete models.

    :param name: the definition's name, also the default file name stem.
    :param models: the models dumped, in dump order.
    :param stem: data file name without extension.
    :param format: ``"json"`` or ``"jsonl"`` when the definition chose one
        through its ``filename``, else ``None``.
    :param selection: in a subset dump, the rows to dump
        (:mod:`diskette.subset`); ``None`` dumps every row.
    """

    name: str
    models: tuple[type[Model], ...]
    stem: str
    format: str | None = None
    comments: str = ""
    natural_foreign: bool = False
    natural_primary: bool = False
    use_base_manager: bool = False
    dump_command: str | None = None
    allow_drain: bool = False
    is_drain: bool = False
    excluded: tuple[type[Model], ...] = field(default=(), repr=False)
    selection: Selection | None = field(default=None, repr=False, compare=False)

    @property
    def labels(self) -> list[str]:
        """Model labels as ``dumpdata`` takes them (``auth.User``)."""
        return [model._meta.label for model in self.models]

    def filename(self, default_format: str = ARCHIVE_FORMAT) -> str:
        """Data file name, with the definition's format or ``default_format``."""
        return f"{self.stem}.{self.format or default_format}"


def load_definitions(raw: Any, source: str = "DISKETTE_APPS") -> list[Definition]:
    """Validate ``raw`` definitions and resolve them against the app registry.

    :param raw: a list of ``[name, {options}]`` pairs.
    :param source: where they come from, used to prefix error messages.
    :raises DefinitionError: naming the first definition and key at fault.
    """
    definitions, problems = resolve_definitions(raw, source)
    if problems:
        raise problems[0]
    return definitions


def resolve_definitions(
    raw: Any, source: str = "DISKETTE_APPS"
) -> tuple[list[Definition], list[DefinitionError]]:
    """Like :func:`load_definitions`, returning every problem instead of raising."""
    problems: list[DefinitionError] = []
    if not isinstance(raw, list | tuple):
        problems.append(
            DefinitionError(f"{source} must be a list, not {type(raw).__name__}")
        )
        return [], problems
    parsed: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(raw):
        where = f"{source}[{index}]"
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[1], dict)
        ):
            problems.append(DefinitionError(f"{where} must be a [name, {{options}}] pair"))
            continue
        name, options = item
        if not isinstance(name, str) or not name.strip():
            problems.append(DefinitionError(f"{where}: name must be a non-empty string"))
            continue
        where = f"{where} {name!r}"
        errors = _option_problems(options)
        problems.extend(DefinitionError(f"{where}: {e}") for e in errors)
        if not errors:
            parsed.append((where, {"name": name, **options}))

    resolved: dict[str, Definition] = {}
    for where, options in parsed:
        if not options.get("is_drain"):
            try:
                resolved[where] = _resolve_regular(options)
            except DefinitionError as exc:
                problems.append(DefinitionError(f"{where}: {exc}"))
    drains = [(where, options) for where, options in parsed if options.get("is_drain")]
    for where, _options in drains[1:]:
        problems.append(DefinitionError(f"{where}: only one definition may be a drain"))
    if drains:
        where, options = drains[0]
        try:
            resolved[where] = _resolve_drain(options, list(resolved.values()))
        except DefinitionError as exc:
            problems.append(DefinitionError(f"{where}: {exc}"))
    # Data files load in the order definitions are declared, the drain included.
    definitions = [resolved[where] for where, _ in parsed if where in resolved]
    problems.extend(_duplicate_problems(parsed, definitions))
    return definitions, problems


def _option_problems(options: dict[str, Any]) -> list[str]:
    errors = []
    for key, value in options.items():
        if key not in OPTIONS:
            errors.append(f"unknown option {key!r} (valid: {', '.join(OPTIONS)})")
            continue
        kinds, description = OPTIONS[key]
        if not isinstance(value, kinds) or (
            isinstance(value, list | tuple) and not all(isinstance(v, str) for v in value)
        ):
            errors.append(f"option {key!r} must be {description}, not {value!r}")
    filename = options.get("filename")
    if isinstance(filename, str):
        stem, fmt = split_filename(filename)
        if "/" in filename or "\\" in filename or not stem or stem.startswith("."):
            errors.append(f"option 'filename' {filename!r} must be a plain file name")
        elif fmt is not None and fmt not in FORMATS:
            errors.append(
                f"option 'filename' {filename!r} has an unsupported extension "
                f"(use {' or '.join('.' + f for f in FORMATS)}, or none)"
            )
    if options.get("is_drain") and "models" in options:
        errors.append("a drain takes no 'models': it collects what others leave")
    command = options.get("dump_command")
    if isinstance(command, str) and command not in get_commands():
        errors.append(f"option 'dump_command': unknown management command {command!r}")
    return errors


def split_filename(filename: str) -> tuple[str, str | None]:
    """Split a definition's ``filename`` into stem and format (``None`` if absent)."""
    stem, dot, extension = filename.rpartition(".")
    return (stem, extension) if dot else (filename, None)


def _resolve_regular(options: dict[str, Any]) -> Definition:
    labels = options.get("models")
    if labels is None:
        labels = [_app_label_for_name(options["name"])]
    models = resolve_labels(_as_list(labels), "models")
    excluded = resolve_labels(_as_list(options.get("excludes", [])), "excludes")
    dumped = tuple(m for m in models if m not in excluded)
    if not dumped:
        raise DefinitionError("'models' resolves to no model to dump")
    return _build(options, dumped, excluded)


def _resolve_drain(options: dict[str, Any], others: Sequence[Definition]) -> Definition:
    taken = {m for d in others for m in d.models}
    taken |= {m for d in others if not d.allow_drain for m in d.excluded}
    excluded = resolve_labels(_as_list(options.get("excludes", [])), "excludes")
    models = tuple(
        m
        for m in dumpable_models(apps.get_models())
        if m not in taken and m not in excluded
    )
    return _build(options, models, excluded)


def _build(
    options: dict[str, Any],
    models: tuple[type[Model], ...],
    excluded: Iterable[type[Model]],
) -> Definition:
    if "filename" in options:
        stem, fmt = split_filename(options["filename"])
    else:
        stem, fmt = default_stem(options["name"]), None
    if not stem:
        raise DefinitionError(
            f"name {options['name']!r} gives an empty file name; set 'filename'"
        )
    natural_foreign = options.get("natural_foreign", False)
    if natural_foreign and len(models) > 1:
        models = _natural_key_order(models)
    return Definition(
        name=options["name"],
        models=models,
        stem=stem,
        format=fmt,
        comments=options.get("comments", ""),
        natural_foreign=natural_foreign,
        natural_primary=options.get("natural_primary", False),
        use_base_manager=options.get("use_base_manager", False),
        dump_command=options.get("dump_command"),
        allow_drain=options.get("allow_drain", False),
        is_drain=options.get("is_drain", False),
        excluded=tuple(excluded),
    )


def _duplicate_problems(
    parsed: list[tuple[str, dict[str, Any]]], definitions: list[Definition]
) -> list[DefinitionError]:
    problems = []
    names: set[str] = set()
    for where, options in parsed:
        if options["name"] in names:
            problems.append(DefinitionError(f"{where}: duplicate name"))
        names.add(options["name"])
    stems: dict[str, str] = {}
    for definition in definitions:
        if definition.stem in stems:
            problems.append(
                DefinitionError(
                    f"{definition.name!r}: data file name {definition.stem!r} is "
                    f"already used by {stems[definition.stem]!r}; set 'filename'"
                )
            )
        stems.setdefault(definition.stem, definition.name)
    return problems


def everything() -> list[list[Any]]:
    """One definition for every model, to snapshot a whole database.

    Content types and permissions are left out: ``migrate`` recreates them,
    possibly with other primary keys, and every reference to them is written
    with natural keys, so the snapshot loads into any freshly migrated
    database. Every other row keeps its primary key.
    """
    labels = {config.label for config in apps.get_app_configs()}
    recreated = ("contenttypes.ContentType", "auth.Permission")
    installed = [label for label in recreated if label.split(".")[0] in labels]
    return [
        [
            "everything",
            {
                "comments": "Every model, for a snapshot of the whole database",
                "is_drain": True,
                "natural_foreign": True,
                "excludes": installed,
            },
        ]
    ]


def default_stem(name: str) -> str:
    """File name stem for a definition name: slugified, separators removed.

    ``"django.contrib.auth"`` gives ``"djangocontribauth"``, the name diskette
    0.6 used, so archives keep their member names across versions.
    """
    return slugify(name).replace("-", "").replace("_", "")


def resolve_labels(labels: Iterable[str], key: str) -> tuple[type[Model], ...]:
    """Turn ``app_label`` and ``app_label.Model`` labels into models.

    An app label stands for its concrete models. A model label may name an
    auto-created many-to-many table (``auth.User_groups``, as ``diskette_apps``
    lists them): it is accepted and dumps nothing by itself, since its rows
    are serialized with the model that declares the field.

    :raises DefinitionError: naming the unknown label and the option key.
    """
    models: list[type[Model]] = []
    for label in labels:
        app_label, dot, model_name = label.partition(".")
        try:
            app_config = apps.get_app_config(app_label)
        except LookupError:
            raise DefinitionError(
                f"{key}: unknown application label {app_label!r} in {label!r}"
            ) from None
        if not dot:
            found = list(dumpable_models(app_config.get_models()))
        else:
            try:
                model = app_config.get_model(model_name)
            except LookupError:
                raise DefinitionError(f"{key}: unknown model {label!r}") from None
            found = [] if model._meta.auto_created else [model]
        models.extend(m for m in found if m not in models)
    return tuple(models)


#: diskette's own app: its rows describe this database's loads, never data to move.
OWN_APP_LABEL = "diskette"


def dumpable_models(models: Iterable[type[Model]]) -> Iterable[type[Model]]:
    """Models whose rows belong in a dump: not proxies, not swapped out, not diskette's."""
    return (
        m
        for m in models
        if not m._meta.proxy and not m._meta.swapped and m._meta.app_label != OWN_APP_LABEL
    )


def _app_label_for_name(name: str) -> str:
    for app_config in apps.get_app_configs():
        if name in (app_config.name, app_config.label):
            return app_config.label
    raise DefinitionError(f"'models' is required: {name!r} is not an installed application")


def _natural_key_order(models: tuple[type[Model], ...]) -> tuple[type[Model], ...]:
    """Order models so natural key dependencies load first, as ``dumpdata`` does.

    The passes are ``dumpdata``'s (``sort_dependencies``), so without a
    cycle the order is the one it writes. A cycle (a chef's signature dish,
    cooked by that chef) is broken where loading can wait: at a model whose
    remaining dependencies are all through fields that may be empty, which
    ``loaddata`` and the batched load set once the other row exists. Django
    breaks it at whichever model it skipped last, which can be one outside
    the cycle whose rows need a row of it (an order line's dish), and such a
    dump does not load.
    """
    by_app: dict[Any, list[type[Model]]] = {}  # dumpdata reads them app by app
    for model in models:
        by_app.setdefault(model._meta.app_config, []).append(model)
    grouped = [model for app_models in by_app.values() for model in app_models]
    members = set(grouped)
    waiting = [(m, *_dependencies(m, members)) for m in reversed(grouped)]
    ordered: list[type[Model]] = []
    while waiting:
        placed, skipped = len(ordered), []
        while waiting:
            model, hard, soft = waiting.pop()
            if (hard | soft) <= set(ordered):
                ordered.append(model)
            else:
                skipped.append((model, hard, soft))
        if len(ordered) == placed:  # a whole pass placed nothing: a cycle
            can_wait = [i for i, (_, hard, _) in enumerate(skipped) if hard <= set(ordered)]
            ordered.append(skipped.pop(can_wait[-1] if can_wait else -1)[0])
        waiting = skipped
    return tuple(ordered)


def _dependencies(
    model: type[Model], members: set[type[Model]]
) -> tuple[set[type[Model]], set[type[Model]]]:
    """The models of ``members`` whose rows ``model``'s natural keys need first.

    Hard: what its ``natural_key.dependencies`` name, and the targets of
    foreign keys that may not be empty. Soft: targets of foreign keys that
    may be empty, and of plain many-to-many fields, which a load can set last.
    """
    hard: set[type[Model]] = set()
    soft: set[type[Model]] = set()
    for label in getattr(getattr(model, "natural_key", None), "dependencies", []):
        hard.add(apps.get_model(label))
    for fk in model._meta.fields:
        related = fk.related_model if fk.remote_field else None
        if related is not None and related is not model and hasattr(related, "natural_key"):
            (soft if fk.null else hard).add(related)
    for m2m in model._meta.many_to_many:
        related = m2m.related_model
        if (
            m2m.remote_field.through._meta.auto_created
            and related is not model
            and hasattr(related, "natural_key")
        ):
            soft.add(related)
    return hard & members, soft & members


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
