"""Archive bombs replayed against a real ``manage.py diskette_load --check``.

A few hundred KiB of gzip can claim gigabytes. These tests build such
archives as an attacker would (``references/redteam-2026-11/bomb.py``, issue
11) and check that the child process refuses them in one line, with a
non-zero exit, and with its memory flat: the peak is read from the kernel's
accounting of that very child (``wait4``), not from anything diskette says.

The manifest and disk-filling bombs are refused by the reader and tested
with it; here are the bombs of the tar layer.
"""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from diskette.archive.tarstream import PAX_HEADER_LIMIT
from tests.projects import SandboxCopy

pytestmark = pytest.mark.subprocess

MIB = 1024 * 1024
#: What a bomb may add to the peak memory of a check of a harmless archive:
#: the gunzip thread's queue of blocks, allocator slack. Reading a 64 MiB
#: pax header whole adds twice its size.
MEMORY_MARGIN = 32 * MIB


@dataclass
class Outcome:
    returncode: int
    stderr: str
    peak: int  # bytes


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> SandboxCopy:
    copy = SandboxCopy.create(tmp_path_factory.mktemp("bombs") / "project")
    copy.manage("migrate", "--verbosity", "0")
    return copy


def check(project: SandboxCopy, archive: Path) -> Outcome:
    """``diskette_load ARCHIVE --check`` in a child, and the child's peak memory."""
    result, peak = project.manage_measured("diskette_load", str(archive), "--check")
    return Outcome(result.returncode, result.stderr, peak)


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def write_gzip(path: Path, chunks: Iterator[bytes]) -> Path:
    """Compress raw tar bytes as they come: the bomb is never whole in memory."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(compressor.compress(chunk))
        out.write(compressor.flush())
    return path


def pax_bomb(path: Path, claimed: int) -> Path:
    """A pax header of ``claimed`` zeros, then a valid manifest: an archive
    that passes ``--check`` unless the header is refused."""
    manifest = json.dumps({"format": 1, "datas": [], "storages": []}).encode()

    def chunks() -> Iterator[bytes]:
        if claimed:
            yield header("././@PaxHeader", claimed, tarfile.XHDTYPE)
            for _ in range(claimed // MIB):
                yield bytes(MIB)
        yield header("manifest.json", len(manifest))
        yield manifest + bytes(-len(manifest) % 512)
        yield bytes(1024)

    return write_gzip(path, chunks())


def test_a_pax_header_bomb_is_refused_in_one_line_with_flat_memory(project, tmp_path):
    claimed = 64 * MIB
    bomb = pax_bomb(tmp_path / "bomb.tar.gz", claimed)
    assert bomb.stat().st_size < MIB  # 64 MiB claimed in a few hundred KiB

    harmless = check(project, pax_bomb(tmp_path / "harmless.tar.gz", 0))
    assert harmless.returncode == 0, harmless.stderr  # the bomb less its header passes
    outcome = check(project, bomb)

    assert outcome.returncode == 1
    assert outcome.stderr == (
        f"CommandError: '{bomb}' is not a complete diskette archive: a pax extended "
        f"header of {claimed} bytes exceeds diskette's limit of {PAX_HEADER_LIMIT} "
        "bytes; no archive diskette writes holds one: use another archive\n"
    )
    assert outcome.peak < harmless.peak + MEMORY_MARGIN, (outcome.peak, harmless.peak)
    assert outcome.peak < 200 * MIB
