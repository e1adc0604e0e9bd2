"""What a rule puts in place of a value: built-ins, Faker providers, callables.

Every fake is derived from ``HMAC-SHA256(secret, rule, value)``, never from
a random generator's state: the same value becomes the same fake in every
table, every batch and every run with the same secret, and a reader of the
archive cannot go back from a fake to the value without the secret. Faker
is asked once per rule for a pool of values (seeded from the secret), and a
value's digest picks one: Faker's providers take tens of microseconds a
call, a pick takes one.

A rule covering a unique field is *injective*: its fakes carry a tag taken
from the digest (``jane82.5f3c9a1e@example.org``), so two values never
share a fake, and :class:`Injective` lengthens the tag in the rare case two
tags meet, so a column stays unique however many rows it has.
"""

from __future__ import annotations

import datetime
import functools
import hmac
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, make_password
from django.utils import timezone
from django.utils.module_loading import import_string

from ..exceptions import ConfigurationError, DumpError

#: Rules diskette implements itself; any other name is a Faker provider or,
#: with a dot in it, a callable's dotted path.
BUILT_INS = ("keep", "null", "empty", "hash", "mask", "password", "drop")
#: Values one Faker pool holds: as many first names as Faker knows, and a
#: fraction of a second to make for the slowest providers (about 100 µs a call).
POOL_SIZE = 1024
#: Faker providers whose values name someone or something: always tagged,
#: unique by construction wherever they are used (two customers sharing a
#: fake e-mail address would break a log-in by e-mail on the laptop).
IDENTIFIERS = frozenset(
    {
        "email",
        "safe_email",
        "free_email",
        "company_email",
        "ascii_email",
        "ascii_safe_email",
        "ascii_free_email",
        "ascii_company_email",
        "user_name",
    }
)
#: Hex digits of the digest an injective rule's fakes carry at first.
TAG_DIGITS = 8
#: Hex digits of a ``hash`` rule's fakes (80 bits), less if the field is shorter.
HASH_DIGITS = 20
#: Characters ``mask`` leaves at the end of values at least twice as long.
MASK_KEEPS = 4


@dataclass(frozen=True, eq=False)
class Rule:
    """One rule as the settings give it: a name and the options it takes.

    :param name: a built-in, a Faker provider or a dotted path.
    :param options: keyword arguments for the provider or callable, or the
        ``password`` of the ``password`` rule.
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @functools.cached_property
    def key(self) -> bytes:
        """What the digest is keyed by besides the secret: equal rules, equal fakes."""
        return json.dumps([self.name, self.options], sort_keys=True, default=str).encode()

    # Options may hold lists (Faker's ``elements``): rules compare by key.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def kind(self) -> str:
        """``builtin``, ``callable`` or ``faker``."""
        if self.name in BUILT_INS:
            return "builtin"
        return "callable" if "." in self.name else "faker"

    def describe(self) -> Any:
        """The rule as settings write it, for the manifest and messages; a
        dev password is not repeated."""
        if not self.options:
            return self.name
        options = dict(self.options)
        if self.name == "password" and "password" in options:
            options["password"] = "***"
        return {"rule": self.name, **options}


def canonical(value: Any) -> bytes:
    """The bytes of ``value`` a digest is computed over, alike in every table.

    Text as UTF-8; anything else as sorted JSON (``1`` and ``"1"`` differ).
    """
    if isinstance(value, str):
        return value.encode()
    return b"\x00" + json.dumps(value, sort_keys=True, default=str).encode()


@dataclass(frozen=True)
class Context:
    """What a callable rule is given besides the value.

    :param digest: 32 bytes, ``HMAC(secret, rule, value)``: derive the fake
        from it (or from :attr:`random`) and it is deterministic.
    :param field: the model field being anonymized.
    """

    digest: bytes
    field: Any

    @functools.cached_property
    def random(self) -> random.Random:
        """A generator seeded by :attr:`digest`."""
        return random.Random(self.digest)


class Secret:
    """The key of every digest; never written anywhere."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def digester(self, rule: Rule) -> Callable[[Any], bytes]:
        """``digest`` for one rule: the HMAC keyed and fed the rule once, copied
        per value (a quarter faster than ``hmac.digest`` on short values)."""
        keyed = hmac.new(self._key, rule.key + b"\x00", "sha256")

        def digest(value: Any) -> bytes:
            mac = keyed.copy()
            mac.update(value.encode() if type(value) is str else canonical(value))
            return mac.digest()

        return digest

    def seed(self, rule: Rule, purpose: str) -> int:
        """A seed for one rule's pool or password salt."""
        mac = hmac.digest(self._key, rule.key + b"\x01" + purpose.encode(), "sha256")
        return int.from_bytes(mac[:8], "big")


Fake = Callable[[Any, bytes], Any]


@functools.cache
def faker_instance(locale: str) -> Any:
    """The Faker for ``locale``, made once (each takes some 20 ms); every
    pool seeds it before use. :class:`ConfigurationError` if Faker is missing."""
    try:
        from faker import Faker
    except ImportError:  # the anonymize extra is not installed
        raise ConfigurationError(
            "Faker providers need Faker: pip install 'django-diskette[anonymize]'"
        ) from None
    try:
        return Faker(locale)
    except AttributeError:
        raise ConfigurationError(
            f"DISKETTE_ANONYMIZE_LOCALE {locale!r} is not a locale Faker knows"
        ) from None


def check_rule(rule: Rule, locale: str) -> str | None:
    """Why ``rule`` cannot run (one line), or ``None``: Faker is asked for one value."""
    if rule.kind == "builtin":
        allowed = {"password": {"password"}}.get(rule.name, set())
        extra = {name for name, _ in rule.options} - allowed
        if extra:
            return f"rule {rule.name!r} takes no option {sorted(extra)[0]!r}"
        return None
    if rule.kind == "callable":
        try:
            target = import_string(rule.name)
        except (ImportError, ValueError) as exc:
            return f"cannot import {rule.name!r}: {exc}"
        return None if callable(target) else f"{rule.name!r} is not callable"
    try:
        fake = faker_instance(locale)
    except ConfigurationError as exc:
        return str(exc)
    provider = getattr(fake, rule.name, None)
    if rule.name.startswith("_") or not callable(provider):
        return (
            f"{rule.name!r} is neither a built-in rule ({', '.join(BUILT_INS)}), "
            "a Faker provider nor a dotted path"
        )
    try:
        provider(**dict(rule.options))
    except Exception as exc:
        return f"Faker's {rule.name}({_options(rule)}) fails: {exc}"
    return None


def _options(rule: Rule) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in rule.options)


class Pools:
    """One Faker pool per rule, made when first needed."""

    def __init__(self, secret: Secret, locale: str) -> None:
        self.secret, self.locale = secret, locale
        self.pools: dict[Rule, list[Any]] = {}

    def pool(self, rule: Rule) -> list[Any]:
        pool = self.pools.get(rule)
        if pool is None:
            fake = faker_instance(self.locale)
            fake.seed_instance(self.secret.seed(rule, "pool"))
            provider = getattr(fake, rule.name)
            options = dict(rule.options)
            pool = self.pools[rule] = [provider(**options) for _ in range(POOL_SIZE)]
        return pool


def strategy(rule: Rule, secret: Secret, pools: Pools, model_field: Any) -> Fake:
    """The function turning a value and its digest into the fake."""
    name = rule.name
    if name == "null":
        return lambda value, digest: None
    if name in ("empty", "drop"):
        return _empty
    if name == "hash":
        return lambda value, digest: digest.hex()[:HASH_DIGITS]
    if name == "mask":
        return lambda value, digest: _mask(value)
    if name == "password":
        return _password(rule, secret)
    if rule.kind == "callable":
        target = import_string(name)
        options = dict(rule.options)
        return lambda value, digest: target(value, Context(digest, model_field), **options)

    pool: list[Any] = []  # made when the first value asks for it

    def pick(value: Any, digest: bytes) -> Any:
        if not pool:
            pool.extend(pools.pool(rule))
        return pool[int.from_bytes(digest[:8], "big") % len(pool)]

    return pick


def _empty(value: Any, digest: bytes) -> Any:
    if isinstance(value, dict):
        return {}
    if isinstance(value, list):
        return []
    return ""


def _mask(value: Any) -> Any:
    text = value if isinstance(value, str) else str(value)
    keep = MASK_KEEPS if len(text) >= 2 * MASK_KEEPS else 0
    return "*" * (len(text) - keep) + text[len(text) - keep :]


def _password(rule: Rule, secret: Secret) -> Fake:
    """A hash no password matches, or the hash of the one the rule names.

    The dev password is hashed once, with a salt derived from the secret, so
    two dumps write the same hash; unusable ones follow Django's own form.
    """
    options = dict(rule.options)
    if "password" in options:
        salt = f"{secret.seed(rule, 'salt'):016x}"
        hashed = make_password(str(options["password"]), salt=salt)
        return lambda value, digest: hashed
    return lambda value, digest: UNUSABLE_PASSWORD_PREFIX + digest.hex()[:40]


@dataclass
class Injective:
    """The fakes written to one unique column so far, to keep them apart.

    Keys are casefolded, so the column stays unique under a case-insensitive
    collation too.
    """

    seen: dict[Any, bytes] = field(default_factory=dict)


def fit(value: Any, model_field: Any) -> Any:
    """``value`` made to suit ``model_field``: text cut to ``max_length``, a
    naive datetime made aware where the project uses time zones."""
    if isinstance(value, str):
        limit = getattr(model_field, "max_length", None)
        return value[:limit] if limit else value
    if (
        isinstance(value, datetime.datetime)
        and timezone.is_naive(value)
        and getattr(model_field, "get_internal_type", lambda: "")() == "DateTimeField"
        and _use_tz()
    ):
        return timezone.make_aware(value, datetime.timezone.utc)
    return value


def _use_tz() -> bool:
    from django.conf import settings

    return bool(settings.USE_TZ)


def tagged(base: Any, tag: str, model_field: Any) -> str:
    """``base`` with ``tag``, within ``max_length``: before an e-mail's ``@``,
    after anything else; the base is cut, never the tag."""
    text = base if isinstance(base, str) else str(base)
    limit = getattr(model_field, "max_length", None) or 0
    local, at, domain = text.rpartition("@")
    if at and local:
        room = limit - len(tag) - len(domain) - 2 if limit else len(local)
        if room >= 1:
            return f"{local[:room]}.{tag}@{domain}"
    room = limit - len(tag) - 1 if limit else len(text)
    if room >= 1:
        return f"{text[:room]}-{tag}"
    return tag[:limit] if limit else tag


def unique_fake(
    fake: Fake,
    value: Any,
    digest: bytes,
    model_field: Any,
    column: Injective | None,
    longer: dict[bytes, int],
    label: str,
    *,
    tag: bool = True,
) -> Any:
    """The fake of ``value`` under an injective rule: tagged, and apart from
    every other fake ``column`` holds (``None`` for a column that may repeat).

    :raises DumpError: when the field is too short to keep its values apart,
        or the rule gives values no tag can be added to.
    """
    base = fake(value, digest)
    digits = longer.get(digest, TAG_DIGITS)
    while True:
        if tag and isinstance(base, str):
            candidate: Any = tagged(base, digest.hex()[:digits], model_field)
        else:
            candidate = fit(base, model_field)
        if candidate is None or column is None:
            return candidate
        key = candidate.casefold() if isinstance(candidate, str) else candidate
        owner = column.seen.setdefault(key, digest)
        if owner == digest:
            return candidate
        if not tag or not isinstance(candidate, str) or digits >= len(digest) * 2:
            raise DumpError(
                f"anonymizing {label} gave two values the same fake; the field is too "
                "short or the rule cannot keep it unique: use 'hash' or a longer field"
            )
        digits += TAG_DIGITS
        longer[digest] = digits
