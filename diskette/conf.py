"""Resolve the ``DISKETTE_*`` settings into one validated object.

Settings are read when :func:`get_settings` is called, never at import time,
so ``override_settings`` works in tests and a project never has to import
anything from diskette into its own settings module. Every default lives here
and nowhere else; ``docs/settings.md`` documents them.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.db import connections

from .exceptions import ConfigurationError

DEFAULT_DUMP_FILENAME = "diskette{features}.tar.gz"
#: Archives hold production data (password hashes, personal data): only their
#: owner may read them unless the project says otherwise.
DEFAULT_DUMP_PERMISSIONS = 0o600
FILENAME_FIELDS = frozenset({"features", "date"})
DEFAULT_DOWNLOAD_PROTOCOLS = ("https://", "http://")
#: Seconds a download may wait for the server, per connection or read.
DEFAULT_DOWNLOAD_TIMEOUT = 10


@dataclass(frozen=True)
class DisketteSettings:
    """The project's diskette settings, defaults applied and validated.

    :param apps: raw application definitions (``DISKETTE_APPS``), validated
        separately by :mod:`diskette.definitions` since that needs the app
        registry.
    :param storages: storage directories (``DISKETTE_STORAGES``).
    :param storages_excludes: ``fnmatch`` patterns relative to each storage.
    :param dump_path: directory where archives are written; ``None`` means the
        current directory at the time of the dump.
    :param dump_filename: archive name template, ``{features}`` and ``{date}``.
    :param dump_permissions: mode applied to the written archive.
    :param load_storages_path: base directory storages are restored under;
        ``None`` means the current directory at the time of the load.
    :param download_allowed_protocols: URL prefixes ``diskette_load`` accepts.
    :param download_allow_redirect: whether a download may follow redirects.
    :param download_timeout: seconds to wait for the server, per operation.
    """

    apps: Any = ()
    storages: tuple[Path, ...] = ()
    storages_excludes: tuple[str, ...] = ()
    dump_path: Path | None = None
    dump_filename: str = DEFAULT_DUMP_FILENAME
    dump_permissions: int = DEFAULT_DUMP_PERMISSIONS
    load_storages_path: Path | None = None
    download_allowed_protocols: tuple[str, ...] = DEFAULT_DOWNLOAD_PROTOCOLS
    download_allow_redirect: bool = False
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT


def get_settings(settings: Any = django_settings) -> DisketteSettings:
    """Read and validate the ``DISKETTE_*`` settings.

    :raises ConfigurationError: naming the first setting at fault.
    """
    problems = list(settings_problems(settings))
    if problems:
        raise problems[0]
    return DisketteSettings(
        apps=getattr(settings, "DISKETTE_APPS", ()),
        storages=tuple(Path(p) for p in getattr(settings, "DISKETTE_STORAGES", ())),
        storages_excludes=tuple(getattr(settings, "DISKETTE_STORAGES_EXCLUDES", ())),
        dump_path=_optional_path(getattr(settings, "DISKETTE_DUMP_PATH", None)),
        dump_filename=getattr(settings, "DISKETTE_DUMP_FILENAME", DEFAULT_DUMP_FILENAME),
        dump_permissions=getattr(
            settings, "DISKETTE_DUMP_PERMISSIONS", DEFAULT_DUMP_PERMISSIONS
        ),
        load_storages_path=_optional_path(
            getattr(settings, "DISKETTE_LOAD_STORAGES_PATH", None)
        ),
        download_allowed_protocols=tuple(
            getattr(
                settings, "DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS", DEFAULT_DOWNLOAD_PROTOCOLS
            )
        ),
        download_allow_redirect=getattr(
            settings, "DISKETTE_DOWNLOAD_ALLOW_REDIRECT", False
        ),
        download_timeout=getattr(
            settings, "DISKETTE_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT
        ),
    )


def settings_problems(settings: Any = django_settings) -> Iterator[ConfigurationError]:
    """Yield one error per invalid ``DISKETTE_*`` setting (shape only).

    Shared by :func:`get_settings` and the system checks, so ``manage.py
    check`` and the commands word a problem the same way. ``DISKETTE_APPS``
    is left to :mod:`diskette.definitions`, which needs the app registry.
    """
    for key in ("DISKETTE_STORAGES", "DISKETTE_STORAGES_EXCLUDES"):
        value = getattr(settings, key, [])
        kinds: tuple[type, ...] = (str,) if key.endswith("EXCLUDES") else (str, Path)
        if not isinstance(value, list | tuple):
            yield ConfigurationError(f"{key} must be a list, not {type(value).__name__}")
            continue
        for index, item in enumerate(value):
            if not isinstance(item, kinds):
                names = " or ".join(k.__name__ for k in kinds)
                yield ConfigurationError(
                    f"{key}[{index}] must be a {names}, not {type(item).__name__}"
                )
    for key in ("DISKETTE_DUMP_PATH", "DISKETTE_LOAD_STORAGES_PATH"):
        value = getattr(settings, key, None)
        if value is not None and not isinstance(value, str | Path):
            yield ConfigurationError(f"{key} must be a path, not {type(value).__name__}")
    filename = getattr(settings, "DISKETTE_DUMP_FILENAME", DEFAULT_DUMP_FILENAME)
    try:
        check_archive_filename(filename)
    except ConfigurationError as exc:
        yield ConfigurationError(f"DISKETTE_DUMP_FILENAME: {exc}")
    protocols = getattr(settings, "DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS", ())
    if not isinstance(protocols, list | tuple) or not all(
        isinstance(p, str) and p.endswith("://") for p in protocols
    ):
        yield ConfigurationError(
            f"DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS must be a list such as "
            f"['https://'], not {protocols!r}"
        )
    if not isinstance(getattr(settings, "DISKETTE_DOWNLOAD_ALLOW_REDIRECT", False), bool):
        yield ConfigurationError("DISKETTE_DOWNLOAD_ALLOW_REDIRECT must be True or False")
    timeout = getattr(settings, "DISKETTE_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        yield ConfigurationError(
            f"DISKETTE_DOWNLOAD_TIMEOUT must be a number of seconds, not {timeout!r}"
        )
    mode = getattr(settings, "DISKETTE_DUMP_PERMISSIONS", DEFAULT_DUMP_PERMISSIONS)
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        yield ConfigurationError(
            f"DISKETTE_DUMP_PERMISSIONS must be an octal mode such as 0o600, not {mode!r}"
        )


def check_archive_filename(template: Any) -> None:
    """Refuse an archive name template that would not make a usable file name.

    :raises ConfigurationError: if it is not a string, is not a plain file name,
        does not end with ``.tar.gz`` or uses a field other than ``{features}``
        and ``{date}``.
    """
    if not isinstance(template, str):
        raise ConfigurationError(f"must be a string, not {type(template).__name__}")
    if "/" in template or template in ("", ".", ".."):
        raise ConfigurationError(f"{template!r} must be a file name, not a path")
    if not template.endswith(".tar.gz"):
        raise ConfigurationError(f"{template!r} must end with '.tar.gz'")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise ConfigurationError(f"{template!r} is not a valid template: {exc}") from None
    unknown = fields - FILENAME_FIELDS
    if unknown:
        raise ConfigurationError(
            f"{template!r} uses unknown field {{{sorted(unknown)[0]}}}; "
            "only {features} and {date} are available"
        )


def check_database(alias: str) -> None:
    """Refuse a ``--database`` alias the project does not define."""
    if alias not in connections:
        raise ConfigurationError(f"--database: unknown database alias {alias!r}")


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value in (None, "") else Path(value)  # type: ignore[arg-type]
