"""Resolve the ``DISKETTE_*`` settings into one validated object.

Settings are read when :func:`get_settings` is called, never at import time,
so ``override_settings`` works in tests and a project never has to import
anything from diskette into its own settings module. Every default lives here
and nowhere else; ``docs/settings.md`` documents them.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.db import connections

from .exceptions import ConfigurationError

#: Archives hold production data (password hashes, personal data): only their
#: owner may read them unless the project says otherwise.
DEFAULT_DUMP_PERMISSIONS = 0o600
DEFAULT_DOWNLOAD_PROTOCOLS = ("https://", "http://")
FILENAME_FIELDS = frozenset({"features", "date"})

#: Every ``DISKETTE_*`` setting and its default: the one place a default is
#: written (``docs/settings.md`` mirrors this table, a test holds them equal).
#: A ``None`` path is worked out when the settings are read, see
#: :class:`DisketteSettings`.
DEFAULTS: dict[str, Any] = {
    "DISKETTE_APPS": [],
    "DISKETTE_STORAGES": [],
    "DISKETTE_STORAGES_EXCLUDES": [],
    "DISKETTE_BASE_DIR": None,
    "DISKETTE_DUMP_PATH": None,
    "DISKETTE_DUMP_FILENAME": "diskette{features}.tar.gz",
    "DISKETTE_DUMP_PERMISSIONS": DEFAULT_DUMP_PERMISSIONS,
    "DISKETTE_LOAD_STORAGES_PATH": None,
    "DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS": DEFAULT_DOWNLOAD_PROTOCOLS,
    "DISKETTE_DOWNLOAD_ALLOW_REDIRECT": False,
    #: Seconds a download may wait for the server, per connection or read.
    "DISKETTE_DOWNLOAD_TIMEOUT": 10,
    "DISKETTE_PROTECTED": False,
    #: Anonymization rules (docs/anonymize.md): per model, field name, field type.
    "DISKETTE_ANONYMIZE": {},
    "DISKETTE_ANONYMIZE_FIELDS": {},
    "DISKETTE_ANONYMIZE_TYPES": {},
    "DISKETTE_ANONYMIZE_SECRET": None,
    "DISKETTE_ANONYMIZE_LOCALE": "en_US",
    "DISKETTE_ANONYMIZE_REQUIRED": False,
    "DISKETTE_ANONYMIZE_STRICT": False,
    "DISKETTE_LOAD_REQUIRE_ANONYMIZED": False,
    #: The snapshot registry (docs/registry.md): a ``STORAGES`` alias, the age
    #: public keys snapshots are encrypted to, and this machine's age key.
    "DISKETTE_REGISTRY_STORAGE": "diskette",
    "DISKETTE_REGISTRY_RECIPIENTS": [],
    "DISKETTE_REGISTRY_IDENTITY": "~/.config/diskette/age-key.txt",
    #: The HTTP endpoints (docs/http.md). The key this machine sends (the
    #: environment variable of the same name wins); whether the endpoints
    #: serve only anonymized snapshots (``None``: when anonymization rules
    #: exist); how many failed attempts a client makes before it is refused
    #: for the window, in seconds.
    "DISKETTE_API_KEY": None,
    "DISKETTE_API_ANONYMIZED_ONLY": None,
    "DISKETTE_API_MAX_FAILURES": 10,
    "DISKETTE_API_FAILURE_WINDOW": 600,
    #: Hooks run in a load's transaction once data and media are in place
    #: (docs/hooks.md): dotted paths, or [path, {keyword arguments}].
    "DISKETTE_AFTER_LOAD": [],
    #: Subsets ``diskette_dump --subset NAME`` dumps (docs/subset.md): per
    #: name, starting rows and relations to follow per model label.
    "DISKETTE_SUBSETS": {},
    #: Whether a load's reset of SQLite copies an empty database kept from
    #: the last ``migrate`` of the same migrations (docs/commands.md).
    "DISKETTE_MIGRATION_CACHE": True,
}

#: A ``STORAGES`` alias diskette archives files under: a plain folder name.
ALIAS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: The keys a ``DISKETTE_STORAGES`` entry naming a Django storage may hold.
STORAGE_ENTRY_KEYS = frozenset({"storage", "prefix", "excludes", "load_to"})


@dataclass(frozen=True)
class StorageAlias:
    """A ``DISKETTE_STORAGES`` entry naming a storage of Django's ``STORAGES``.

    :param alias: the ``STORAGES`` alias whose files are dumped (S3 through
        django-storages in practice).
    :param prefix: the folder of that storage to dump, ``""`` for all of it.
    :param excludes: ``fnmatch`` patterns relative to the prefix, on top of
        ``DISKETTE_STORAGES_EXCLUDES``.
    :param load_to: where a load writes the files: a folder (relative to the
        base directory) or the alias of a storage with local folders; ``None``
        means the same alias, a ``FileSystemStorage`` on a laptop.
    """

    alias: str
    prefix: str = ""
    excludes: tuple[str, ...] = ()
    load_to: str | None = None

    @classmethod
    def from_setting(cls, entry: dict[str, Any]) -> StorageAlias:
        """Read an entry :func:`settings_problems` found valid."""
        return cls(
            alias=entry["storage"],
            prefix=entry.get("prefix", "").strip("/"),
            excludes=tuple(entry.get("excludes", ())),
            load_to=entry.get("load_to"),
        )


@dataclass(frozen=True)
class DisketteSettings:
    """The project's diskette settings, defaults applied and validated.

    Built only by :func:`get_settings`, from :data:`DEFAULTS`: no field has a
    default of its own, so no default can drift from the table.

    :param apps: raw application definitions (``DISKETTE_APPS``), validated
        separately by :mod:`diskette.definitions` since that needs the app
        registry.
    :param storages: storage directories (``DISKETTE_STORAGES``' paths).
    :param storage_aliases: the ``DISKETTE_STORAGES`` entries that name a
        storage of Django's ``STORAGES`` rather than a folder.
    :param storages_excludes: ``fnmatch`` patterns relative to each storage.
    :param base_dir: absolute folder storages are archived relative to and
        restored below (``DISKETTE_BASE_DIR``, else the project's
        ``BASE_DIR``, else the current directory when the settings are read).
    :param dump_path: directory where archives are written; ``None`` means the
        current directory at the time of the dump.
    :param dump_filename: archive name template, ``{features}`` and ``{date}``.
    :param dump_permissions: mode applied to the written archive.
    :param load_storages_path: base directory storages are restored under;
        ``None`` means :attr:`base_dir`.
    :param download_allowed_protocols: URL prefixes ``diskette_load`` accepts.
    :param download_allow_redirect: whether a download may follow redirects.
    :param download_timeout: seconds to wait for the server, per operation.
    :param protected: the project refuses loads and resets (production).
    :param anonymize: anonymization rules by model (:mod:`diskette.anonymize`
        reads and checks these rules, which needs the app registry).
    :param anonymize_fields: rules by field name.
    :param anonymize_types: rules by field class.
    :param anonymize_secret: the key fakes are derived from.
    :param anonymize_locale: Faker's locale.
    :param anonymize_required: dumps refuse ``--no-anonymize``.
    :param anonymize_strict: fields no rule covers are check errors.
    :param load_require_anonymized: loads refuse archives that are not
        anonymized (a developer's laptop).
    :param registry_storage: the ``STORAGES`` alias snapshots are published to.
    :param registry_recipients: age public keys published snapshots are
        encrypted to; none means they are stored as they are.
    :param registry_identity: this machine's age key file, which decrypts them.
    :param api_key: the key a download sends (``DISKETTE_API_KEY`` in the
        environment, else the setting).
    :param api_anonymized_only: the endpoints serve anonymized snapshots only.
    :param api_max_failures: failed key attempts a client may make in a window
        (0: no limit).
    :param api_failure_window: that window, in seconds.
    :param after_load: the hooks a load runs before it commits, as written
        (imported by :func:`diskette.hooks.after_load`).
    :param subsets: subset definitions by name, as written (validated by
        :mod:`diskette.subset`, which needs the app registry).
    :param migration_cache: a load's reset of SQLite copies the empty
        database the last ``migrate`` of the same migrations made
        (:mod:`diskette.migrated`).
    """

    apps: Any
    storages: tuple[Path, ...]
    storage_aliases: tuple[StorageAlias, ...]
    storages_excludes: tuple[str, ...]
    base_dir: Path
    dump_path: Path | None
    dump_filename: str
    dump_permissions: int
    load_storages_path: Path | None
    download_allowed_protocols: tuple[str, ...]
    download_allow_redirect: bool
    download_timeout: float
    protected: bool
    anonymize: dict[str, Any]
    anonymize_fields: dict[str, Any]
    anonymize_types: dict[str, Any]
    anonymize_secret: str | None
    anonymize_locale: str
    anonymize_required: bool
    anonymize_strict: bool
    load_require_anonymized: bool
    registry_storage: str
    registry_recipients: tuple[str, ...]
    registry_identity: Path
    api_key: str | None
    api_anonymized_only: bool | None
    api_max_failures: int
    api_failure_window: int
    after_load: tuple[Any, ...]
    subsets: dict[str, Any]
    migration_cache: bool


def setting(name: str, settings: Any = django_settings) -> Any:
    """The raw value of one ``DISKETTE_*`` setting, its default if unset."""
    return getattr(settings, name, DEFAULTS[name])


def get_settings(settings: Any = django_settings) -> DisketteSettings:
    """Read and validate the ``DISKETTE_*`` settings.

    :raises ConfigurationError: naming the first setting at fault.
    """
    problems = list(settings_problems(settings))
    if problems:
        raise problems[0]
    value = {name: setting(name, settings) for name in DEFAULTS}
    return DisketteSettings(
        apps=value["DISKETTE_APPS"],
        storages=tuple(
            Path(p) for p in value["DISKETTE_STORAGES"] if not isinstance(p, dict)
        ),
        storage_aliases=tuple(
            StorageAlias.from_setting(p)
            for p in value["DISKETTE_STORAGES"]
            if isinstance(p, dict)
        ),
        storages_excludes=tuple(value["DISKETTE_STORAGES_EXCLUDES"]),
        base_dir=base_directory(settings),
        dump_path=_optional_path(value["DISKETTE_DUMP_PATH"]),
        dump_filename=value["DISKETTE_DUMP_FILENAME"],
        dump_permissions=value["DISKETTE_DUMP_PERMISSIONS"],
        load_storages_path=_optional_path(value["DISKETTE_LOAD_STORAGES_PATH"]),
        download_allowed_protocols=tuple(value["DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS"]),
        download_allow_redirect=value["DISKETTE_DOWNLOAD_ALLOW_REDIRECT"],
        download_timeout=value["DISKETTE_DOWNLOAD_TIMEOUT"],
        protected=value["DISKETTE_PROTECTED"],
        anonymize=value["DISKETTE_ANONYMIZE"],
        anonymize_fields=value["DISKETTE_ANONYMIZE_FIELDS"],
        anonymize_types=value["DISKETTE_ANONYMIZE_TYPES"],
        anonymize_secret=value["DISKETTE_ANONYMIZE_SECRET"],
        anonymize_locale=value["DISKETTE_ANONYMIZE_LOCALE"],
        anonymize_required=value["DISKETTE_ANONYMIZE_REQUIRED"],
        anonymize_strict=value["DISKETTE_ANONYMIZE_STRICT"],
        load_require_anonymized=value["DISKETTE_LOAD_REQUIRE_ANONYMIZED"],
        registry_storage=value["DISKETTE_REGISTRY_STORAGE"],
        registry_recipients=tuple(value["DISKETTE_REGISTRY_RECIPIENTS"]),
        registry_identity=Path(value["DISKETTE_REGISTRY_IDENTITY"]).expanduser(),
        api_key=os.environ.get("DISKETTE_API_KEY") or value["DISKETTE_API_KEY"],
        api_anonymized_only=value["DISKETTE_API_ANONYMIZED_ONLY"],
        api_max_failures=value["DISKETTE_API_MAX_FAILURES"],
        api_failure_window=value["DISKETTE_API_FAILURE_WINDOW"],
        after_load=tuple(value["DISKETTE_AFTER_LOAD"]),
        subsets=value["DISKETTE_SUBSETS"],
        migration_cache=value["DISKETTE_MIGRATION_CACHE"],
    )


def base_directory(settings: Any = django_settings) -> Path:
    """The absolute folder storages are archived relative to.

    ``DISKETTE_BASE_DIR`` when set; else the project's ``BASE_DIR`` when it is
    a path (the ``startproject`` convention), so an archive's layout does not
    depend on where ``manage.py`` runs from; else the current directory, as
    diskette 0.6 did. Reads the settings without validating them, for the
    system checks.
    """
    for value in (
        setting("DISKETTE_BASE_DIR", settings),
        getattr(settings, "BASE_DIR", None),
    ):
        if isinstance(value, str | Path) and str(value):
            return Path(os.path.abspath(value))
    return Path.cwd()


def settings_problems(settings: Any = django_settings) -> Iterator[ConfigurationError]:
    """Yield one error per invalid ``DISKETTE_*`` setting (shape only).

    Shared by :func:`get_settings` and the system checks, so ``manage.py
    check`` and the commands word a problem the same way. Each message names
    the setting and what a valid value looks like. Only ``DISKETTE_APPS``'s
    outer shape is checked here; its definitions are left to
    :mod:`diskette.definitions`, which needs the app registry.
    """
    for name, validate in VALIDATORS.items():
        for problem in validate(setting(name, settings)):
            yield ConfigurationError(f"{name}{problem}")


def _list_of(
    kinds: tuple[type, ...], what: str, example: str, item: str
) -> Callable[[Any], Iterator[str]]:
    """A validator for a list of ``kinds``: ``what`` it is, an ``example``."""

    def validate(value: Any) -> Iterator[str]:
        if not isinstance(value, list | tuple):
            yield f" must be a list of {what}, e.g. {example}, not {_kind(value)}"
            return
        for index, element in enumerate(value):
            if not isinstance(element, kinds):
                yield f"[{index}] must be {item}, not {_kind(element)}"

    return validate


def _path(example: str, optional: bool = True) -> Callable[[Any], Iterator[str]]:
    def validate(value: Any) -> Iterator[str]:
        if (value is not None or not optional) and not isinstance(value, str | Path):
            yield f" must be a folder path, e.g. {example}, not {_kind(value)}"

    return validate


def _flag(value: Any) -> Iterator[str]:
    if not isinstance(value, bool):
        yield f" must be True or False, not {value!r}"


def _optional_flag(value: Any) -> Iterator[str]:
    if value is not None and not isinstance(value, bool):
        yield f" must be True, False or None, not {value!r}"


def _count(least: int, example: int) -> Callable[[Any], Iterator[str]]:
    def validate(value: Any) -> Iterator[str]:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            yield f" must be a whole number of at least {least}, e.g. {example}, not {value!r}"

    return validate


def _hooks(value: Any) -> Iterator[str]:
    example = '["diskette.hooks.set_site_domain", {"domain": "localhost:8000"}]'
    if not isinstance(value, list | tuple):
        yield f" must be a list of dotted paths or [path, {{options}}] pairs, not {_kind(value)}"
        return
    for index, entry in enumerate(value):
        pair = (
            isinstance(entry, list | tuple)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], dict)
            and all(isinstance(k, str) for k in entry[1])
        )
        if not (isinstance(entry, str) and entry) and not pair:
            yield f"[{index}] must be a dotted path or a pair such as {example}, not {entry!r}"


def _filename(value: Any) -> Iterator[str]:
    try:
        check_archive_filename(value)
    except ConfigurationError as exc:
        yield f": {exc}"


def _permissions(value: Any) -> Iterator[str]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        # 644 (decimal) is 0o1204: readable by all, not by its owner.
        octal = isinstance(value, int) and set(str(value)) <= set("01234567")
        hint = (
            f" (write {value} as 0o{value})"
            if octal and int(str(value), 8) <= 0o777
            else ""
        )
        yield f" must be an octal mode such as 0o600, not {value!r}{hint}"
    elif not value & 0o400:
        yield f" must let the owner read the archive (0o400), not 0o{value:o}"


def _protocols(value: Any) -> Iterator[str]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(p, str) and p.endswith("://") for p in value
    ):
        yield f" must be a list such as ['https://'], not {value!r}"


_FOLDERS = _list_of((str, Path, dict), "folders", "[MEDIA_ROOT]", "")


def _storages(value: Any) -> Iterator[str]:
    """Folders, or ``{"storage": alias, ...}`` entries naming a Django storage."""
    if not isinstance(value, list | tuple):
        yield from _FOLDERS(value)
        return
    for index, entry in enumerate(value):
        if isinstance(entry, dict):
            for problem in _storage_entry(entry):
                yield f"[{index}] {problem}"
        elif not isinstance(entry, str | Path):
            yield (
                f"[{index}] must be a folder path (str or Path) or "
                f'{{"storage": "default"}}, not {_kind(entry)}'
            )


def _storage_entry(entry: dict[str, Any]) -> Iterator[str]:
    unknown = sorted(set(entry) - STORAGE_ENTRY_KEYS, key=str)
    if unknown:
        keys = ", ".join(sorted(STORAGE_ENTRY_KEYS))
        yield f"has an unknown key {unknown[0]!r}; the keys are {keys}"
    alias = entry.get("storage")
    if not isinstance(alias, str) or not ALIAS.fullmatch(alias):
        yield f'must name a STORAGES alias, e.g. {{"storage": "default"}}, not {alias!r}'
    prefix = entry.get("prefix", "")
    parts = prefix.strip("/").split("/") if isinstance(prefix, str) else []
    if (
        not isinstance(prefix, str)
        or (prefix.strip("/") and any(p in ("", ".", "..") for p in parts))
        or "\\" in prefix
    ):
        yield f"'prefix' must be a folder of the storage such as 'uploads', not {prefix!r}"
    excludes = entry.get("excludes", [])
    if not isinstance(excludes, list | tuple) or not all(
        isinstance(e, str) for e in excludes
    ):
        yield f"'excludes' must be a list of patterns such as ['cache/*'], not {excludes!r}"
    load_to = entry.get("load_to")
    if load_to is not None and (not isinstance(load_to, str) or not load_to):
        yield f"'load_to' must be a folder or a STORAGES alias, not {load_to!r}"


def _alias(value: Any) -> Iterator[str]:
    if not isinstance(value, str) or not value:
        yield f" must be an alias of STORAGES such as 'diskette', not {value!r}"


#: An age X25519 public key: "age1" and 58 Bech32 characters.
AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")


def _recipients(value: Any) -> Iterator[str]:
    if not isinstance(value, list | tuple):
        yield f" must be a list of age public keys ('age1...'), not {_kind(value)}"
        return
    for index, key in enumerate(value):
        if not isinstance(key, str) or not AGE_RECIPIENT.fullmatch(key.strip()):
            shown = key[:12] + "..." if isinstance(key, str) and len(key) > 12 else key
            yield (
                f"[{index}] must be an age public key ('age1' and 58 letters and digits, "
                f"as age-keygen prints it), not {shown!r}"
            )


#: A longer wait than a day is a mistake, and past it the socket layer fails.
LONGEST_TIMEOUT = 24 * 3600


def _timeout(value: Any) -> Iterator[str]:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= LONGEST_TIMEOUT  # NaN fails this too
    ):
        yield f" must be a number of seconds, e.g. 30, not {value!r}"


def _rules(example: str) -> Callable[[Any], Iterator[str]]:
    def validate(value: Any) -> Iterator[str]:
        if not isinstance(value, dict):
            yield f" must be a dict, e.g. {example}, not {_kind(value)}"

    return validate


def _secret(value: Any) -> Iterator[str]:
    if value is not None and not isinstance(value, str):
        yield f" must be a string (from the environment), not {_kind(value)}"


def _locale(value: Any) -> Iterator[str]:
    if not isinstance(value, str) or not value:
        yield f" must be a Faker locale such as 'en_US', not {value!r}"


def _subsets(value: Any) -> Iterator[str]:
    """Names mapped to definitions; what these hold is :mod:`diskette.subset`'s."""
    example = '{"recent": {"demo.Book": {"filter": {"published__year": 2026}}}}'
    if not isinstance(value, dict):
        yield f" must be a dict of names to subsets, e.g. {example}, not {_kind(value)}"
        return
    for name, definition in value.items():
        if not isinstance(name, str) or not name:
            yield f" names a subset {name!r}; names are non-empty strings"
        elif not isinstance(definition, dict):
            yield (
                f"[{name!r}] must be a dict of model labels to rules, e.g. "
                f"{example[11:-1]}, not {_kind(definition)}"
            )


#: How each setting is checked; a validator yields what follows the name.
VALIDATORS: dict[str, Callable[[Any], Iterator[str]]] = {
    "DISKETTE_APPS": _list_of(
        (list, tuple),
        "[name, {options}] definitions",
        '[["django.contrib.sites", {}]] (see `manage.py diskette_apps`)',
        "a [name, {options}] pair",
    ),
    "DISKETTE_STORAGES": _storages,
    "DISKETTE_STORAGES_EXCLUDES": _list_of(
        (str,), "patterns", '["cache/*"]', 'a str pattern such as "cache/*"'
    ),
    "DISKETTE_BASE_DIR": _path("BASE_DIR"),
    "DISKETTE_DUMP_PATH": _path('BASE_DIR / "var"'),
    "DISKETTE_DUMP_FILENAME": _filename,
    "DISKETTE_DUMP_PERMISSIONS": _permissions,
    "DISKETTE_LOAD_STORAGES_PATH": _path("BASE_DIR"),
    "DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS": _protocols,
    "DISKETTE_DOWNLOAD_ALLOW_REDIRECT": _flag,
    "DISKETTE_DOWNLOAD_TIMEOUT": _timeout,
    "DISKETTE_PROTECTED": _flag,
    "DISKETTE_ANONYMIZE": _rules('{"auth.User": {"email": "email"}}'),
    "DISKETTE_ANONYMIZE_FIELDS": _rules('{"phone": "phone_number"}'),
    "DISKETTE_ANONYMIZE_TYPES": _rules('{"GenericIPAddressField": "ipv4"}'),
    "DISKETTE_ANONYMIZE_SECRET": _secret,
    "DISKETTE_ANONYMIZE_LOCALE": _locale,
    "DISKETTE_ANONYMIZE_REQUIRED": _flag,
    "DISKETTE_ANONYMIZE_STRICT": _flag,
    "DISKETTE_LOAD_REQUIRE_ANONYMIZED": _flag,
    "DISKETTE_REGISTRY_STORAGE": _alias,
    "DISKETTE_REGISTRY_RECIPIENTS": _recipients,
    "DISKETTE_REGISTRY_IDENTITY": _path('"~/.config/diskette/age-key.txt"', optional=False),
    "DISKETTE_API_KEY": _secret,
    "DISKETTE_API_ANONYMIZED_ONLY": _optional_flag,
    "DISKETTE_API_MAX_FAILURES": _count(0, 10),
    "DISKETTE_API_FAILURE_WINDOW": _count(1, 600),
    "DISKETTE_AFTER_LOAD": _hooks,
    "DISKETTE_SUBSETS": _subsets,
    "DISKETTE_MIGRATION_CACHE": _flag,
}


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
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"{template!r} is not a valid template: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is not None and (spec or conversion):
            # "{date:%}" fails at the dump, "{features:>9999999999}" fills memory.
            raise ConfigurationError(
                f"{template!r} formats {{{name}}}; write {{features}} and {{date}} bare"
            )
    fields = {name for _, name, _, _ in parsed if name}
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
    return None if value is None or value == "" else Path(value)


def _kind(value: Any) -> str:
    """How a message names the type of a wrong value: ``PosixPath``, ``dict``."""
    return type(value).__name__
