"""``diskette.files``: a file appears whole or not at all, hashed as written."""

from __future__ import annotations

import hashlib
import stat

import pytest

from diskette.files import PartialFile, file_sha256


def test_a_committed_file_is_whole_private_and_hashed(tmp_path):
    target = tmp_path / "a.tar.gz"
    seen: list[int] = []
    with PartialFile(target, progress=seen.append) as output:
        output.write(b"abc")
        output.write(b"def")
        assert not target.exists()  # nothing at the name before the commit
        output.commit()
    assert target.read_bytes() == b"abcdef"
    assert output.sha256 == hashlib.sha256(b"abcdef").hexdigest() == file_sha256(target)
    assert (output.size, seen) == (6, [3, 3])
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar.gz"]


def test_leaving_without_a_commit_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), PartialFile(tmp_path / "a.tar.gz") as output:
        output.write(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_commit_that_must_not_replace_keeps_the_existing_file(tmp_path):
    target = tmp_path / "a.tar.gz"
    target.write_bytes(b"theirs")
    with pytest.raises(FileExistsError), PartialFile(target) as output:
        output.write(b"ours")
        output.commit(replace=False)
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar.gz"]


def test_a_commit_replaces_by_default(tmp_path):
    target = tmp_path / "a.tar.gz"
    target.write_bytes(b"old")
    with PartialFile(target, mode=0o640) as output:
        output.write(b"new")
        output.commit()
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
