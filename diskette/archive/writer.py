"""Writing archives: data files and storages streamed in, the manifest last."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from ..exceptions import DumpError
from .format import CHUNK_SIZE, DATA_DIR, MANIFEST_NAME, HashingReader
from .pgzip import ParallelGzipWriter

#: ``tar czf`` compresses at gzip's default level; Python's default (9) costs
#: about three times the time for a few percent of size.
COMPRESSLEVEL = 6


@dataclass(frozen=True)
class ArchiveInfo:
    """A written archive: where it is, how big, and its sha256 (if computed)."""

    path: Path
    size: int
    sha256: str | None


class _HashingWriter:
    """Pass writes through to ``target`` while hashing and counting them."""

    def __init__(self, target: BinaryIO, digest: bool) -> None:
        self.target = target
        self.hash = hashlib.sha256() if digest else None
        self.size = 0

    def write(self, data: Any) -> int:
        if self.hash is not None:
            self.hash.update(data)
        self.size += len(data)
        return self.target.write(data)


class ArchiveWriter:
    """Write an archive to ``<path>.part`` and rename it into place on success.

    Use as a context manager: leaving the block with an exception removes the
    partial file, so a failed dump never leaves something that looks like an
    archive.

    :param path: final archive path.
    :param permissions: mode applied to the file before any data is written.
    :param checksums: compute member and archive sha256 (``--no-checksum``
        turns this off for speed; sizes are always recorded).
    """

    def __init__(self, path: Path, *, permissions: int, checksums: bool = True) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".part")
        self.checksums = checksums
        self.members: dict[str, dict[str, Any]] = {}
        self.mtime = int(time.time())
        descriptor = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, permissions)
        self._file = os.fdopen(descriptor, "wb")
        self._hashed = _HashingWriter(self._file, digest=checksums)
        self._gzip = ParallelGzipWriter(
            self._hashed, compresslevel=COMPRESSLEVEL, mtime=self.mtime
        )
        # Open across calls, closed by close() or abort(): no `with` can span them.
        self._tar = tarfile.open(  # noqa: SIM115
            fileobj=self._gzip, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=CHUNK_SIZE
        )

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.abort()

    def add_data(self, name: str, stream: IO[bytes], size: int) -> str:
        """Add a data file under ``data/`` from a stream of ``size`` bytes."""
        arcname = f"{DATA_DIR}/{name}"
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = size, self.mtime, 0o644
        self._add_stream(info, stream)
        return arcname

    def add_file(self, path: Path, arcname: str, progress: Any = None) -> None:
        """Add a regular file, read once while hashing it.

        :raises DumpError: if the file shrank while it was read.
        """
        with open(path, "rb") as source:
            info = self._tar.gettarinfo(arcname=arcname, fileobj=source)
            info.mtime = int(info.mtime)  # whole seconds, as tar keeps them: no pax header
            try:
                self._add_stream(info, source, progress)
            except OSError as exc:
                raise DumpError(f"'{path}' changed while it was archived: {exc}") from exc

    def add_directory(self, path: Path, arcname: str) -> None:
        """Add a directory entry, so empty folders survive the round trip."""
        info = self._tar.gettarinfo(str(path), arcname=arcname)
        info.mtime = int(info.mtime)
        self._tar.addfile(info)
        self.members[arcname] = {"type": "directory"}

    def add_symlink(self, arcname: str, target: str) -> None:
        """Add a symlink whose (relative) target the caller has checked."""
        info = tarfile.TarInfo(arcname)
        info.type, info.linkname, info.mtime, info.mode = (
            tarfile.SYMTYPE,
            target,
            self.mtime,
            0o777,
        )
        self._tar.addfile(info)
        self.members[arcname] = {"type": "symlink", "target": target}

    def close(self, manifest: dict[str, Any]) -> ArchiveInfo:
        """Write the manifest, finish the archive and move it into place."""
        manifest = {**manifest, "members": self.members}
        payload = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mtime, info.mode = len(payload), self.mtime, 0o644
        self._tar.addfile(info, io.BytesIO(payload))
        self._tar.close()
        self._gzip.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.path)
        digest = self._hashed.hash.hexdigest() if self._hashed.hash else None
        return ArchiveInfo(self.path, self._hashed.size, digest)

    def abort(self) -> None:
        """Drop the partial archive."""
        for closable in (self._tar, self._gzip, self._file):
            with contextlib.suppress(Exception):  # already failing: the cause is raised
                closable.close()
        self.partial.unlink(missing_ok=True)

    def _add_stream(
        self, info: tarfile.TarInfo, stream: IO[bytes], progress: Any = None
    ) -> None:
        reader = HashingReader(stream, self.checksums, progress)
        self._tar.addfile(info, reader)  # type: ignore[arg-type]  # tarfile only reads
        entry: dict[str, Any] = {"size": reader.size}
        if reader.hash is not None:
            entry["sha256"] = reader.hash.hexdigest()
        self.members[info.name] = entry
