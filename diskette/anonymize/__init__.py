"""Anonymization while the dump streams: personal data never leaves raw.

Rules (:mod:`.rules`) say which fields to replace and with what
(:mod:`.fakes`); an :class:`Anonymizer` applies them to the values the dump
reads, before anything is written:

- to the rows :mod:`diskette.rows` reads (``ModelRows``), before they are
  converted and encoded;
- to the instances Django's serializer is given, for the formats and models
  rows do not cover;
- to the instances natural keys are read from, and what those keys read, so
  a natural foreign key to an anonymized user holds the fake username the
  user's own row holds, and the archive loads.

A file field with a rule other than ``keep`` gets the rule's value (``drop``
clears it), and its files are left out of the archive
(:meth:`Anonymizer.dropped_files`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ObjectDoesNotExist, SuspiciousFileOperation
from django.db import DatabaseError, models, router
from django.db.models import Model
from django.db.models.fields.files import FieldFile

from .. import DOCS_URL
from ..conf import setting
from ..exceptions import ConfigurationError, DumpError
from ..objectstorage import local_folder, storage_identity
from .fakes import (
    IDENTIFIERS,
    Fake,
    Injective,
    Pools,
    Rule,
    Secret,
    fit,
    strategy,
    unique_fake,
)
from .rules import (
    FieldRule,
    RuleSet,
    configured,
    is_unique,
    secret_problem,
)

__all__ = [
    "Anonymizer",
    "RuleSet",
    "configured",
    "coverage",
    "for_dump",
    "secret_problem",
]

#: Rules whose fakes get no tag on a unique field: ``keep`` and ``null``
#: change nothing a constraint minds, ``hash`` is unique by nature, ``empty``
#: and ``mask`` are refused on unique fields, and ``drop``, ``password`` are
#: for file and password fields.
_UNTAGGED = frozenset({"keep", "null", "empty", "drop", "mask", "hash", "password"})
#: Set on an instance once anonymized: a fake anonymized again is another fake.
_DONE = "_diskette_anonymized"

ValueFunction = Callable[[Any], Any]


class Anonymizer:
    """The project's rules, keyed by its secret, ready to apply."""

    def __init__(self, ruleset: RuleSet, secret: str) -> None:
        self.ruleset = ruleset
        self.secret = Secret(secret)
        self.pools = Pools(self.secret, ruleset.locale)
        # A rule covering one unique field tags its fakes everywhere, so the
        # same value gets the same fake in every table.
        self.injective = {
            leaf
            for rule in ruleset.all_rules()
            for leaf in rule.rules()
            if leaf.name in IDENTIFIERS
            or (
                rule.rule is not None
                and rule.rule.name not in _UNTAGGED
                and is_unique(rule.field)
            )
        }
        self._longer: dict[Rule, dict[bytes, int]] = {}
        self._functions: dict[type[Model], list[tuple[Any, ValueFunction]]] = {}
        self._reads: dict[type[Model], bool] = {}
        self._relations: dict[type[Model], list[str]] = {}
        self._by_field: dict[Any, ValueFunction] = {}

    def functions(self, model: type[Model]) -> list[tuple[Any, ValueFunction]]:
        """(field, function) for ``model``'s concrete fields with a rule other
        than ``keep``, its parents' included; and for its foreign keys whose
        ``to_field`` has one, whose column holds that field's very value (a
        username): the same function, so the reference still finds its row.
        A field has one function whichever model asks, and so one column of
        fakes to keep apart."""
        concrete = model._meta.concrete_model
        found = self._functions.get(concrete)
        if found is None:
            found = self._functions[concrete] = [
                (rule.field, self._field_function(rule))
                for rule in self.ruleset.rules_of(concrete)
                if not (rule.rule is not None and rule.rule.name == "keep")
            ]
            for field in concrete._meta.concrete_fields:
                if not _forward(field) or field.target_field.primary_key:
                    continue
                # Cached before this lookup: a model referring to itself ends here.
                targets = dict(self.functions(field.related_model))
                if field.target_field in targets:
                    found.append((field, targets[field.target_field]))
        return found

    def touches(self, model: type[Model]) -> bool:
        """Whether ``model``, or what its natural foreign keys may read, has
        fields to anonymize."""
        return self.reads_rules(model) or any(
            self.reads_rules(f.related_model)
            for f in model._meta.get_fields()
            if f.is_relation
            and f.related_model is not None
            and not f.auto_created
            and (f.many_to_one or f.one_to_one or f.many_to_many)
        )

    def instance(self, obj: Model | None) -> None:
        """Anonymize ``obj``'s own fields in place, once."""
        if obj is None or obj.__dict__.get(_DONE):
            return
        obj.__dict__[_DONE] = True
        values = obj.__dict__
        for field, function in self.functions(type(obj)):
            if field.attname not in values:  # deferred: read it, as a serializer would
                getattr(obj, field.attname)
            value = values[field.attname]
            if field.is_relation and value is not None and not field.is_cached(obj):
                # Fetched by the value as read, and cached: a natural key is
                # read from the object, whatever the column then holds.
                with contextlib.suppress(ObjectDoesNotExist):
                    getattr(obj, field.name)
            if isinstance(value, FieldFile):  # as rows read it: the name
                value = value.name
            values[field.attname] = function(value)

    def natural(self, obj: Model | None) -> None:
        """Anonymize ``obj`` and every object its natural key may read
        (:meth:`reads_rules`), before the key is read."""
        if obj is None:
            return
        self.instance(obj)
        for name in self._key_relations(type(obj)):
            with contextlib.suppress(ObjectDoesNotExist):
                self.natural(getattr(obj, name))

    def reads_rules(self, model: type[Model]) -> bool:
        """Whether ``model``'s natural key may read a field with a rule: its
        own, or those of what it refers to (:meth:`_key_relations`)."""
        found = self._reads.get(model)
        if found is None:
            self._reads[model] = False  # a key that reads itself ends here
            found = self._reads[model] = bool(self.functions(model)) or bool(
                self._key_relations(model)
            )
        return found

    def _key_relations(self, model: type[Model]) -> list[str]:
        """Forward relations (foreign keys, one-to-ones) ``model``'s natural
        key may follow to fields with rules: those to the models
        ``natural_key.dependencies`` names when it says (Django's own account
        of what a natural key reads), else all of them, at any depth."""
        found = self._relations.get(model)
        if found is None:
            self._relations[model] = []
            key = getattr(model, "natural_key", None)
            named = getattr(key, "dependencies", None)
            wanted = None if named is None else {label.lower() for label in named}
            found = self._relations[model] = [
                field.name
                for field in model._meta.concrete_fields
                if _forward(field)
                and (wanted is None or field.related_model._meta.label_lower in wanted)
                and self.reads_rules(field.related_model)
            ]
        return found

    def dropped_files(self, using: str) -> Iterator[Path | tuple[int, str]]:
        """Files of the file fields with a rule, to leave out of the archive:
        those of every row in ``using``, dumped or not.

        A file on a local folder is told by its real path; one in a storage
        without folders (S3) by the storage (:func:`storage_identity`) and its
        name there.

        :raises DumpError: naming the field whose names cannot be read.
        """
        for model, field in self._file_fields():
            if not model._meta.managed or not router.allow_migrate_model(using, model):
                continue  # no table of it here
            storage = field.storage
            names = (
                model._base_manager.db_manager(using)
                .exclude(**{field.attname: ""})
                .exclude(**{f"{field.attname}__isnull": True})
                .values_list(field.attname, flat=True)
            )
            remote = local_folder(storage) is None
            identity = storage_identity(storage)
            try:
                for name in names.iterator():
                    if remote:
                        yield (identity, name)
                        continue
                    try:
                        yield Path(os.path.realpath(storage.path(name)))
                    except SuspiciousFileOperation:  # outside the storage: not archived
                        continue
            except DatabaseError as exc:
                raise DumpError(
                    f"cannot read the file names of {model._meta.label_lower}."
                    f"{field.name} to leave its files out: {exc}"
                ) from exc

    def described(self) -> dict[str, Any]:
        """What the manifest records: the rules' fingerprint and the fields
        each model has anonymized (never a value, never the secret)."""
        fields: dict[str, dict[str, Any]] = {}
        for rule in self.ruleset.all_rules():
            label = rule.field.model._meta.label_lower
            fields.setdefault(label, {})[rule.field.name] = rule.describe()
        return {
            "rules": self.ruleset.fingerprint(),
            "locale": self.ruleset.locale,
            "fields": {label: fields[label] for label in sorted(fields)},
        }

    def _file_fields(self) -> Iterator[tuple[type[Model], Any]]:
        for rule in self.ruleset.all_rules():
            field = rule.field
            if (
                isinstance(field, models.FileField)
                and rule.rule
                and rule.rule.name != "keep"
            ):
                yield field.model, field

    def _field_function(self, rule: FieldRule) -> ValueFunction:
        function = self._by_field.get(rule.field)
        if function is None:
            function = self._by_field[rule.field] = self._compile(rule)
        return function

    def _compile(self, rule: FieldRule) -> ValueFunction:
        field = rule.field
        if rule.rule is not None:
            return self._value_function(rule.rule, field, unique=is_unique(field))
        paths = [
            (path, self._value_function(leaf, field, unique=False))
            for path, leaf in rule.paths
        ]
        return lambda value: _by_paths(value, paths)

    def _value_function(self, rule: Rule, field: Any, *, unique: bool) -> ValueFunction:
        label = f"{field.model._meta.label_lower}.{field.name}"
        fake = _reported(strategy(rule, self.secret, self.pools, field), rule, label)
        digest = self.secret.digester(rule)
        longer = self._longer.setdefault(rule, {})
        tagged = rule in self.injective
        if tagged or (unique and rule.name == "hash"):
            # A non-unique field of an injective rule is tagged alike, so a
            # value gets the same fake there, but its values may repeat.
            column = Injective() if unique else None

            def apply_unique(value: Any) -> Any:
                if value is None or value == "":
                    return value
                return unique_fake(
                    fake, value, digest(value), field, column, longer, label, tag=tagged
                )

            return apply_unique

        limit = getattr(field, "max_length", None)

        def apply(value: Any) -> Any:
            if value is None or value == "":
                return value
            made = fake(value, digest(value))
            if type(made) is str:  # most fakes: cut here, without a call
                return made[:limit] if limit else made
            return fit(made, field)

        return apply


def _reported(fake: Fake, rule: Rule, label: str) -> Fake:
    """``fake``, its failures one :class:`DumpError` naming the field and the
    rule, and never the value (an exception's text may hold it)."""

    def reported(value: Any, digest: bytes) -> Any:
        try:
            return fake(value, digest)
        except DumpError:
            raise
        except Exception as exc:
            raise DumpError(
                f"anonymizing {label} with the rule {rule.name!r} failed "
                f"({type(exc).__name__}); fix the rule or its callable"
            ) from None

    return reported


def _forward(field: Any) -> bool:
    """Whether ``field`` is a foreign key or a one-to-one, holding a column."""
    return bool(
        field.is_relation
        and (field.many_to_one or field.one_to_one)
        and field.related_model is not None
        and getattr(field, "column", None) is not None
    )


def _by_paths(value: Any, paths: list[tuple[tuple[str, ...], ValueFunction]]) -> Any:
    """``value`` (decoded JSON) with each key path's leaves replaced."""
    for path, function in paths:
        value = _replace(value, path, function)
    return value


def _replace(value: Any, path: tuple[str, ...], function: ValueFunction) -> Any:
    if not path:
        return function(value)
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [head] if head in value else []
        if not keys:
            return value
        replaced = dict(value)
        for key in keys:
            replaced[key] = _replace(value[key], rest, function)
        return replaced
    if isinstance(value, list):
        if head == "*":
            return [_replace(item, rest, function) for item in value]
        if head.isdigit() and int(head) < len(value):
            items = list(value)
            items[int(head)] = _replace(value[int(head)], rest, function)
            return items
    return value


def for_dump(requested: bool = True, settings: Any = django_settings) -> Anonymizer | None:
    """The anonymizer a dump applies, or ``None`` for a raw dump.

    :param requested: ``False`` for ``--no-anonymize``.
    :raises ConfigurationError: a raw dump the settings forbid, rules that
        cannot run, or rules without a secret; each in one line.
    """
    required = setting("DISKETTE_ANONYMIZE_REQUIRED", settings)
    if not requested:
        if required:
            raise ConfigurationError(
                "--no-anonymize: DISKETTE_ANONYMIZE_REQUIRED forbids raw dumps here; "
                "leave the option out"
            )
        return None
    if not configured(settings):
        if required:
            raise ConfigurationError(
                "DISKETTE_ANONYMIZE_REQUIRED is set but no rule is: set "
                f"DISKETTE_ANONYMIZE (see {DOCS_URL}anonymize.md)"
            )
        return None
    ruleset = RuleSet(settings)
    for problem in ruleset.problems():
        raise problem
    missing = secret_problem(settings)
    if missing:
        raise ConfigurationError(f"{missing}, or pass --no-anonymize for a raw dump")
    return Anonymizer(ruleset, setting("DISKETTE_ANONYMIZE_SECRET", settings))


def coverage(
    dumped: Iterable[type[Model]], settings: Any = django_settings
) -> dict[str, list[str]]:
    """Fields of the ``dumped`` models that may hold personal data and no rule
    covers, by model label; empty when no rule is set (nothing is promised)
    or the rules cannot be read (the checks say why)."""
    if not configured(settings):
        return {}
    try:
        return RuleSet(settings).coverage(dumped)
    except ConfigurationError:
        return {}
