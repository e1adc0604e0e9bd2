"""API keys for the HTTP endpoints: made, checked, throttled.

A key reads ``dsk_<key_id>_<secret>``. Only the sha256 of the whole key is
stored: the key is shown once, when it is made, and a leaked database
gives nobody a usable key. A key is random enough (256 bits) that a fast
hash is right here, as for GitHub's or Stripe's tokens: a slow password
hash would only slow down every request. ``key_id`` finds the row; the
hashes are then compared in constant time, so the answer's timing does not
tell how much of a guess was right.

Failed attempts are counted per client address in Django's cache: past
:attr:`DisketteSettings.api_max_failures` within
:attr:`DisketteSettings.api_failure_window` seconds the address is refused
(429) until the window ends; a valid key always passes. With several processes, the
cache must be shared (Redis, Memcached, the database) for the count to be
one; the default per-process cache counts per process. Counting is not
atomic across processes: attempts racing each other may count once.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.utils import timezone

from .exceptions import ApiKeyError, ConfigurationError
from .models import ApiKey

PREFIX = "dsk_"
SCOPES = ("download", "capture")
KEY_PATTERN = re.compile(rf"{PREFIX}(?P<key_id>[0-9a-f]{{12}})_[A-Za-z0-9_-]{{43}}")
#: ``30d``, ``12h``, ``90m``, ``2w``: how long a key lives.
DURATION = re.compile(r"(?P<count>[1-9][0-9]{0,5})(?P<unit>[mhdw])")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Never more than ten years: a typo should not make a key eternal.
LONGEST = timedelta(days=3653)


@dataclass(frozen=True)
class NewKey:
    """A key just made: the row, and the key itself, shown this once."""

    row: ApiKey
    key: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(scopes: str | list[str] | tuple[str, ...]) -> str:
    """The scopes as stored (space-separated, in a fixed order).

    :raises ConfigurationError: an unknown scope, or none.
    """
    given = scopes.replace(",", " ").split() if isinstance(scopes, str) else list(scopes)
    unknown = sorted(set(given) - set(SCOPES))
    if unknown or not given:
        raise ConfigurationError(
            f"unknown scope {', '.join(map(repr, unknown))}: " * bool(unknown)
            + f"give one or more of {', '.join(SCOPES)}"
        )
    return " ".join(s for s in SCOPES if s in given)


def parse_expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    """When a key made ``now`` expires: ``30d``, ``12h``, ``never`` (``None``).

    :raises ConfigurationError: anything else.
    """
    if text is None or text == "never":
        return None
    match = DURATION.fullmatch(text.strip())
    delta = timedelta(**{UNITS[match["unit"]]: int(match["count"])}) if match else None
    if delta is None or delta > LONGEST:
        raise ConfigurationError(
            f"expiry {text!r} is not a duration such as 90m, 12h, 30d or 2w "
            "(at most ten years), or 'never'"
        )
    return (now or timezone.now()) + delta


def create(name: str, scopes: str | list[str], expires: datetime | None) -> NewKey:
    """Make and store a key; the returned key is the only copy there will be."""
    name = name.strip()
    if not name:
        raise ConfigurationError("name the key: who or what will use it (--name)")
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey.objects.create(
        name=name[:100],
        key_id=key_id,
        key_hash=digest(key),
        scopes=parse_scopes(scopes),
        expires=expires,
    )
    return NewKey(row, key)


def revoke(reference: str) -> list[ApiKey]:
    """Revoke the active key whose key id (or whole key) ``reference`` is,
    else every active key named ``reference``.

    A key id is looked up first, so that a name that looks like another
    key's id never revokes both.

    :raises ConfigurationError: no active key matches.
    """
    active = ApiKey.objects.filter(revoked__isnull=True)
    ident = reference.removeprefix(PREFIX).split("_")[0]
    keys = list(active.filter(key_id=ident)) or list(active.filter(name=reference))
    if not keys:
        raise ConfigurationError(
            f"no active API key is named {reference!r} or has that key id: "
            "`manage.py diskette_apikey list` shows them"
        )
    now = timezone.now()
    for key in keys:
        key.revoked = now
        key.save(update_fields=["revoked"])
    return keys


def _failures(key: str, now: datetime) -> tuple[int, float]:
    """The failed attempts counted in the current window, and its end."""
    value = cache.get(key)
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], int)
        and isinstance(value[1], float)
        and value[1] > now.timestamp()
    ):
        return value
    return 0, now.timestamp()


def bearer(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, else ``None``."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def authenticate(
    key: str | None,
    scope: str,
    client: str,
    max_failures: int,
    window: int,
    now: datetime | None = None,
) -> ApiKey:
    """The key's row if ``key`` may act in ``scope``; its last use is recorded.

    A valid key always passes: a client address that keeps sending bad keys
    is answered 429 instead of 401, but a colleague behind the same proxy
    or office address is never locked out by it. No key at all is always a
    401 with its challenge, which is what makes a client send its key.

    :raises ApiKeyError: 401 for a missing, unknown, expired or revoked key
        (one message for all: the answer does not help guessing), counted
        as a failed attempt of ``client``; 429 instead once ``client`` made
        ``max_failures`` of them within ``window`` seconds; 403 for a good
        key without ``scope``.
    """
    now = now or timezone.now()
    if key is None:
        raise ApiKeyError(
            "an API key is needed: send it as 'Authorization: Bearer <key>' "
            "(manage.py diskette_apikey create makes one)"
        )
    match = KEY_PATTERN.fullmatch(key)
    row = ApiKey.objects.filter(key_id=match["key_id"]).first() if match else None
    # Compared even when there is no row, so both cases take as long.
    stored = row.key_hash if row is not None else digest("")
    matches = hmac.compare_digest(stored, digest(key))
    if row is None or not matches or row.state(now) != "active":
        raise _failed(f"diskette:api-failures:{client}", client, max_failures, window, now)
    if scope not in row.scope_list:
        raise ApiKeyError(
            f"this API key may not {scope} (its scopes: {row.scopes}): "
            f"ask for a key with the {scope} scope",
            status=403,
        )
    ApiKey.objects.filter(pk=row.pk).update(last_used=now)
    return row


def _failed(
    counter: str, client: str, max_failures: int, window: int, now: datetime
) -> ApiKeyError:
    """Count a failed attempt; the error to answer it with."""
    failures, until = _failures(counter, now)
    if max_failures and failures >= max_failures:
        left = max(1, math.ceil(until - now.timestamp()))
        return ApiKeyError(
            f"too many failed attempts from {client or 'an unknown address'}: wait "
            f"{max(1, round(left / 60))} minutes, then use a valid key",
            status=429,
            retry_after=left,
        )
    if max_failures:
        if not failures:  # the window starts with the first failure
            until = now.timestamp() + window
        # The window's end is kept with the count: ``cache.incr`` would let
        # some backends (database, files) restart the timeout each time.
        cache.set(
            counter,
            (failures + 1, until),
            timeout=max(1, math.ceil(until - now.timestamp())),
        )
    return ApiKeyError(
        "this API key is not valid (unknown, expired or revoked): ask for a new one"
    )
