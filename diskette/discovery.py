"""Starter definitions for every installed application (``diskette_apps``).

The list is deliberately explicit and opinionated: every model is listed
(auto-created many-to-many tables included) so a person sees what exists and
picks what to exclude; ``natural_foreign`` is always on, since it is right for
nearly every model; ``comments`` carries the app's verbose name.

Some models are listed but should usually not be dumped (:data:`LEFT_OUT`).
The JSON output keeps them, as the user guide shows it (JSON holds no
comments), and the command says so on the standard error; the Python output,
the one meant for pasting into settings, has them commented out with the
reason beside each, so the list is a sound starter as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.apps import apps

from .definitions import OWN_APP_LABEL
from .exceptions import ConfigurationError

#: Models a starter list should leave out, and why: ``migrate`` recreates the
#: first two (dumped, they clash with the rows it made), the others are one
#: site's logins and admin history (docs/definitions.md says the same).
LEFT_OUT = {
    "contenttypes.ContentType": "migrate recreates it",
    "auth.Permission": "migrate recreates it",
    "sessions.Session": "logins of the source site, rarely worth carrying",
    "admin.LogEntry": "the admin's history, rarely worth carrying",
}


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


def left_out(definitions: list[list[Any]]) -> list[str]:
    """The models of ``definitions`` a starter list should leave out."""
    return [
        label
        for _, options in definitions
        for label in options.get("models", [])
        if label in LEFT_OUT
    ]


def render(definitions: list[list[Any]], fmt: str = "json") -> str:
    """Definitions as indented JSON, or as Python to paste into settings.

    In Python, the models of :data:`LEFT_OUT` are commented out with their
    reason; a definition left with no model is commented out whole.
    """
    if fmt == "json":
        return json.dumps(definitions, indent=4, ensure_ascii=False)
    return "[\n" + "".join(_python_definition(d) for d in definitions) + "]"


def _python_definition(definition: list[Any]) -> str:
    """One definition as an item of the Python list, left-out models commented."""
    lines = f"    {_python(definition, 1)},".splitlines()
    models = definition[1].get("models", [])
    if models and all(label in LEFT_OUT for label in models):
        why = "; ".join(f"{label}: {LEFT_OUT[label]}" for label in models)
        block = [f"Left out ({why}):", *(line[4:] for line in lines)]
        return "".join(f"    # {line}\n" for line in block)  # uncomments as one block
    out = []
    for line in lines:
        label = line.strip().removesuffix(",")
        reason = LEFT_OUT.get(label[1:-1]) if label.startswith('"') else None
        out.append(f"{_commented(line)}  # {reason}" if reason else line)
    return "".join(line + "\n" for line in out)


def _commented(line: str) -> str:
    """``line`` as a comment at its own indentation."""
    text = line.lstrip(" ")
    return f"{line[: len(line) - len(text)]}# {text}"


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
