"""Output paths checked before the work, atomic writes, results kept when the write fails."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from certnn.report import atomic
from certnn.report.atomic import (OutputPathError, OutputWriteError, atomic_write_text, check_output_path,
                                  write_or_keep)


def test_check_accepts_new_file_and_missing_folders(tmp_path):
    assert check_output_path(tmp_path / "a.json", "--json") == tmp_path / "a.json"
    check_output_path(tmp_path / "new" / "deeper" / "a.json", "--json")
    assert not (tmp_path / "new").exists()  # nothing created by the check
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_check_refuses_directory(tmp_path):
    with pytest.raises(OutputPathError, match=r"--json .* is a directory"):
        check_output_path(tmp_path, "--json")


def test_check_refuses_parent_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputPathError, match=r"--out .*f is a file, not a folder"):
        check_output_path(tmp_path / "f" / "sub" / "a.json", "--out")


def test_check_refuses_unwritable_folder(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputPathError, match="Read-only file system"):
        check_output_path(tmp_path / "a.json", "--json")


def test_atomic_write_replaces_whole_file_and_keeps_mode(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    os.chmod(p, 0o640)
    atomic_write_text(p, "new text")
    assert p.read_text() == "new text"
    assert p.stat().st_mode & 0o777 == 0o640
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_failed_rename_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    p = tmp_path / "a.txt"
    p.write_text("old")

    def fail(*a):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_write_failure_keeps_results_beside_the_path(tmp_path, monkeypatch):
    def fail(*a):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OutputWriteError, match=r"could not write --json .*No space left.*kept in") as ei:
        write_or_keep(tmp_path / "r.json", '{"a": 1}\n', "--json")
    assert ei.value.exit_code == 2
    assert ei.value.kept.parent == tmp_path and ei.value.kept.read_text() == '{"a": 1}\n'


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_dev_full_keeps_results_outside_dev(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_output_path("/dev/full", "--json")  # a device: accepted, the failure comes at the write
    with pytest.raises(OutputWriteError, match="kept in") as ei:
        write_or_keep("/dev/full", "results\n", "--json")
    assert ei.value.kept.parent == tmp_path and ei.value.kept.read_text() == "results\n"


def test_nothing_writable_hands_the_text_back(tmp_path, monkeypatch):
    def fail(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(atomic.os, "replace", fail)
    monkeypatch.setattr(atomic, "_keep_in", lambda *a: None)
    with pytest.raises(OutputWriteError, match="on stdout") as ei:
        write_or_keep(tmp_path / "r.json", "doc\n", "--json")
    assert ei.value.unsaved_text == "doc\n"
