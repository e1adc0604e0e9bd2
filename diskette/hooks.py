"""What runs after a load, inside its transaction: the team's fix-ups.

Every team runs the same few steps after pulling production: the ``Site``
back to ``localhost``, one password everybody knows, outgoing mail off.
``DISKETTE_AFTER_LOAD`` names them, and receivers of
:data:`diskette.signals.post_load` can do the same in code. Both run once
the data is loaded and the media are in place, **before** the load's
transaction commits: a hook that fails rolls the whole load back, data and
media, so a laptop never holds production data without its fix-ups.

An entry is a dotted path to a callable, or ``[path, {keyword arguments}]``
as application definitions are written::

    DISKETTE_AFTER_LOAD = [
        ["diskette.hooks.set_site_domain", {"domain": "localhost:8000"}],
        ["diskette.hooks.set_passwords", {"password": "dev"}],
        "myproject.dev.disable_mail",
    ]

Each is called with one :class:`Loaded` and its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from .exceptions import ConfigurationError, GuardError, LoadError
from .reporting import error_line

Hook = Callable[..., object]


@dataclass(frozen=True)
class Loaded:
    """What a hook is told of the load it follows.

    :param archive: the archive's file name.
    :param manifest: the archive's manifest (``anonymized``, ``creation``…).
    :param using: the database alias loaded into; a hook writes there.
    :param storages: the storages restored, by their path in the archive.
    """

    archive: str
    manifest: dict[str, Any]
    using: str
    storages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AfterLoad:
    """One ``DISKETTE_AFTER_LOAD`` entry, imported."""

    path: str
    hook: Hook
    options: dict[str, Any]

    def __call__(self, loaded: Loaded) -> None:
        try:
            self.hook(loaded, **self.options)
        except (LoadError, GuardError, ConfigurationError) as exc:
            raise LoadError(
                f"after-load hook '{self.path}' refused: {exc}; nothing was loaded"
            ) from exc
        except Exception as exc:
            raise LoadError(
                f"after-load hook '{self.path}' failed ({type(exc).__name__}: "
                f"{error_line(exc)}); "
                "nothing was loaded: fix the hook, or take it out of DISKETTE_AFTER_LOAD"
            ) from exc


def after_load(entries: Sequence[Any]) -> tuple[AfterLoad, ...]:
    """Import every entry before anything is loaded: a typo fails first.

    :raises ConfigurationError: naming the entry and what is wrong with it.
    """
    hooks = []
    for entry in entries:
        path, options = (entry, {}) if isinstance(entry, str) else entry
        try:
            hook = import_string(path)
        except ImportError as exc:
            raise ConfigurationError(
                f"DISKETTE_AFTER_LOAD: cannot import '{path}' ({exc}); fix the path"
            ) from None
        if not callable(hook):
            raise ConfigurationError(
                f"DISKETTE_AFTER_LOAD: '{path}' is not a function or another callable"
            )
        hooks.append(AfterLoad(path, hook, dict(options)))
    return tuple(hooks)


# Ready-made hooks ------------------------------------------------------------


def set_site_domain(
    loaded: Loaded, domain: str = "localhost:8000", name: str | None = None
) -> None:
    """Point the current ``Site`` (``SITE_ID``) at this machine.

    Links built from the site (password resets, sitemaps, e-mails) then lead
    here, not to production.
    """
    from django.contrib.sites.models import Site

    site_id = getattr(django_settings, "SITE_ID", None)
    if site_id is None:
        raise ConfigurationError("set_site_domain needs SITE_ID (django.contrib.sites)")
    changed = Site.objects.using(loaded.using).filter(pk=site_id)
    if not changed.exists():
        raise ConfigurationError(f"the archive holds no Site {site_id} (SITE_ID)")
    changed.update(domain=domain, **({"name": name} if name is not None else {}))


def set_passwords(loaded: Loaded, password: str = "diskette") -> None:
    """Give every user the same password, for a developer's machine only.

    Refused where ``DEBUG`` is False: on a server it would open every
    account, production's included, to anyone who read this line.
    """
    if not django_settings.DEBUG:
        raise GuardError("set_passwords runs only where DEBUG is True")
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    # One hash for all: hashing each user's would take a second per thousand.
    get_user_model()._default_manager.db_manager(loaded.using).update(
        password=make_password(password)
    )
