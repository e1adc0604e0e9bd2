"""Which rule covers which field: ``DISKETTE_ANONYMIZE*`` read against the models.

Three settings give rules, the first that names a field wins:

- ``DISKETTE_ANONYMIZE``: per model label, per field name;
- ``DISKETTE_ANONYMIZE_FIELDS``: per field name, for every model;
- ``DISKETTE_ANONYMIZE_TYPES``: per field class (``"EmailField"`` or a
  dotted path), for every model, the closest class first.

The last two cover third-party models without touching them; they skip
primary keys, relations and fields with ``choices``, which hold no personal
data, and the models ``migrate`` creates, whose natural keys must mean the
same everywhere. A rule is a name (:data:`~diskette.anonymize.fakes.BUILT_INS`,
a Faker provider, a dotted path), a ``{"rule": name, **options}`` dict, or
for a ``JSONField`` a ``{"key.path": rule}`` dict (``*`` matches every key
or item).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings as django_settings
from django.db import models
from django.db.models import Field, Model

from ..conf import setting
from ..data import MIGRATE_CREATED
from ..exceptions import ConfigurationError
from .fakes import Rule, check_rule

#: Field kinds that may hold personal data: the coverage check lists those
#: no rule covers.
SENSITIVE = (
    models.CharField,
    models.TextField,
    models.EmailField,
    models.URLField,
    models.GenericIPAddressField,
    models.JSONField,
    models.FileField,
    models.BinaryField,
)
#: Shortest secret accepted: HMAC keys shorter than this are guessable.
MIN_SECRET = 16


@dataclass(frozen=True)
class FieldRule:
    """The rule of one field: a plain rule, or rules by JSON key path.

    :param source: the setting that gave it, for messages.
    """

    field: Any
    rule: Rule | None
    paths: tuple[tuple[tuple[str, ...], Rule], ...] = ()
    source: str = ""

    def rules(self) -> Iterator[Rule]:
        if self.rule is not None:
            yield self.rule
        for _, rule in self.paths:
            yield rule

    def describe(self) -> Any:
        if self.rule is not None:
            return self.rule.describe()
        return {".".join(path): rule.describe() for path, rule in self.paths}


def parse_rule(raw: Any, where: str) -> Rule:
    """A rule from its settings form.

    :raises ConfigurationError: naming ``where`` it is written.
    """
    if isinstance(raw, str) and raw:
        return Rule(raw)
    if isinstance(raw, dict) and isinstance(raw.get("rule"), str):
        options = tuple(sorted((str(k), v) for k, v in raw.items() if k != "rule"))
        return Rule(raw["rule"], options)
    raise ConfigurationError(
        f"{where} must be a rule name such as 'email', or {{'rule': name, **options}}, "
        f"not {raw!r}"
    )


def parse_field_rule(field: Any, raw: Any, where: str) -> FieldRule:
    """The rule ``raw`` for ``field``; key paths only for a JSON field."""
    if isinstance(raw, dict) and "rule" not in raw:
        if not isinstance(field, models.JSONField):
            raise ConfigurationError(
                f"{where}: rules by key path are for JSON fields; "
                f"{field.name} is a {type(field).__name__}"
            )
        if not raw:
            raise ConfigurationError(f"{where} names no key path")
        paths = tuple(
            (tuple(str(path).split(".")), parse_rule(rule, f"{where}[{path!r}]"))
            for path, rule in raw.items()
        )
        return FieldRule(field, None, paths, source=where)
    return FieldRule(field, parse_rule(raw, where), source=where)


def configured(settings: Any = django_settings) -> bool:
    """Whether any anonymization rule is set: then dumps anonymize."""
    return any(
        setting(name, settings)
        for name in (
            "DISKETTE_ANONYMIZE",
            "DISKETTE_ANONYMIZE_FIELDS",
            "DISKETTE_ANONYMIZE_TYPES",
        )
    )


class RuleSet:
    """Every field rule of the project, resolved against the installed models.

    :raises ConfigurationError: on the first rule naming an unknown model,
        field or field class, or one its field cannot take.
    """

    def __init__(self, settings: Any = django_settings) -> None:
        self.by_model = _dict_setting("DISKETTE_ANONYMIZE", settings)
        self.by_name = _dict_setting("DISKETTE_ANONYMIZE_FIELDS", settings)
        self.by_type = _dict_setting("DISKETTE_ANONYMIZE_TYPES", settings)
        self.locale: str = setting("DISKETTE_ANONYMIZE_LOCALE", settings)
        #: Rules of fields named by model, by (concrete model, field name).
        self.explicit: dict[tuple[type[Model], str], FieldRule] = {}
        for label, fields in self.by_model.items():
            model = _model(label)
            if not isinstance(fields, dict):
                raise ConfigurationError(
                    f"DISKETTE_ANONYMIZE[{label!r}] must map field names to rules, "
                    f"not {fields!r}"
                )
            for name, raw in fields.items():
                where = f"DISKETTE_ANONYMIZE[{label!r}][{name!r}]"
                field = _field(model, name, where)
                owner = field.model._meta.concrete_model
                rule = parse_field_rule(field, raw, where)
                _check_target(rule)
                earlier = self.explicit.get((owner, field.name))
                if earlier is not None and earlier.describe() != rule.describe():
                    raise ConfigurationError(
                        f"{where} differs from {earlier.source}: both cover "
                        f"{owner._meta.label_lower}.{field.name}"
                    )
                self.explicit[(owner, field.name)] = rule
        self.types = [(_field_class(name), name) for name in self.by_type]
        self._cache: dict[type[Model], list[FieldRule]] = {}

    def rules_of(self, model: type[Model]) -> list[FieldRule]:
        """The rules of ``model``'s concrete fields, its parents' included."""
        concrete = model._meta.concrete_model
        found = self._cache.get(concrete)
        if found is None:
            found = self._cache[concrete] = [
                rule
                for field in concrete._meta.concrete_fields
                if (rule := self.rule_of(field)) is not None
            ]
        return found

    def rule_of(self, field: Any) -> FieldRule | None:
        """The rule of ``field`` (of its own model), or ``None``."""
        owner = field.model._meta.concrete_model
        explicit = self.explicit.get((owner, field.name))
        if explicit is not None:
            return explicit
        if not _general(field):
            return None
        if field.name in self.by_name:
            where = f"DISKETTE_ANONYMIZE_FIELDS[{field.name!r}]"
            return _checked(parse_field_rule(field, self.by_name[field.name], where))
        for kind in type(field).__mro__:
            for cls, name in self.types:
                if cls is kind:
                    where = f"DISKETTE_ANONYMIZE_TYPES[{name!r}]"
                    return _checked(parse_field_rule(field, self.by_type[name], where))
        return None

    def all_rules(self) -> Iterator[FieldRule]:
        """Every field rule over the installed models, each field once (with
        the model that has its column)."""
        for model in apps.get_models():
            if not model._meta.proxy:
                yield from (r for r in self.rules_of(model) if r.field.model is model)

    def problems(self) -> Iterator[ConfigurationError]:
        """What keeps these rules from running, beyond what building them
        refused: one error each."""
        try:
            field_rules = list(self.all_rules())
        except ConfigurationError as exc:
            yield exc
            return
        names = {
            field.name
            for model in apps.get_models()
            for field in model._meta.concrete_fields
            if _general(field)
        }
        for name in self.by_name:
            if name not in names:
                yield ConfigurationError(
                    f"DISKETTE_ANONYMIZE_FIELDS[{name!r}] matches no field of any "
                    "installed model (primary keys, relations and fields with choices "
                    "are never matched by name); check the name"
                )
        providers = [
            rule
            for field_rule in field_rules
            for rule in field_rule.rules()
            if rule.kind == "faker"
        ]
        if providers and importlib.util.find_spec("faker") is None:
            yield MissingFaker(
                f"{len(providers)} anonymization rules are Faker providers "
                f"({providers[0].name!r}...), and Faker is not installed: "
                "pip install 'django-diskette[anonymize]'"
            )
            return
        seen: set[Rule] = set()
        for field_rule in field_rules:
            for rule in field_rule.rules():
                if rule in seen:
                    continue
                seen.add(rule)
                reason = check_rule(rule, self.locale)
                if reason:
                    yield ConfigurationError(f"{field_rule.source}: {reason}")

    def coverage(self, dumped: Iterable[type[Model]]) -> dict[str, list[str]]:
        """Fields of the ``dumped`` models that may hold personal data and no
        rule covers, by model label (:func:`uncovered`)."""
        found: dict[str, list[str]] = {}
        for model in dumped:
            names = uncovered(self, model)
            if names:
                found[model._meta.label_lower] = names
        return found

    def fingerprint(self) -> str:
        """A digest of the rules in force (never of the secret): two archives
        with the same fingerprint were anonymized alike."""
        described = sorted(
            (f"{r.field.model._meta.label_lower}.{r.field.name}", r.describe())
            for r in self.all_rules()
        )
        text = json.dumps([described, self.locale], sort_keys=True, default=str)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class MissingFaker(ConfigurationError):
    """Rules name Faker providers where Faker is not installed: only where a
    dump runs is that an error (a laptop sharing production's rules dumps
    nothing to anonymize)."""


def secret_problem(settings: Any = django_settings) -> str | None:
    """Why ``DISKETTE_ANONYMIZE_SECRET`` cannot key the fakes, or ``None``."""
    secret = setting("DISKETTE_ANONYMIZE_SECRET", settings)
    if secret is None or secret == "":
        return (
            "DISKETTE_ANONYMIZE_SECRET is not set: anonymization rules need a secret "
            "(set it from the environment where dumps run)"
        )
    if not isinstance(secret, str) or len(secret) < MIN_SECRET:
        return (
            f"DISKETTE_ANONYMIZE_SECRET must be a string of {MIN_SECRET} characters or more"
        )
    return None


def uncovered(ruleset: RuleSet, model: type[Model]) -> list[str]:
    """Names of ``model``'s own fields that may hold personal data and no rule covers."""
    if model._meta.label_lower in MIGRATE_CREATED or model._meta.proxy:
        return []
    covered = {rule.field.name for rule in ruleset.rules_of(model)}
    # A generic relation's object id holds another row's key, not a person's.
    covered |= {f.fk_field for f in model._meta.private_fields if hasattr(f, "fk_field")}
    return [
        field.name
        for field in model._meta.concrete_model._meta.local_concrete_fields
        if isinstance(field, SENSITIVE)
        and not field.primary_key
        and not field.is_relation
        and not field.choices
        and field.name not in covered
    ]


def unique_fields(model: type[Model]) -> set[str]:
    """Fields of ``model`` whose values must stay apart: unique ones, those of
    a unique constraint, and the text fields its ``natural_key()`` returns."""
    opts = model._meta
    names = {f.name for f in opts.concrete_fields if f.unique}
    for group in opts.unique_together:
        names.update(group)
    for constraint in opts.constraints:
        if isinstance(constraint, models.UniqueConstraint):
            names.update(constraint.fields)
    return names | _natural_key_fields(model)


def is_unique(field: Any) -> bool:
    """Whether ``field``'s values must stay apart in any model that has its
    column: its own, or a child whose natural key returns it."""
    return any(
        field in model._meta.concrete_fields and field.name in unique_fields(model)
        for model in {field.model, *_children(field.model)}
    )


def _children(model: type[Model]) -> list[type[Model]]:
    return [m for m in apps.get_models() if m is not model and issubclass(m, model)]


def _natural_key_fields(model: type[Model]) -> set[str]:
    """The text fields whose values ``natural_key()`` returns.

    Found by asking it of an instance whose text fields hold markers; a
    natural key that reads a relation or fails tells nothing, and unique
    constraints cover most of those.
    """
    if not hasattr(model, "natural_key"):
        return set()
    obj = object.__new__(model)  # no __init__: no signal, no default called
    obj._state = models.base.ModelState()
    markers = {}
    for field in model._meta.concrete_fields:
        obj.__dict__[field.attname] = None
        if isinstance(field, (models.CharField, models.TextField)):
            marker = f"\x00diskette:{field.attname}\x00"
            obj.__dict__[field.attname] = marker
            markers[marker] = field.name
    try:
        key = obj.natural_key()
    except Exception:  # what a natural key reads is its own business
        return set()
    return {markers[value] for value in _flatten(key) if value in markers}


def _flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def _general(field: Any) -> bool:
    """Whether rules by field name or type may cover ``field``."""
    return not (
        field.primary_key
        or field.is_relation
        or field.choices
        or field.model._meta.label_lower in MIGRATE_CREATED
        or field.model._meta.app_label == "diskette"
        or getattr(field, "generated", False)
    )


def _checked(rule: FieldRule) -> FieldRule:
    _check_target(rule)
    return rule


def _check_target(rule: FieldRule) -> None:
    """Refuse a rule its field cannot take, naming where it is written."""
    field, where = rule.field, rule.source
    label = f"{field.model._meta.label_lower}.{field.name}"
    if field.primary_key:
        raise ConfigurationError(
            f"{where}: {label} is a primary key, which references need unchanged; "
            "anonymize the fields it is made of instead"
        )
    if field.is_relation:
        raise ConfigurationError(
            f"{where}: {label} is a relation; anonymize the related model's fields instead"
        )
    if field.model._meta.label_lower in MIGRATE_CREATED:
        raise ConfigurationError(
            f"{where}: {label} is made by migrate and named by natural key everywhere; "
            "it holds no personal data to anonymize"
        )
    for target in rule.rules():
        if target.name == "null" and not field.null and rule.rule is not None:
            raise ConfigurationError(
                f"{where}: {label} cannot be NULL; use 'empty' or another rule"
            )
        if isinstance(field, models.BinaryField) and target.name not in ("null", "keep"):
            raise ConfigurationError(
                f"{where}: {label} holds bytes; only 'null' or 'keep' apply to it"
            )
        if target.name == "mask" and not isinstance(
            field, (models.CharField, models.TextField)
        ):
            raise ConfigurationError(
                f"{where}: 'mask' is for text fields; {label} is a {type(field).__name__}"
            )
        if target.name == "drop" and not isinstance(field, models.FileField):
            raise ConfigurationError(
                f"{where}: 'drop' is for file fields; {label} is a {type(field).__name__}"
            )
        if target.name in ("empty", "mask") and is_unique(field):
            raise ConfigurationError(
                f"{where}: {label} must stay unique, which {target.name!r} cannot "
                "keep; use 'hash' or a provider"
            )


def _dict_setting(name: str, settings: Any) -> dict[str, Any]:
    value = setting(name, settings)
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def _model(label: Any) -> type[Model]:
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError, TypeError, AttributeError):
        raise ConfigurationError(
            f"DISKETTE_ANONYMIZE: {label!r} is not an installed model "
            "(write it as 'app_label.ModelName')"
        ) from None
    if model._meta.swapped:
        raise ConfigurationError(
            f"DISKETTE_ANONYMIZE: {label!r} is swapped out for {model._meta.swapped} "
            f"(its setting {model._meta.swappable}); write the rules for that model"
        )
    return model


def _field(model: type[Model], name: Any, where: str) -> Field[Any, Any]:
    try:
        field = model._meta.get_field(name)
    except Exception:
        known = ", ".join(f.name for f in model._meta.concrete_fields)
        raise ConfigurationError(
            f"{where}: {model._meta.label} has no field {name!r} (it has {known})"
        ) from None
    if getattr(field, "column", None) is None:
        raise ConfigurationError(
            f"{where}: {name!r} is not a column of {model._meta.label}"
        )
    return field


def _field_class(name: Any) -> type[Any]:
    """The field class a ``DISKETTE_ANONYMIZE_TYPES`` key names."""
    from django.utils.module_loading import import_string

    where = f"DISKETTE_ANONYMIZE_TYPES[{name!r}]"
    if not isinstance(name, str):
        raise ConfigurationError(f"{where}: a field class is named by a string")
    try:
        cls = import_string(name) if "." in name else getattr(models, name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigurationError(
            f"{where}: no field class {name!r} (write 'EmailField' or a dotted path)"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Field)):
        raise ConfigurationError(f"{where}: {name!r} is not a model field class")
    return cls
