"""Starter definitions for every installed application (``diskette_apps``).

The list is deliberately explicit and opinionated: every model is listed
(auto-created many-to-many tables included) so a person sees what exists and
picks what to exclude; ``natural_foreign`` is always on, since it is right for
nearly every model; ``comments`` carries the app's verbose name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.apps import apps

from .definitions import OWN_APP_LABEL
from .exceptions import ConfigurationError


def application_definitions(
    include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[list[Any]]:
    """A ``[name, {options}]`` definition per installed app that has models.

    Apps come in ``INSTALLED_APPS`` order. ``include`` and ``exclude`` take app
    names (``django.contrib.auth``) or labels (``auth``).

    :raises ConfigurationError: for a name in the filters that is not installed.
    """
    include, exclude = list(include), list(exclude)
    known = {
        name for config in apps.get_app_configs() for name in (config.name, config.label)
    }
    for name in include + exclude:
        if name not in known:
            raise ConfigurationError(f"{name!r} is not an installed application")
    definitions = []
    for config in apps.get_app_configs():
        names = {config.name, config.label}
        if (include and not names & set(include)) or names & set(exclude):
            continue
        if config.label == OWN_APP_LABEL:
            continue  # diskette's own table describes loads here, never data to move
        models = list(config.get_models(include_auto_created=True))
        if not models:
            continue
        definitions.append(
            [
                config.name,
                {
                    "comments": str(config.verbose_name),
                    "natural_foreign": True,
                    "models": [model._meta.label for model in models],
                },
            ]
        )
    return definitions


def render(definitions: list[list[Any]], fmt: str = "json") -> str:
    """Definitions as indented JSON, or as Python to paste into settings."""
    if fmt == "json":
        return json.dumps(definitions, indent=4, ensure_ascii=False)
    return _python(definitions, 0)


def _python(value: Any, level: int) -> str:
    """Python source for JSON-like ``value``, laid out like the JSON output."""
    pad, inner = "    " * level, "    " * (level + 1)
    if isinstance(value, dict):
        items = "".join(
            f"{inner}{_python(k, 0)}: {_python(v, level + 1)},\n" for k, v in value.items()
        )
        return f"{{\n{items}{pad}}}"
    if isinstance(value, list):
        items = "".join(f"{inner}{_python(v, level + 1)},\n" for v in value)
        return f"[\n{items}{pad}]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid Python literal too
    return repr(value)
