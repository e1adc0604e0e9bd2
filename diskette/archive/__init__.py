"""The archive format: one ``.tar.gz`` holding data files, storages and a manifest.

This package is the only code that opens tar files. Layout::

    data/<stem>.jsonl        one data file per definition, in load order
    <storage relpath>/...    each storage at its path below the base path
    manifest.json            last member: what the archive holds

The manifest keeps diskette 0.6's keys (``version``, ``creation``, ``datas``,
``storages``) so archives cross both ways with it, and adds what a careful
loader needs: ``format``, the Django version, per-definition object counts,
applied migrations, and the size and sha256 of every member.

The manifest is written *last* because the checksums are computed while each
member is streamed in: every media file is read once, and a file that changes
during the dump cannot disagree with its recorded checksum. The reader
verifies the whole archive in one pass anyway, so it meets the manifest at
the end and checks every member against it before anything is used.
"""

from .format import DATA_DIR, FORMAT_VERSION, MANIFEST_NAME
from .reader import Member, Unpacked, read_manifest, unpack
from .writer import ArchiveInfo, ArchiveWriter

__all__ = [
    "DATA_DIR",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ArchiveInfo",
    "ArchiveWriter",
    "Member",
    "Unpacked",
    "read_manifest",
    "unpack",
]
