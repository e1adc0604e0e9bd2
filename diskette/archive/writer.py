"""Writing archives: data files and storages streamed in, the manifest last."""

from __future__ import annotations

import errno
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..exceptions import DumpError

try:
    import fcntl
except ImportError:  # Windows: no flock, leftovers stay
    fcntl = None  # type: ignore[assignment]
from ..files import BLOCK_SIZE, HashingReader, PartialFile, StreamFile
from .compression import GzipWriter
from .format import DATA_DIR, DELTA_FORMAT, MANIFEST_NAME


@dataclass(frozen=True)
class ArchiveInfo:
    """A written archive: where it is, how big, and its sha256 (if computed)."""

    path: Path
    size: int
    sha256: str | None


#: Errors that mean "no room": the fix is space, not another file.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: A temporary file of a killed dump is removed once unlocked and this old:
#: its writer held a lock on it from the moment after it was created.
LEFTOVER_AGE = 60


def write_error(action: str, path: Path, exc: OSError) -> DumpError:
    """A one-line error blaming the archive (or its folder), with the fix."""
    fix = (
        "free some space there or choose another destination"
        if exc.errno in NO_ROOM
        else "choose another destination"
    )
    return DumpError(f"cannot {action} '{path}': {exc.strerror or exc}; {fix}")


def read_error(path: str | Path, exc: OSError) -> DumpError:
    """A one-line error blaming a media file that could not be archived."""
    if exc.errno is None:  # tarfile: fewer bytes than the size it took
        return DumpError(f"'{path}' changed while it was archived: {exc}; dump again")
    if exc.errno == errno.ENOENT:
        return DumpError(f"'{path}' was removed while it was archived; dump again")
    return DumpError(
        f"'{path}' cannot be read: {exc.strerror}; fix it or exclude it from the dump"
    )


class _ArchiveOutput:
    """The archive's :class:`PartialFile` (or :class:`StreamFile`), whose
    write errors blame the archive.

    Every byte of the archive goes through here, so a failed write is told
    apart from a failed read of a media file.
    """

    def __init__(self, partial: PartialFile | StreamFile) -> None:
        self.partial = partial

    def write(self, data: Any) -> int:
        try:
            return self.partial.write(data)
        except OSError as exc:
            if isinstance(self.partial, StreamFile):
                raise DumpError(
                    f"cannot write the archive to the standard output: "
                    f"{exc.strerror or exc}; whoever read it stopped reading"
                ) from exc
            raise write_error("write the archive", self.partial.target, exc) from exc


class ArchiveWriter:
    """Write an archive to a temporary file beside it, renamed into place on success.

    The temporary name is unique (``.<name>.<random>.part``), so two dumps to
    the same name never write into one file: each renames a complete archive
    of its own into place, the last one wins, and the sha256 each prints is
    that of the file it wrote.

    Use as a context manager: leaving the block with an exception (Ctrl-C
    included) removes the partial file, so a failed dump never leaves
    something that looks like an archive.

    :param path: final archive path.
    :param permissions: mode applied to the file before any data is written.
    :param checksums: compute member and archive sha256 (``--no-checksum``
        turns this off for speed; sizes are always recorded).
    :param stream: write the archive down this stream instead (a pipe to
        the side that loads it: ``diskette_dump --to-stdout``); no file, so
        nothing to rename or remove.
    :raises DumpError: if the file cannot be created in the destination.

    ``leftovers`` lists the temporary files of killed dumps to the same name
    that were removed: a dump holds a lock on its own until it ends.
    """

    def __init__(
        self,
        path: Path,
        *,
        permissions: int,
        checksums: bool = True,
        stream: IO[bytes] | None = None,
    ) -> None:
        self.path = path
        self.checksums = checksums
        self.members: dict[str, dict[str, Any]] = {}
        self.kept: dict[str, dict[str, Any]] = {}
        self.mtime = int(time.time())
        self._finished = False
        self._output: PartialFile | StreamFile
        self.leftovers: list[Path] = []
        #: The temporary file written (``None`` for a stream).
        self.partial: Path | None = None
        if stream is not None:
            self._output = StreamFile(stream, digest=checksums)
        else:
            try:
                # Locked: remove_leftovers tells a dump at work from a killed one.
                self._output = PartialFile(
                    path, mode=permissions, digest=checksums, lock=True
                )
            except OSError as exc:
                raise write_error("create an archive in", path.parent, exc) from exc
            self.partial = self._output.path
            self.leftovers = remove_leftovers(path, keep=self.partial)
        self._gzip = GzipWriter(_ArchiveOutput(self._output))
        # Open across calls, closed by close() or abort(): no `with` can span them.
        # Mode "w", not the stream mode "w|": tarfile writes straight into
        # the gzip stream, where "w|" copies everything through a buffer of
        # bytes that it re-slices at each write (each 1 MiB some fifty times),
        # or re-grows (each small header, if the buffer is made larger).
        # ``dereference``: a media file with hard links is archived whole each
        # time, not as a hard link member, which no loader of ours accepts
        # (symlinks are added by add_symlink, never followed here).
        # typeshed wants a file that reads and seeks: mode "w" does neither.
        self._tar = tarfile.TarFile(
            fileobj=self._gzip,  # type: ignore[arg-type]
            mode="w",
            format=tarfile.PAX_FORMAT,
            dereference=True,
            copybufsize=BLOCK_SIZE,
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

    def add_file(
        self,
        path: str | Path,
        arcname: str,
        progress: Any = None,
        *,
        status: os.stat_result | None = None,
    ) -> None:
        """Add a regular file, read once while hashing it.

        :param status: its ``lstat``, when the caller has it: a writer that
            needs no more (a delta's, for a file the other side has) does not
            take it again. The bytes archived are described by the open file.
        :raises DumpError: if the file shrank while it was read.
        """
        try:
            source = open(path, "rb")  # noqa: SIM115  # closed below, errors told apart
        except OSError as exc:
            raise read_error(path, exc) from exc
        with source:
            info = self._tar.gettarinfo(arcname=arcname, fileobj=source)
            info.mtime = int(info.mtime)  # whole seconds, as tar keeps them: no pax header
            try:
                self._add_stream(info, source, progress)
            except OSError as exc:  # a read: writes raise DumpError (_HashingWriter)
                raise read_error(path, exc) from exc

    def add_stream(
        self, arcname: str, stream: IO[bytes], size: int, mtime: float, progress: Any = None
    ) -> None:
        """Add a file read from a stream of ``size`` bytes (a file of S3, say).

        :raises OSError: the stream ended before ``size`` bytes.
        """
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = size, int(mtime) or self.mtime, 0o644
        self._add_stream(info, stream, progress)

    def add_directory(self, path: str | Path | None, arcname: str) -> None:
        """Add a directory entry, so empty folders survive the round trip.

        :param path: the folder whose mode and time to keep; ``None`` for a
            folder of a storage that has none (S3).
        """
        if path is None:
            info = tarfile.TarInfo(arcname)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        else:
            try:
                info = self._tar.gettarinfo(str(path), arcname=arcname)
            except OSError as exc:
                raise read_error(path, exc) from exc
        info.mtime = int(info.mtime) or self.mtime
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

    def add_kept(self, arcname: str, size: int, sha256: str) -> None:
        """List a file the loader has already, and leave its content out.

        The archive becomes a delta (:data:`~.format.DELTA_FORMAT`): it
        loads only where each such file is found with this sha256
        (:mod:`diskette.delta`).
        """
        self.kept[arcname] = {"size": size, "sha256": sha256}

    def close(self, manifest: dict[str, Any]) -> ArchiveInfo:
        """Write the manifest, finish the archive and move it into place.

        The file is on disk (fsync) before the rename, and the rename is on
        disk before this returns: a crash leaves the old archive or the new
        one, never a name pointing at a half-written file.
        """
        manifest = {**manifest, "members": self.members}
        if self.kept:
            delta = manifest.get("delta") or {}
            manifest.update(format=DELTA_FORMAT, delta={**delta, "kept": self.kept})
        # Compact: an indent takes the pure Python encoder, three times as
        # slow on the 16,000 entries of a large media folder.
        payload = json.dumps(manifest, ensure_ascii=False, separators=(",", ":")).encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mtime, info.mode = len(payload), self.mtime, 0o644
        self._tar.addfile(info, io.BytesIO(payload))
        self._tar.close()
        self._gzip.close()
        try:
            # A full disk may only show now (delayed allocation, NFS): at fsync.
            self._output.commit()
        except OSError as exc:
            raise write_error("write the archive", self.path, exc) from exc
        self._finished = True
        return ArchiveInfo(self.path, self._output.size, self._output.sha256)

    def abort(self) -> None:
        """Drop the partial archive, without finishing it.

        Closing the tar and gzip streams would compress and write what is
        left (and, on a full disk, fail again) only to delete it: the gzip
        stream drops what is queued instead, and the file is removed.
        """
        if self._finished:  # renamed into place already: it is the archive now
            return
        self._finished = True
        self._gzip.abort()
        self._output.discard()

    def _add_stream(
        self, info: tarfile.TarInfo, stream: IO[bytes], progress: Any = None
    ) -> None:
        reader = HashingReader(stream, self.checksums, progress)
        self._tar.addfile(info, reader)  # type: ignore[arg-type,unused-ignore]  # only read
        entry: dict[str, Any] = {"size": reader.size}
        if reader.hash is not None:
            entry["sha256"] = reader.hash.hexdigest()
        self.members[info.name] = entry


def remove_leftovers(path: Path, *, keep: Path) -> list[Path]:
    """Remove the temporary files that killed dumps to ``path`` left behind.

    A file still locked belongs to a dump at work; a younger one may be
    between its creation and its lock. Unreadable ones are left alone.
    """
    removed: list[Path] = []
    if fcntl is None:
        return removed
    for candidate in path.parent.glob(f".{path.name}.*.part"):
        if candidate == keep:
            continue
        try:
            with open(candidate, "rb") as leftover:
                if time.time() - os.fstat(leftover.fileno()).st_mtime < LEFTOVER_AGE:
                    continue
                fcntl.flock(leftover, fcntl.LOCK_EX | fcntl.LOCK_NB)
                candidate.unlink()  # under the lock: no dump can take it meanwhile
        except OSError:  # locked (a dump at work), gone, or not ours to read
            continue
        removed.append(candidate)
    return removed
