"""Files in Django storages: listed, read and written through the storage API.

Media on S3 (django-storages) and the snapshot registry both live behind
Django's ``STORAGES``. This module is where their files are listed, read
and written, so that:

- an S3 storage is listed by pages of keys and read as a stream, never through
  ``storage.open()``, which downloads the whole object into memory first
  (django-storages' ``S3File`` buffers it, with no size limit by default);
- any other storage works through the plain storage API (``listdir``,
  ``size``, ``open``, ``save``, ``delete``);
- every failure of the storage (an unreachable endpoint, refused credentials,
  a missing bucket, a denied write) becomes one line naming the alias and the
  setting to fix (:func:`translated`).

boto3 and django-storages are imported only when a project uses them.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gzip
import io
import posixpath
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, TypeVar

from .exceptions import ConfigurationError, StorageAccessError

#: How many keys an S3 listing asks for per request (S3's own maximum).
PAGE_SIZE = 1000


@dataclass(frozen=True)
class StoredFile:
    """A file of a storage, as a listing tells it.

    :param name: its name in the storage (relative to the storage's location).
    :param etag: S3's entity tag, so a read refuses an object that changed
        since it was listed; ``None`` for other storages.
    """

    name: str
    size: int
    mtime: float = 0.0
    etag: str | None = None


def get_storage(alias: str, setting: str) -> Any:
    """The storage ``STORAGES[alias]``, or a one-line error naming ``setting``.

    :param setting: the setting that names the alias, for the error.
    :raises ConfigurationError: the alias is not configured, or its backend
        cannot be imported (django-storages not installed, say).
    """
    from django.core.files.storage import InvalidStorageError, storages

    try:
        return storages[alias]
    except InvalidStorageError:
        raise ConfigurationError(
            f"{setting} names storage {alias!r}, which STORAGES does not define: "
            f"add STORAGES[{alias!r}], or name another alias"
        ) from None
    except ImportError as exc:
        raise ConfigurationError(
            f"storage {alias!r} cannot be created: {exc}; install its backend "
            "(for S3: pip install 'django-diskette[s3]')"
        ) from None
    except Exception as exc:  # a backend refusing its OPTIONS
        raise ConfigurationError(
            f"storage {alias!r} cannot be created ({type(exc).__name__}: {exc}); "
            f"fix STORAGES[{alias!r}]"
        ) from None


def is_s3(storage: Any) -> bool:
    """Whether ``storage`` is django-storages' S3 storage (or a subclass)."""
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:
        return False
    return isinstance(storage, S3Storage)


def local_folder(storage: Any) -> str | None:
    """The folder a storage keeps its files in, if it is a local one."""
    from django.core.files.storage import FileSystemStorage

    if isinstance(storage, FileSystemStorage):
        return str(storage.location)
    return None


def storage_identity(storage: Any) -> int:
    """One number per storage object, ``default_storage`` and
    ``storages["default"]`` alike (the first is a lazy proxy of the second)."""
    from django.utils.functional import LazyObject, empty

    if isinstance(storage, LazyObject):
        if storage._wrapped is empty:
            storage._setup()
        storage = storage._wrapped
    return id(storage)


def list_files(storage: Any, prefix: str = "") -> Iterator[StoredFile]:
    """Every file of ``storage`` below ``prefix`` (a folder, ``""`` for all).

    S3 keys come a page at a time, so memory stays flat however many there
    are; "folder" marker keys (ending in ``/``) are not files. Other storages
    are walked with ``listdir``, one folder at a time.
    """
    if is_s3(storage):
        yield from _list_s3(storage, prefix)
    else:
        yield from _list_api(storage, prefix)


def _list_s3(storage: Any, prefix: str) -> Iterator[StoredFile]:
    root = storage._normalize_name(prefix) if prefix else storage.location
    root = root.strip("/")
    key_prefix = f"{root}/" if root else ""
    location = storage.location.strip("/")
    strip = len(location) + 1 if location else 0
    client = storage.connection.meta.client
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket_name,
        Prefix=key_prefix,
        PaginationConfig={"PageSize": PAGE_SIZE},
    )
    for page in pages:
        for item in page.get("Contents", ()):
            key = item["Key"]
            if key.endswith("/"):
                continue
            yield StoredFile(
                name=key[strip:],
                size=item["Size"],
                mtime=item["LastModified"].timestamp(),
                etag=item.get("ETag"),
            )


def _list_api(storage: Any, folder: str) -> Iterator[StoredFile]:
    try:
        directories, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in sorted(files):
        path = posixpath.join(folder, name) if folder else name
        yield StoredFile(name=path, size=storage.size(path), mtime=_mtime(storage, path))
    for name in sorted(directories):
        yield from _list_api(storage, posixpath.join(folder, name) if folder else name)


def _mtime(storage: Any, name: str) -> float:
    with contextlib.suppress(NotImplementedError, OSError):
        modified: datetime = storage.get_modified_time(name)
        return modified.timestamp()
    return 0.0


@contextlib.contextmanager
def open_stream(
    storage: Any, stored: StoredFile | str, start: int = 0
) -> Iterator[IO[bytes]]:
    """Read a file of ``storage`` as a stream of bytes, from byte ``start``.

    On S3 the object is streamed from one GET (and, when the listing gave
    its entity tag, only if it is still the object that was listed); other
    storages are read through ``storage.open()``.
    """
    name = stored.name if isinstance(stored, StoredFile) else stored
    if is_s3(storage):
        body = _get_object(storage, stored, start=start)["Body"]
        try:
            yield body
        finally:
            body.close()
    else:
        with storage.open(name, "rb") as source:
            if start:
                source.seek(start)
            yield source


#: A file stored gzip-compressed (django-storages' ``gzip`` option) is
#: decompressed into memory up to this size, then into a temporary file.
SPOOL_SIZE = 16 * 1024 * 1024
#: ... and refused past this many times its stored size: not a stylesheet.
LARGEST_RATIO = 1000


@contextlib.contextmanager
def open_file(
    storage: Any, stored: StoredFile, client: Any = None
) -> Iterator[tuple[IO[bytes], int]]:
    """A file's bytes as the application reads them, and how many there are.

    django-storages stores a file gzip-compressed when its ``gzip`` option
    is on (``ContentEncoding: gzip``) and ``S3File`` decompresses it on the
    way out: so is it here, into a spooled file, since an archive member's
    size must be known before its bytes. Any other file is the stream of
    :func:`open_stream`, of the size the listing gave.

    :param client: for S3, the boto3 client to use (:func:`_get_object`).
    :raises ValueError: a compressed file that inflates beyond reason.
    """
    if not is_s3(storage):
        with open_stream(storage, stored) as stream:
            yield stream, stored.size
        return
    response = _get_object(storage, stored, client)
    body = response["Body"]
    try:
        if not getattr(storage, "gzip", False) or response.get("ContentEncoding") != "gzip":
            yield body, stored.size
            return
        limit = max(stored.size, 1) * LARGEST_RATIO
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE) as spool:
            with gzip.GzipFile(fileobj=body) as unzipped:
                while block := unzipped.read(1024 * 1024):
                    spool.write(block)
                    if spool.tell() > limit:
                        raise ValueError(
                            f"{stored.name!r} inflates to more than {LARGEST_RATIO} "
                            "times its stored size"
                        )
            size = spool.tell()
            spool.seek(0)
            yield spool, size
    finally:
        body.close()


def _get_object(
    storage: Any, stored: StoredFile | str, client: Any = None, start: int = 0
) -> Any:
    """One GET of a file of an S3 storage.

    It carries the customer key of encrypted objects (SSE-C), and the entity
    tag the listing gave, so a file replaced since fails instead of being
    read.

    :param client: the boto3 client to use (they are thread-safe: the
        threads of :func:`read_ahead` share one); the storage's otherwise.
    """
    name = stored.name if isinstance(stored, StoredFile) else stored
    key = storage._normalize_name(name)
    extra: dict[str, Any] = {
        k: v
        for k, v in storage.get_object_parameters(key).items()
        if k.startswith("SSECustomer")
    }
    if isinstance(stored, StoredFile) and stored.etag:
        extra["IfMatch"] = stored.etag
    if start:
        extra["Range"] = f"bytes={start}-"
    client = client or storage.connection.meta.client
    return client.get_object(Bucket=storage.bucket_name, Key=key, **extra)


#: Files up to this size are read ahead, on :data:`READERS` threads, at most
#: :data:`AHEAD_BYTES` of them at a time: on S3 each file costs a request,
#: whose latency dominates for thumbnails and avatars.
AHEAD_SIZE = 1024 * 1024
AHEAD_BYTES = 32 * 1024 * 1024
READERS = 8

_Item = TypeVar("_Item")
#: Opens a file's bytes as the application reads them: (stream, size).
Opener = Callable[[], AbstractContextManager[tuple[IO[bytes], int]]]


def read_ahead(
    storage: Any, items: Iterable[_Item], stored_of: Callable[[_Item], StoredFile]
) -> Iterator[tuple[_Item, Opener]]:
    """Each of ``items`` in order, with how to open its file.

    Small files are fetched ahead on a few threads, in memory, within a
    budget; large ones are opened when their turn comes and streamed. An
    error of a read ahead is raised by its opener, in its turn. Only S3 is
    read ahead: other storages are read one file at a time.
    """
    if not is_s3(storage):
        for item in items:
            yield item, functools.partial(open_file, storage, stored_of(item))
        return
    pending: collections.deque[tuple[_Item, Future[tuple[bytes, int]] | None]] = (
        collections.deque()
    )
    ahead = 0
    client = storage.connection.meta.client  # one for all: clients are thread-safe
    with ThreadPoolExecutor(
        max_workers=READERS, thread_name_prefix="diskette-read"
    ) as pool:
        try:
            for item in items:
                stored = stored_of(item)
                if stored.size <= AHEAD_SIZE:
                    pending.append((item, pool.submit(_fetch, storage, stored, client)))
                    ahead += stored.size
                else:
                    pending.append((item, None))
                while pending and (
                    ahead > AHEAD_BYTES
                    or len(pending) > READERS * 4
                    or pending[0][1] is None
                ):
                    ahead -= yield from _release(storage, pending.popleft(), stored_of)
            while pending:
                ahead -= yield from _release(storage, pending.popleft(), stored_of)
        finally:
            for _, future in pending:
                if future is not None:
                    future.cancel()


def _release(
    storage: Any,
    entry: tuple[_Item, Future[tuple[bytes, int]] | None],
    stored_of: Callable[[_Item], StoredFile],
) -> Generator[tuple[_Item, Opener], None, int]:
    """Yield one pending item with its opener; return the bytes it held."""
    item, future = entry
    if future is None:
        yield item, functools.partial(open_file, storage, stored_of(item))
        return 0
    yield item, functools.partial(_fetched, future)
    return stored_of(item).size


def _fetch(storage: Any, stored: StoredFile, client: Any) -> tuple[bytes, int]:
    """Read a small file whole (one byte more than its size: a longer one
    is told apart from one of the right size)."""
    with open_file(storage, stored, client) as (stream, size):
        data = stream.read(size + 1)
    return data, size


@contextlib.contextmanager
def _fetched(future: Future[tuple[bytes, int]]) -> Iterator[tuple[IO[bytes], int]]:
    data, size = future.result()
    yield io.BytesIO(data), size


def save(storage: Any, name: str, content: Any) -> None:
    """Write ``content`` (a binary file, read and seeked) to ``storage``
    under exactly ``name``.

    On S3 a file larger than the transfer threshold goes up in parts
    (boto3's multipart upload, a few parts in memory at a time), and the
    object only exists once every part arrived: an interrupted upload leaves
    nothing under ``name``.

    :raises StorageAccessError: the storage saved it under another name
        (a storage that renames rather than overwrites).
    """
    from django.core.files import File

    saved = storage.save(name, File(content, name=posixpath.basename(name)))
    if saved != name:
        with contextlib.suppress(Exception):
            storage.delete(saved)
        raise StorageAccessError(
            f"the storage saved {name!r} as {saved!r}: it must keep names as given"
        )


def is_missing(exc: BaseException | None) -> bool:
    """Whether a storage's error says the file does not exist (removed meanwhile)."""
    if isinstance(exc, FileNotFoundError):
        return True
    response = getattr(exc, "response", None)
    if type(exc).__module__.startswith("botocore") and isinstance(response, dict):
        return str(response.get("Error", {}).get("Code")) in ("404", "NoSuchKey")
    return False


#: S3 error codes, what they mean, and what to fix.
_S3_CODES = {
    "NoSuchBucket": ("bucket {bucket} does not exist", "create it, or fix bucket_name"),
    "InvalidAccessKeyId": ("the access key was refused", "fix access_key and secret_key"),
    "SignatureDoesNotMatch": (
        "the secret key was refused",
        "fix access_key and secret_key",
    ),
    "InvalidToken": ("the session token was refused", "fix security_token"),
    "ExpiredToken": ("the session token has expired", "renew security_token"),
    "AccessDenied": ("access was denied", "grant these credentials access to the bucket"),
    "AllAccessDisabled": (
        "access was denied",
        "grant these credentials access to the bucket",
    ),
    "PreconditionFailed": ("the object changed while it was read", "run the command again"),
}


@contextlib.contextmanager
def translated(alias: str, action: str) -> Iterator[None]:
    """Turn a storage's failure while doing ``action`` into one line.

    The line names the alias, what went wrong and the option of
    ``STORAGES[alias]`` to fix; errors diskette raised itself pass through.

    :raises StorageAccessError: for any failure of the storage.
    """
    from .exceptions import DisketteError

    try:
        yield
    except DisketteError:
        raise
    except Exception as exc:
        raise StorageAccessError(_describe(alias, action, exc)) from exc


def _describe(alias: str, action: str, exc: BaseException) -> str:
    where = f"storage {alias!r} (STORAGES[{alias!r}])"
    kind = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("botocore"):
        response = getattr(exc, "response", None)
        if isinstance(response, dict):  # ClientError and its modeled subclasses
            error = response.get("Error", {})
            code = str(error.get("Code", ""))
            bucket = repr(error["BucketName"]) if "BucketName" in error else "bucket_name"
            if code in _S3_CODES:
                what, fix = _S3_CODES[code]
                return f"{where}: cannot {action}: {what.format(bucket=bucket)}; {fix} in its OPTIONS"
            if is_missing(exc):
                return f"{where}: cannot {action}: the object does not exist"
            message = error.get("Message") or code
            return f"{where}: cannot {action}: {code}: {message}"
        if kind in ("NoCredentialsError", "PartialCredentialsError"):
            return (
                f"{where}: cannot {action}: no credentials; set access_key and "
                "secret_key in its OPTIONS, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if kind in (
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
            "ConnectionClosedError",
        ):
            return (
                f"{where}: cannot {action}: its endpoint cannot be reached ({exc}); "
                "check endpoint_url in its OPTIONS, and the network"
            )
        return f"{where}: cannot {action}: {kind}: {exc}"
    if module.startswith(("s3transfer", "boto3")):
        return f"{where}: cannot {action}: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"{where}: cannot {action}: {exc.filename or 'the file'} does not exist"
    if isinstance(exc, OSError) and exc.errno is None:  # a stream ended early
        return (
            f"{where}: cannot {action}: {exc}; it changed meanwhile, run the command again"
        )
    if isinstance(exc, OSError):
        return f"{where}: cannot {action}: {exc.strerror or exc}"
    return f"{where}: cannot {action}: {kind}: {exc}"
