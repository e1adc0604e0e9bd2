"""What the archive format is made of: member names and its version."""

from __future__ import annotations

import re
from typing import Any

MANIFEST_NAME = "manifest.json"
DATA_DIR = "data"
#: Bumped when a change to the layout would mislead an older loader.
FORMAT_VERSION = 1
#: The format of a delta: an archive whose manifest lists, under ``delta``,
#: files the loader must already have (``kept``). An older diskette would
#: load it as a whole media tree and lose those files, so it refuses the
#: format instead; whole archives keep format 1, which every loader reads.
DELTA_FORMAT = 2
#: The newest format this diskette reads.
READABLE_FORMAT = DELTA_FORMAT
#: A sha256 as diskette writes it: lowercase hex, whole.
SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: Any) -> bool:
    """Whether ``value`` (read from a manifest, a list, an index object) is a sha256."""
    return isinstance(value, str) and SHA256.fullmatch(value) is not None
