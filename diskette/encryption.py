"""Snapshots encrypted to their readers' public keys, with age.

age (https://age-encryption.org) encrypts a file once to any number of
recipients' public keys; each developer decrypts with their own private key,
so the registry's bucket holds only ciphertext and a leaked bucket credential
leaks nothing. Each file gets a fresh random file key, and the payload is
authenticated chunk by chunk: a flipped bit or a truncated object fails to
decrypt instead of yielding wrong data.

pyrage (the ``encrypt`` extra) binds the Rust implementation and streams
files from disk to disk, so memory stays flat whatever the archive's size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .exceptions import ConfigurationError, RegistryError
from .files import PartialFile

#: What an encrypted object's name ends with.
SUFFIX = ".age"
INSTALL = "pip install 'django-diskette[encrypt]'"


def _pyrage() -> Any:
    try:
        import pyrage
    except ImportError:
        raise ConfigurationError(
            f"encrypted snapshots need pyrage, which is not installed: {INSTALL}"
        ) from None
    return pyrage


def recipients_of(keys: Iterable[str]) -> list[Any]:
    """The age recipients of public keys (``DISKETTE_REGISTRY_RECIPIENTS``).

    :raises ConfigurationError: naming the key that is not one.
    """
    pyrage = _pyrage()
    recipients = []
    for index, key in enumerate(keys):
        try:
            recipients.append(pyrage.x25519.Recipient.from_str(key.strip()))
        except Exception as exc:
            raise ConfigurationError(
                f"DISKETTE_REGISTRY_RECIPIENTS[{index}] is not an age public key ({exc})"
            ) from None
    return recipients


def read_identities(path: Path) -> list[Any]:
    """The age private keys in ``path``, as ``age-keygen`` writes the file.

    :raises RegistryError: the file is missing, unreadable, or holds no key.
    """
    pyrage = _pyrage()
    try:
        text = path.read_text()
    except OSError as exc:
        raise RegistryError(
            f"cannot read the age key '{path}' ({exc.strerror or exc}) to decrypt the "
            "snapshot: set DISKETTE_REGISTRY_IDENTITY to your key file, or make one with "
            "`manage.py diskette_snapshots --new-key` and have its public key added to "
            "DISKETTE_REGISTRY_RECIPIENTS"
        ) from None
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            raise RegistryError(
                f"'{path}' line {number} is not an age private key (AGE-SECRET-KEY-1...)"
            ) from None
    if not identities:
        raise RegistryError(f"'{path}' holds no age private key (AGE-SECRET-KEY-1...)")
    return identities


def new_identity(path: Path) -> str:
    """Write a new private key to ``path`` (mode 0600); return its public key.

    :raises RegistryError: ``path`` exists already (a key is never replaced).
    """
    pyrage = _pyrage()
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    if path.is_dir():
        raise RegistryError(
            f"'{path}' is a folder: set DISKETTE_REGISTRY_IDENTITY to a file path"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.exists():
            raise RegistryError(
                f"'{path}' exists already: it is your key; its public key is on its "
                "'# public key:' line"
            ) from None
        raise RegistryError(
            f"cannot create '{path}': a file stands where a folder of it should be; "
            "set DISKETTE_REGISTRY_IDENTITY to another path"
        ) from None
    except OSError as exc:
        raise RegistryError(
            f"cannot create '{path}': {exc.strerror or exc}; set "
            "DISKETTE_REGISTRY_IDENTITY to another path"
        ) from None
    with os.fdopen(descriptor, "w") as key:
        key.write(f"# public key: {public}\n{identity}\n")
    return public


def encrypt(source: Path, target: Path, keys: Iterable[str]) -> str:
    """Encrypt ``source`` to ``target`` for each public key in ``keys``.

    ``target`` appears whole or not at all.

    :returns: the sha256 of ``target``, computed as it was written.
    """
    pyrage = _pyrage()
    recipients = recipients_of(keys)
    with open(source, "rb") as plain, PartialFile(target) as partial:
        try:
            pyrage.encrypt_io(plain, partial, recipients)
        except Exception as exc:
            raise RegistryError(f"cannot encrypt '{source}': {exc}") from None
        partial.commit()
        return partial.sha256 or ""


def decrypt(source: Path, target: Path, identity_file: Path, what: str) -> str:
    """Decrypt ``source`` to ``target`` with the key(s) in ``identity_file``.

    :param what: how to name the snapshot in an error.
    :returns: the sha256 of ``target``, computed as it was written.
    :raises RegistryError: no key of ours opens it, it was tampered with, or
        ``target`` exists already (it is never replaced); ``target`` is then
        not created.
    """
    pyrage = _pyrage()
    identities = read_identities(identity_file)
    with open(source, "rb") as sealed, PartialFile(target) as partial:
        try:
            pyrage.decrypt_io(sealed, partial, identities)
        except Exception as exc:
            message = str(exc)
            if "No matching keys" in message:
                raise RegistryError(
                    f"{what} is not encrypted to the key in '{identity_file}': ask for "
                    "its public key to be added to DISKETTE_REGISTRY_RECIPIENTS, then "
                    "for a new snapshot"
                ) from None
            raise RegistryError(f"{what} cannot be decrypted: {message}") from None
        try:  # never over a file that appeared meanwhile
            partial.commit(replace=False)
        except FileExistsError:
            raise RegistryError(
                f"'{target}' already exists; move it, or choose another "
                "--download-destination"
            ) from None
        return partial.sha256 or ""


def is_encrypted(path: Path) -> bool:
    """Whether a file starts as an age file does."""
    with contextlib.suppress(OSError), open(path, "rb") as file:
        return file.read(21) == b"age-encryption.org/v1"
    return False
