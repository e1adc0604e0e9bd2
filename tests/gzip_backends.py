"""The two gzip backends the archive tests run on: isa-l and the standard library.

isa-l comes with the ``fast`` extra, which the ``test`` extra installs; the
standard library is what a plain install falls back to. A test module runs
every test on both with an autouse fixture::

    @pytest.fixture(autouse=True, params=BACKENDS)
    def backend(request, monkeypatch):
        return use(request.param, monkeypatch)
"""

from __future__ import annotations

import pytest

from diskette.archive import compression

BACKENDS = [
    pytest.param(
        "isal",
        marks=pytest.mark.skipif(
            compression.backend() != "isal",
            reason="the fast extra (isal 1.9 or later) is not installed",
        ),
    ),
    "zlib",
]


def use(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``name`` compress and decompress: ``zlib`` by hiding isa-l."""
    if name == "zlib":
        monkeypatch.setattr(compression, "igzip_threaded", None)
    assert compression.backend() == name
    return name
