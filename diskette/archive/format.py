"""What the archive format is made of: member names and its version."""

from __future__ import annotations

MANIFEST_NAME = "manifest.json"
DATA_DIR = "data"
#: Bumped when a change to the layout would mislead an older loader.
FORMAT_VERSION = 1
