"""What the archive format is made of: member names, limits, hashing streams."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import IO

MANIFEST_NAME = "manifest.json"
DATA_DIR = "data"
#: Bumped when a change to the layout would mislead an older loader.
FORMAT_VERSION = 1
CHUNK_SIZE = 1024 * 1024


class HashingReader:
    """Read from ``source`` while hashing and counting what was read."""

    def __init__(
        self, source: IO[bytes], digest: bool, progress: Callable[[int], None] | None = None
    ) -> None:
        self.source = source
        self.hash = hashlib.sha256() if digest else None
        self.size = 0
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if self.hash is not None:
            self.hash.update(data)
        self.size += len(data)
        if self.progress is not None:
            self.progress(len(data))
        return data
