"""The embedding API (issue 8): everything here goes through ``import tmfast`` only.

A planted particle is matched in memory and extracted as a table; nothing may be
written to disk unless a writer is called. Oracles are independent of tmfast: the
particle is planted with scipy's ``map_coordinates`` and ``Rotation`` (the rotation
convention of docs/conventions.md written out), STAR files are read back with
``starfile``, and the RELION angles are checked against pytom-match-pick's export
formula. Also checked: every name of ``tmfast.__all__`` resolves and is documented,
``import tmfast`` stays light, and docs/examples/embed_in_pipeline.py runs.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tmfast
from scipy import ndimage
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "embed_in_pipeline.py"
HEAVY = ("typer", "rich", "matplotlib", "pyopencl", "pycuda", "pyvkfft")

VOXEL_A = 10.0
BOX = 16
SHAPE_ZYX = (32, 40, 40)
STEP_DEG = 60.0  # 72 rotations
PLANTED_ZYX = (15, 21, 18)
PLANTED_INDEX = 37


def _template() -> np.ndarray:
    """Asymmetric template: blobs on unequal arms about the box centre N // 2."""
    z, y, x = np.indices((BOX,) * 3, dtype=np.float64) - BOX // 2
    out = np.zeros((BOX,) * 3)
    for bz, by, bx, s, a in (
        (0, 0, 0, 2.0, 1.0),
        (0, 0, 5, 1.5, 0.9),
        (0, 4, 0, 1.3, 0.8),
        (-3, 0, 2, 1.1, 0.7),
    ):
        out += a * np.exp(
            -((z - bz) ** 2 + (y - by) ** 2 + (x - bx) ** 2) / (2 * s * s)
        )
    return out.astype(np.float32)


def _rotate_scipy(template: np.ndarray, angles_zxz_rad: np.ndarray) -> np.ndarray:
    """``out(r) = template(M.T (r - c) + c)``, M from scipy's extrinsic "zxz"."""
    m = Rotation.from_euler("zxz", angles_zxz_rad).as_matrix()
    n = template.shape[0]
    zyx = np.indices((n, n, n), dtype=np.float64).reshape(3, -1) - n // 2
    src_xyz = m.T @ zyx[::-1]  # rows x, y, z
    coords = src_xyz[::-1] + n // 2
    out = ndimage.map_coordinates(template, coords, order=3, mode="constant", cval=0.0)
    return out.reshape(n, n, n).astype(np.float32)


@dataclass
class Case:
    config: tmfast.MatchConfig
    result: tmfast.MatchResult
    table: tmfast.CandidateTable
    workdir: Path
    tomogram: np.ndarray
    mask: np.ndarray


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    """Plant one particle, match arrays in memory and extract, in an empty folder."""
    workdir = tmp_path_factory.mktemp("public_api")
    angles = tmfast.angle_set(STEP_DEG)
    rng = np.random.default_rng(11)
    tomo = rng.normal(0.0, 0.3, SHAPE_ZYX).astype(np.float32)
    z, y, x = PLANTED_ZYX
    c = BOX // 2
    tomo[z - c : z - c + BOX, y - c : y - c + BOX, x - c : x - c + BOX] += (
        _rotate_scipy(_template(), angles[PLANTED_INDEX])
    )
    mask = tmfast.sphere_mask(BOX, 7.0)
    config = tmfast.MatchConfig(  # no files; default destination and checkpoints
        tomo_id="tomo",
        angular_search=STEP_DEG,
        particle_diameter_a=BOX * VOXEL_A,
        tilt_angles=(-60.0, 60.0),
        backend="cpu",
        rng_seed=3,
    )
    old = Path.cwd()
    os.chdir(workdir)
    try:
        result = tmfast.match_template(
            config, tomogram=tomo, template=_template(), mask=mask, voxel_size_a=VOXEL_A
        )
        table = tmfast.candidates_from_maps(
            result.job, result.scores, result.angles, n_particles=5
        )
        yield Case(config, result, table, workdir, tomo, mask)
    finally:
        os.chdir(old)


def test_match_template_returns_maps_in_memory(case: Case) -> None:
    r = case.result
    assert isinstance(r, tmfast.MatchResult)
    assert r.scores.shape == SHAPE_ZYX and r.scores.dtype == np.float32
    assert r.angles.shape == SHAPE_ZYX and r.angles.dtype == np.int32
    np.testing.assert_array_equal(r.angle_set, tmfast.angle_set(STEP_DEG))
    assert len(r.angle_set) == 72
    peak = np.unravel_index(int(np.argmax(r.scores)), r.scores.shape)
    assert tuple(int(v) for v in peak) == PLANTED_ZYX
    assert int(r.angles[PLANTED_ZYX]) == PLANTED_INDEX
    assert r.stats.search_space == int(np.prod(SHAPE_ZYX)) * 72
    assert 0 < r.stats.std < float(r.scores[PLANTED_ZYX]) / 5
    assert isinstance(r.job, tmfast.MatchJob) and r.job.scores_file in ("", None)
    assert r.job.tomo_id == "tomo" and r.job.voxel_size_a == VOXEL_A
    assert (r.job.tomogram, r.job.template, r.job.mask) == ("<array>",) * 3


def test_nothing_written_unless_asked(case: Case) -> None:
    assert _listing(case.workdir) == []


def test_extract_candidates_takes_the_result_in_memory(case: Case) -> None:
    """extract_candidates(result) uses the result's maps and angle set, and the
    tomogram mask given to match_template; it reads and writes nothing."""
    t = tmfast.extract_candidates(case.result, n_particles=5)
    np.testing.assert_array_equal(t.positions_zyx, case.table.positions_zyx)
    np.testing.assert_array_equal(t.angles_zxz_rad, case.table.angles_zxz_rad)
    # a tomogram mask excluding the planted particle's half of the volume
    tmask = np.ones(SHAPE_ZYX, np.float32)
    tmask[:, :, : PLANTED_ZYX[2] + 3] = 0.0
    masked = tmfast.match_template(
        case.config,
        tomogram=case.tomogram,
        template=_template(),
        mask=case.mask,
        tomogram_mask=tmask,
        voxel_size_a=VOXEL_A,
    )
    assert masked.job.tomogram_mask == "<array>"
    picked = tmfast.extract_candidates(masked, n_particles=5, cutoff=-1)
    assert len(picked) >= 1 and np.all(picked.positions_zyx[:, 2] > PLANTED_ZYX[2] + 2)
    free = tmfast.extract_candidates(
        masked, n_particles=5, cutoff=-1, ignore_tomogram_mask=True
    )
    np.testing.assert_array_equal(free.positions_zyx[0], PLANTED_ZYX)
    assert _listing(case.workdir) == []


def test_candidates_table_finds_the_planted_particle(case: Case) -> None:
    t = case.table
    assert isinstance(t, tmfast.CandidateTable)
    assert len(t) >= 1
    np.testing.assert_array_equal(t.positions_zyx[0], PLANTED_ZYX)
    np.testing.assert_array_equal(t.positions_xyz[0], PLANTED_ZYX[::-1])
    assert t.angle_indices[0] == PLANTED_INDEX
    np.testing.assert_array_equal(
        t.angles_zxz_rad[0], tmfast.angle_set(STEP_DEG)[PLANTED_INDEX]
    )
    assert t.scores[0] == case.result.scores[PLANTED_ZYX]
    assert np.all(np.diff(t.scores) <= 0)
    assert t.cutoff == pytest.approx(
        tmfast.false_alarm_cutoff(case.result.stats.std, case.result.stats.search_space)
    )
    assert np.all(t.scores > t.cutoff)
    # RELION angles: the matrix pytom-match-pick exports for the same ZXZ angles
    for zxz, rel in zip(t.angles_zxz_rad, t.relion_angles_deg, strict=True):
        want = Rotation.from_euler("ZXZ", -zxz).as_matrix()
        got = Rotation.from_euler("ZYZ", rel, degrees=True).as_matrix()
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_star_written_only_when_asked_and_reads_back(case: Case) -> None:
    starfile = pytest.importorskip("starfile")
    out = case.workdir / "asked" / "particles.star"
    out.parent.mkdir()
    try:
        path = tmfast.write_star(out, case.table.to_star_blocks(relion5=False))
        assert Path(path) == out
        df = starfile.read(out)
        np.testing.assert_array_equal(
            df[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(),
            case.table.positions_xyz,
        )
        np.testing.assert_array_equal(
            df["rlnLCCmax"].to_numpy(), case.table.scores.astype(np.float64)
        )
        with pytest.raises(tmfast.OutputExistsError):
            tmfast.write_star(out, case.table.to_star_blocks())
        back = tmfast.read_star(out)["particles"]
        np.testing.assert_array_equal(
            back["rlnCoordinateX"], case.table.positions_xyz[:, 0]
        )
    finally:
        out.unlink(missing_ok=True)
        out.parent.rmdir()


def test_in_memory_and_on_disk_paths_agree(case: Case, tmp_path: Path) -> None:
    """The same inputs as MRC files: run_match + extract_candidates (files) give the
    in-memory maps and table."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    tmfast.write_volume(inputs / "tomo.mrc", case.tomogram, VOXEL_A)
    tmfast.write_volume(inputs / "template.mrc", _template(), VOXEL_A)
    tmfast.write_volume(inputs / "mask.mrc", case.mask, VOXEL_A)
    dest = tmp_path / "out"
    job = tmfast.run_match(
        case.config.with_updates(
            destination=dest,
            tomogram=inputs / "tomo.mrc",
            template=inputs / "template.mrc",
            mask=inputs / "mask.mrc",
        )
    )
    assert sorted(p.name for p in dest.iterdir()) == [
        "tomo_angles.mrc",
        "tomo_job.json",
        "tomo_scores.mrc",
    ]
    scores, vs = tmfast.read_volume(dest / "tomo_scores.mrc")
    assert vs == pytest.approx(VOXEL_A)
    np.testing.assert_array_equal(scores, case.result.scores)
    table = tmfast.extract_candidates(dest / "tomo_job.json", n_particles=5)
    np.testing.assert_array_equal(table.positions_zyx, case.table.positions_zyx)
    np.testing.assert_array_equal(table.angle_indices, case.table.angle_indices)
    np.testing.assert_array_equal(table.scores, case.table.scores)
    assert job.stats == case.result.stats


def test_errors_are_tmfast_errors_and_write_nothing(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tmfast.ConfigError, match="low-pass"):
        case.config.with_updates(low_pass_a=-5.0)
    missing = case.config.with_updates(
        tomogram=tmp_path / "absent.mrc", template="t.mrc", mask="m.mrc"
    )
    with pytest.raises(tmfast.FormatError, match=r"absent\.mrc"):
        tmfast.match_template(missing)
    bad = case.tomogram.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(tmfast.FormatError, match=r"tomogram array.*NaN"):
        tmfast.match_template(
            case.config,
            tomogram=bad,
            template=_template(),
            mask=case.mask,
            voxel_size_a=VOXEL_A,
        )
    with pytest.raises(tmfast.ConfigError, match="template is required"):
        tmfast.match_template(case.config, tomogram=case.tomogram, mask=case.mask)
    with pytest.raises(tmfast.FormatError, match="search region"):
        tmfast.candidates_from_maps(
            case.result.job,
            case.result.scores[1:],
            case.result.angles[1:],
            n_particles=1,
        )
    with pytest.raises(tmfast.ConfigError):
        tmfast.angle_set(-3.0)
    assert issubclass(tmfast.FormatError, tmfast.TmfastError)
    assert issubclass(tmfast.ConfigError, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_all_names_resolve_and_are_documented() -> None:
    assert len(set(tmfast.__all__)) == len(tmfast.__all__)
    assert isinstance(tmfast.__version__, str) and tmfast.__version__
    listed = dir(tmfast)
    for name in tmfast.__all__:
        assert name in listed, name
        if name == "__version__":
            continue
        obj = getattr(tmfast, name)
        assert obj.__module__.startswith("tmfast."), (name, obj.__module__)
        doc = inspect.getdoc(obj)
        assert doc and len(doc.split()) >= 5, f"tmfast.{name} has no docstring"
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, name
            for p in sig.parameters.values():
                assert p.annotation is not inspect.Parameter.empty, (name, p.name)
    star: dict[str, object] = {}
    exec("from tmfast import *", star)  # checks __all__ end to end
    assert set(star) - {"__builtins__"} == set(tmfast.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        tmfast.no_such_name  # type: ignore[attr-defined] # noqa: B018
    for sub in (tmfast.io, tmfast.geometry):  # the subpackages' re-exports
        for name in sub.__all__:
            assert inspect.getdoc(getattr(sub, name)), f"{sub.__name__}.{name}"


def test_every_public_name_is_in_docs_api_md() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    names = [*tmfast.__all__, *tmfast.io.__all__, *tmfast.geometry.__all__]
    missing = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", text)]
    assert missing == [], f"docs/api.md does not document {missing}"


def test_import_is_light() -> None:
    code = (
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "import tmfast\n"
        "bare = [m for m in heavy if m in sys.modules]\n"
        "engine = 'tmfast.matching.engine' in sys.modules\n"
        "for name in tmfast.__all__: getattr(tmfast, name)\n"
        "import tmfast.io, tmfast.geometry\n"
        "used = [m for m in heavy if m in sys.modules]\n"
        "print(json.dumps([bare, engine, used]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    bare, engine, used = json.loads(out.stdout.strip().splitlines()[-1])
    assert bare == [], f"import tmfast loaded {bare}"
    assert engine is False, "import tmfast imported the matching engine eagerly"
    assert used == [], f"resolving the public API loaded {used}"


def test_example_runs_and_writes_only_when_asked(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(": found") == 2, run.stdout
    assert list(tmp_path.iterdir()) == []
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--star", "picks.star"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["picks.star"]
    starfile = pytest.importorskip("starfile")
    df = starfile.read(tmp_path / "picks.star")
    assert len(df) >= 2
    assert {
        "rlnCenteredCoordinateXAngst",
        "rlnAngleRot",
        "rlnLCCmax",
        "rlnTomoName",
    } <= set(df.columns)
