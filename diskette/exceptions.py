"""The one exception hierarchy of diskette.

Everything diskette raises on purpose derives from :class:`DisketteError`, so
the edges (management commands, Invoke and Fabric tasks) translate a single
type into a one-line user error, and let anything else surface as the bug it
is. Subclasses also inherit the closest Django or stdlib type, so callers that
already catch ``ImproperlyConfigured`` or ``ValueError`` keep working.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class DisketteError(Exception):
    """Base for every error diskette raises on purpose."""


class ConfigurationError(DisketteError, ImproperlyConfigured):
    """A ``DISKETTE_*`` setting or a command option holds an invalid value."""


class DefinitionError(ConfigurationError):
    """An application definition is malformed or names unknown models."""


class StorageError(ConfigurationError):
    """A storage is missing, is not a directory or lies outside the base path."""


class DumpError(DisketteError):
    """Serializing data or writing the archive failed."""


class ArchiveError(DisketteError):
    """An archive cannot be written or read as a diskette archive."""


class UnsafeArchiveError(ArchiveError, ValueError):
    """An archive member would escape its target: traversal, links, devices."""


class TarFormatError(ArchiveError):
    """The tar stream itself is broken: a bad header, a missing end marker."""


class ManifestError(ArchiveError):
    """The manifest is missing, malformed, or disagrees with the members."""


class LoadError(DisketteError):
    """Loading data or restoring storages failed; nothing was changed."""


class UntrustedDataError(LoadError):
    """An archive holds what the local project did not declare: a storage, a model."""


class GuardError(DisketteError):
    """A guard refused: production, a protected project, a database holding data."""


class BusyError(DisketteError):
    """Another diskette command is working on the same folder or database."""


class DownloadError(DisketteError):
    """An archive URL is not allowed or could not be downloaded."""


class ResetError(DisketteError):
    """The database could not be dropped or created again."""


class StorageAccessError(DisketteError):
    """A Django storage (S3, say) could not be reached, read or written."""


class RegistryError(DisketteError):
    """The snapshot registry holds no such snapshot, or a snapshot is damaged."""


class TransferError(DisketteError):
    """An archive did not cross an SSH connection whole."""


class LocalWriteError(TransferError):
    """What came over a connection could not be written on this machine:
    never the host's fault, so never said in its name (:func:`~diskette.ssh.on_host`)."""


class ApiKeyError(DisketteError):
    """An API key that is missing, unknown, expired, revoked or out of scope.

    :attr:`status` is the HTTP status the endpoints answer with, and
    :attr:`retry_after` the seconds a throttled client waits (429).
    """

    def __init__(self, message: str, status: int = 401, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class CaptureError(DisketteError):
    """A capture that cannot start: one is already running."""
