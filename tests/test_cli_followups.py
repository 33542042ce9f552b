"""Follow-ups of a CLI review: standard output that cannot be written, Ctrl-C,
extraction's output folder, where the maps of a job are read, the tomogram mask."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli
from tmfast.cli import main

_CLI = "from tmfast.cli import main; main()"


def _tmfast(*args: str, stdout: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CLI, *args],
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        text=True,
    )


# --- standard output and Ctrl-C ------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "args", [("info",), ("angles", "-a", "30", "--n-samples", "1000")]
)
def test_a_full_standard_output_is_one_line_and_exit_1(args: tuple[str, ...]) -> None:
    """`tmfast info > /dev/full` ended in an OSError traceback."""
    with open("/dev/full", "w") as full:
        proc = _tmfast(*args, stdout=full)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert err.splitlines() == [
        "tmfast: error: cannot write to standard output (No space left on device); "
        "redirect it to a file system with space, or to a file you can write"
    ]


def test_a_reader_that_went_away_ends_quietly_with_exit_0() -> None:
    """`tmfast angles | head -1` exited 1 (and could print a traceback)."""
    proc = _tmfast("angles", "-a", "30", "--n-samples", "1000", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before anything is written
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")


def test_an_output_file_error_is_not_blamed_on_standard_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a write to standard output is reported as one; an OSError elsewhere
    (here from the angle set) is left as it was."""
    from tmfast.geometry import angles as ga

    def failing(*args: object, **kwargs: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ga, "angle_set", failing)
    with pytest.raises(OSError, match="No space left"):
        main(["angles", "-a", "30"])


def test_ctrl_c_is_one_line_and_exit_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typer turned Ctrl-C into a silent exit 130: main's message never ran."""
    from tmfast.geometry import angles as ga

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(ga, "angle_set", interrupted)
    code, err = run_cli(["angles", "-a", "30"], capsys)
    assert code == 130
    assert err.splitlines() == ["tmfast: interrupted"]


def test_a_user_error_still_exits_2_with_its_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run_cli(["angles", "-a", "30", "--n-samples", "5"], capsys)
    assert code == 2
    assert err.splitlines() == [
        "tmfast: error: --n-samples 5 is invalid; give 1000 to 10^8"
    ]


# --- tmfast extract: the output folder -----------------------------------------------


def _job(tmp_path: Path) -> Path:
    from test_extraction_candidates import make_job  # type: ignore[import-not-found]

    d = tmp_path / "job"
    d.mkdir()
    return Path(make_job(d, write_tomogram=False))


def test_an_output_folder_that_cannot_be_made_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-o` on a read-only file system was an EROFS traceback after the picking."""
    import errno

    import tmfast.extraction as extraction

    job = _job(tmp_path)
    ro = tmp_path / "ro"
    mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self == ro or ro in self.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    def no_work(*args: object, **kwargs: object) -> object:
        raise AssertionError("the maps were read before the folder was checked")

    monkeypatch.setattr(Path, "mkdir", read_only)
    monkeypatch.setattr(extraction, "extract_candidates", no_work)
    argv = ["extract", "-j", str(job), "-n", "5", "-o", str(ro / "x")]
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert err.splitlines() == [
        f"tmfast: error: {ro / 'x'}: cannot create the -o/--output-dir folder "
        "(Read-only file system); choose another path"
    ]


def test_a_failed_extraction_leaves_no_empty_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _job(tmp_path)
    out = tmp_path / "new" / "out"
    missing = tmp_path / "no_mask.mrc"
    argv = ["extract", "-j", str(job), "-n", "5", "-o", str(out)]
    code, err = run_cli([*argv, "--tomogram-mask", str(missing)], capsys)
    assert code == 2 and "tomogram mask not found" in err, err
    assert not (tmp_path / "new").exists()
    # without the missing mask the run makes the folder and fills it
    code, err = run_cli([*argv, "--no-plots"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["tomo_particles.star"]


# --- where the maps of a job are read ------------------------------------------------


def _absolute_job(tmp_path: Path) -> Path:
    """A job recording absolute map paths, as `tmfast match` writes them."""
    import json

    job = _job(tmp_path)
    data = json.loads(job.read_text())
    for key in ("scores_file", "angles_file"):
        data[key] = str(job.parent / data[key])
    job.write_text(json.dumps(data))
    return job


def test_a_copied_results_folder_reads_its_own_maps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`cp -r out out2` then extracting out2's job read out's maps silently."""
    import logging
    import shutil

    from tmfast.extraction.pytom_job import load_job, locate_maps

    job = _absolute_job(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(job.parent, copy)
    mjob, jpath = load_job(copy / job.name)
    with caplog.at_level(logging.DEBUG, logger="tmfast.extraction.pytom_job"):
        found = locate_maps(mjob, jpath.parent)
    assert found == (copy / "tomo_scores.mrc", copy / "tomo_angles.mrc")
    assert "not the recorded" in caplog.text and str(job.parent) in caplog.text
    capsys.readouterr()  # (a handler of an earlier main() may have complained)

    (copy / "tomo_scores.mrc").write_bytes(b"broken")
    code, err = run_cli(["extract", "-j", str(copy / job.name), "-n", "5"], capsys)
    assert code == 2
    assert err.startswith(f"tmfast: error: {copy / 'tomo_scores.mrc'}: "), err
    assert not (copy / "tomo_particles.star").exists()


def test_maps_not_beside_the_job_are_read_where_it_recorded_them(
    tmp_path: Path,
) -> None:
    from tmfast.extraction.pytom_job import load_job, locate_maps

    job = _absolute_job(tmp_path)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / job.name).write_text(job.read_text())
    mjob, jpath = load_job(moved / job.name)
    assert locate_maps(mjob, jpath.parent) == (
        job.parent / "tomo_scores.mrc",
        job.parent / "tomo_angles.mrc",
    )


# --- the tomogram mask, read as tmfast reads MRC files -------------------------------


def _mask_zyx() -> np.ndarray:
    """Label 255 inside, 0 on the first planted peak, label 1 on the second (so the
    mask has positive values even when 255 is misread as signed -1)."""
    from test_extraction_candidates import (  # type: ignore[import-not-found]
        ORIGIN_ZYX,
        PLANTED,
        TOMO_ZYX,
    )

    mask = np.full(TOMO_ZYX, 255, np.uint8)
    for (planted, _, _), value in zip(PLANTED[:2], (0, 1), strict=True):
        mask[tuple(np.array(planted) + np.array(ORIGIN_ZYX))] = value
    return mask


def _write_mask(path: Path, form: str) -> Path:
    import gzip
    import warnings

    import mrcfile

    mask = _mask_zyx()
    data: np.ndarray = mask.astype(np.float32)
    if form == "imod-unsigned-bytes":
        data = mask.view(np.int8)  # mode 0 holds the bytes; IMOD's flag says unsigned
    elif form == "axes-x-y-z":
        data = np.ascontiguousarray(data.transpose(2, 1, 0))
    raw = path.with_suffix(".raw.mrc")
    with warnings.catch_warnings(), mrcfile.new(raw, overwrite=True) as m:
        warnings.simplefilter("ignore", RuntimeWarning)
        m.set_data(data)
        m.voxel_size = 10.0
        if form == "axes-x-y-z":  # sections along x, rows along y, columns along z
            m.header.mapc, m.header.mapr, m.header.maps = 3, 2, 1
        if form == "imod-unsigned-bytes":
            extra2 = bytearray(bytes(m.header.extra2))
            extra2[40:48] = np.array([1146047817, 0], "<i4").tobytes()  # IMOD, flags
            m.header.extra2 = bytes(extra2)
    if form == "gzip":
        path.write_bytes(gzip.compress(raw.read_bytes()))
    else:
        raw.rename(path)
    return path


@pytest.mark.parametrize("form", ["gzip", "imod-unsigned-bytes", "axes-x-y-z"])
def test_the_tomogram_mask_is_read_as_tmfast_reads_mrc_files(
    tmp_path: Path, form: str
) -> None:
    """The mask was memory-mapped with mrcfile directly: a gzip file failed, IMOD's
    unsigned 255 read as -1 (outside) and the mapc/mapr/maps order was ignored."""
    from tmfast.extraction import extract_candidates

    job = _job(tmp_path)
    mask = _write_mask(tmp_path / "mask.mrc", form)
    table = extract_candidates(job, n_particles=10, tomogram_mask=mask)
    # the 0 voxel is excluded; the 255 and 1 labels are inside
    assert sorted(table.scores.tolist()) == pytest.approx([0.3, 0.4])


def test_a_tomogram_sized_byte_mask_is_cropped_before_it_is_converted(
    tmp_path: Path,
) -> None:
    """Memory stays modest: only the search region becomes float32, not the whole
    tomogram (the file is memory-mapped)."""
    import tracemalloc

    from test_extraction_candidates import (  # type: ignore[import-not-found]
        ORIGIN_ZYX,
        SEARCH_ZYX,
        TOMO_ZYX,
    )
    from tmfast.extraction.candidates import _load_mask
    from tmfast.extraction.pytom_job import load_job

    mjob, _ = load_job(_job(tmp_path))
    mask = _write_mask(tmp_path / "mask.mrc", "imod-unsigned-bytes")
    _load_mask(mask, mjob)  # imports and caches are not the mask's
    tracemalloc.start()
    try:
        cropped = _load_mask(mask, mjob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * int(np.prod(TOMO_ZYX)) * 0.8
    (oz, oy, ox), (sz, sy, sx) = ORIGIN_ZYX, SEARCH_ZYX
    want = _mask_zyx()[oz : oz + sz, oy : oy + sy, ox : ox + sx]
    assert cropped.dtype == np.float32
    np.testing.assert_array_equal(cropped, want.astype(np.float32))  # 255, not -1
