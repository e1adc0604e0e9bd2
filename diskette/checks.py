"""System checks: ``manage.py check`` names a bad ``DISKETTE_*`` setting.

The messages are the very ones the commands raise (both come from
:mod:`diskette.conf`, :mod:`diskette.definitions` and
:mod:`diskette.storages`), so a problem reads the same wherever it shows.

A storage that does not exist is only a warning here: system checks run
before ``migrate`` and ``runserver`` too, and a fresh checkout with no media
folder yet must still start. ``diskette_dump`` refuses it.
"""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from . import DOCS_URL, anonymize
from .anonymize.rules import MissingFaker
from .conf import DEFAULTS, base_directory, setting, settings_problems
from .data import MIGRATE_CREATED
from .definitions import resolve_definitions
from .exceptions import ConfigurationError, StorageError
from .storages import check_directory, resolve_storages
from .subset import subsets_problems

HINT = f"See {DOCS_URL}settings.md and {DOCS_URL}definitions.md"


@register("diskette")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report invalid settings (E001), definitions (E002), missing storages
    (W001), models that two definitions both dump (W002), storages the
    commands would refuse (W003: outside the base directory, overlapping),
    ``DISKETTE_*`` settings diskette does not read (W004), dump commands
    that would write content type or permission ids (W005), ``STORAGES``
    aliases ``STORAGES`` lacks (W009), subsets that cannot be dumped (E006),
    and the anonymization's (:func:`_anonymization_messages`).

    Never raises, whatever a setting holds: checks run before ``migrate`` and
    ``runserver``, so a crash here would stop the whole project. A setting of
    the wrong type is reported once (E001) and not looked into further.
    """
    problems = list(settings_problems(settings))
    messages: list[CheckMessage] = [
        Error(str(problem), hint=HINT, id="diskette.E001") for problem in problems
    ]
    wrong = {str(problem).split("[")[0].split(" ")[0] for problem in problems}
    if "DISKETTE_APPS" not in wrong:
        definitions, invalid = resolve_definitions(setting("DISKETTE_APPS", settings))
        messages += _definition_messages(definitions, invalid)
        if not any(name.startswith("DISKETTE_ANONYMIZE") for name in wrong):
            messages += _anonymization_messages(definitions)
    if not wrong & {"DISKETTE_STORAGES", "DISKETTE_BASE_DIR"}:
        entries = setting("DISKETTE_STORAGES", settings)
        messages += _storage_messages([e for e in entries if not isinstance(e, dict)])
        messages += _alias_messages(entries)
    if "DISKETTE_SUBSETS" not in wrong:
        messages += [
            Error(str(problem), hint=f"See {DOCS_URL}subset.md", id="diskette.E006")
            for problem in subsets_problems(setting("DISKETTE_SUBSETS", settings))
        ]
    return messages + _unknown_settings()


def _alias_messages(entries: list[Any]) -> list[CheckMessage]:
    """A ``STORAGES`` alias that ``STORAGES`` lacks (W009): in a
    ``DISKETTE_STORAGES`` entry, or as a registry other than the default.

    Only the name is checked: creating the storage would import its
    backend, which a check must not need.
    """
    defined = getattr(settings, "STORAGES", {}) or {}
    named = [
        (f"DISKETTE_STORAGES[{index}]", entry["storage"])
        for index, entry in enumerate(entries)
        if isinstance(entry, dict)
    ]
    registry = setting("DISKETTE_REGISTRY_STORAGE", settings)
    if registry != DEFAULTS["DISKETTE_REGISTRY_STORAGE"]:
        named.append(("DISKETTE_REGISTRY_STORAGE", registry))
    return [
        Warning(
            f"{name} names storage {alias!r}, which STORAGES does not define",
            hint=f"Add STORAGES[{alias!r}], or name another alias. {HINT}",
            id="diskette.W009",
        )
        for name, alias in named
        if alias not in defined
    ]


def _unknown_settings() -> list[CheckMessage]:
    """A ``DISKETTE_*`` setting diskette does not read (W004): a typo, most often.

    ``DISKETTE_STORAGE = [MEDIA_ROOT]`` would otherwise leave the media out
    of every dump without a word.
    """
    messages: list[CheckMessage] = []
    for name in sorted(n for n in dir(settings) if n.startswith("DISKETTE_")):
        if name in DEFAULTS:
            continue
        close = difflib.get_close_matches(name, DEFAULTS, n=1)
        messages.append(
            Warning(
                f"{name} is not a setting diskette reads"
                + (f": did you mean {close[0]}?" if close else ""),
                hint=HINT,
                id="diskette.W004",
            )
        )
    return messages


def _storage_messages(paths: list[Any]) -> list[CheckMessage]:
    """Missing storages (W001); once all exist, how they sit together (W003).

    Warnings, not errors: an error would stop ``runserver`` and ``migrate``,
    and only diskette's commands need the storages right (they refuse then).
    """
    base = base_directory(settings)
    messages: list[CheckMessage] = []
    for path in paths:
        try:
            check_directory(base / path, name=path)
        except StorageError as exc:
            messages.append(Warning(str(exc), hint=HINT, id="diskette.W001"))
    if not messages:
        try:
            resolve_storages(paths, base)
        except StorageError as exc:
            messages.append(Warning(str(exc), hint=HINT, id="diskette.W003"))
    return messages


def _definition_messages(definitions: list[Any], problems: list[Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = [
        Error(str(p), hint=HINT, id="diskette.E002") for p in problems
    ]
    owners: dict[str, str] = {}
    for definition in definitions:
        for label in definition.labels:
            if label in owners:
                messages.append(
                    Warning(
                        f"model {label} is dumped by both {owners[label]!r} and "
                        f"{definition.name!r}",
                        hint="Exclude it from one of them.",
                        id="diskette.W002",
                    )
                )
            owners.setdefault(label, definition.name)
        messages += _id_references(definition)
    return messages


def _anonymization_messages(definitions: list[Any]) -> list[CheckMessage]:
    """Rules that cannot run (E003); no secret (E004) or no Faker (E003),
    warnings W006 and W008 where ``DEBUG`` is on (a laptop sharing
    production's rules dumps nothing to anonymize, and must still start);
    fields of dumped models that may hold personal data and no rule covers
    (W007, E005 under ``DISKETTE_ANONYMIZE_STRICT`` for CI). Nothing when no
    rule is set.
    """
    if not anonymize.configured(settings):
        return []
    hint = f"See {DOCS_URL}anonymize.md"
    try:
        ruleset = anonymize.RuleSet(settings)
    except ConfigurationError as exc:
        return [Error(str(exc), hint=hint, id="diskette.E003")]
    messages: list[CheckMessage] = [
        Warning(str(problem), hint=hint, id="diskette.W008")
        if isinstance(problem, MissingFaker) and settings.DEBUG
        else Error(str(problem), hint=hint, id="diskette.E003")
        for problem in ruleset.problems()
    ]
    if messages:
        return messages
    secret = anonymize.secret_problem(settings)
    if secret and settings.DEBUG:
        messages.append(Warning(secret, hint=hint, id="diskette.W006"))
    elif secret:
        messages.append(Error(secret, hint=hint, id="diskette.E004"))
    dumped = {model for definition in definitions for model in definition.models}
    strict = setting("DISKETTE_ANONYMIZE_STRICT", settings)
    for label, names in ruleset.coverage(
        sorted(dumped, key=lambda m: m._meta.label_lower)
    ).items():
        text = f"{label}: no anonymization rule covers {', '.join(names)}"
        fix = f"Add a rule for each to DISKETTE_ANONYMIZE, or 'keep'. {hint}"
        messages.append(
            Error(text, hint=fix, id="diskette.E005")
            if strict
            else Warning(text, hint=fix, id="diskette.W007")
        )
    return messages


def _id_references(definition: Any) -> list[CheckMessage]:
    """A ``dump_command`` without ``natural_foreign`` that would write the ids
    of content types or permissions (W005).

    diskette's own dump names those rows by natural key always; a command of
    the project's writes what it writes, and such ids point at other models
    in a database whose ``migrate`` numbered them otherwise.
    """
    if not definition.dump_command or definition.natural_foreign:
        return []
    for model in definition.models:
        for field in [*model._meta.fields, *model._meta.many_to_many]:
            related = field.related_model if field.is_relation else None
            if related is not None and related._meta.label_lower in MIGRATE_CREATED:
                return [
                    Warning(
                        f"{definition.name!r}: dump_command {definition.dump_command!r} "
                        f"would write {model._meta.label}.{field.name} as ids, which "
                        "differ between databases",
                        hint="Set natural_foreign: True on this definition.",
                        id="diskette.W005",
                    )
                ]
    return []
