"""What the archive format is made of: member names and its version."""

from __future__ import annotations

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
