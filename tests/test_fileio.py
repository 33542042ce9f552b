"""Atomic output files: no partial file on failure, no silent overwrite, normal mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from tmfast._fileio import atomic_path
from tmfast.errors import OutputExistsError


def test_success_renames_and_gets_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    old = os.umask(0o022)
    try:
        with atomic_path(target) as tmp:
            assert tmp != target and tmp.parent == target.parent
            tmp.write_text("data")
            assert not target.exists()
    finally:
        os.umask(old)
    assert target.read_text() == "data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_refuses_overwrite_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with (
        pytest.raises(
            OutputExistsError,
            match=r"output exists; pass --overwrite to replace it \(overwrite=True in",
        ),
        atomic_path(target),
    ):
        pass
    assert target.read_text() == "old"
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_a_folder_that_cannot_be_made_is_one_config_error(tmp_path: Path) -> None:
    """An output under a regular file is a user mistake: a ConfigError (one line,
    exit 2 in the CLI) naming the path, not an OSError traceback."""
    from tmfast.errors import ConfigError

    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder was meant")
    target = blocker / "sub" / "out.star"
    with (
        pytest.raises(ConfigError, match=r"cannot create its folder .*is a file"),
        atomic_path(target),
    ):
        pass
    assert blocker.read_text().startswith("a file")


def test_an_existing_folder_is_not_an_output_file(tmp_path: Path) -> None:
    """--overwrite used to do all the work and then fail with IsADirectoryError when
    the output path named a folder; it is one ConfigError up front."""
    from tmfast._fileio import check_writable
    from tmfast.errors import ConfigError

    folder = tmp_path / "angles.txt"
    folder.mkdir()
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="is a folder"):
            check_writable(folder, overwrite=overwrite)
