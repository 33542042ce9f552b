"""A pipeline developer's journey through docs/api.md and the small CLI commands.

Each test checks a documented promise against an independent computation: the
signatures written in docs/api.md against ``inspect``, the dtypes it says
``write_volume`` keeps against mrcfile, rotation counts against the table of
pytom-match-pick's set in the shared reference notes, and covering radii against a
brute-force quaternion distance in numpy.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tmfast
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parents[1]
API_MD = REPO / "docs" / "api.md"
SHARED = REPO.parent / "shared"


def _run_main(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    from tmfast.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def _assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err, err


# --- docs/api.md signatures ------------------------------------------------------

_SIG = re.compile(r"`((?:[A-Za-z_]\w*\.)?[A-Za-z_]\w*)\(([^`]*)\)(?: -> [^`]*)?`")


def _documented_signatures() -> list[tuple[str, str]]:
    """``(name, parameter text)`` of each call opening a heading, row or bullet."""
    found = []
    for line in API_MD.read_text().splitlines():
        if line.startswith("### "):
            head = line[4:]
        elif line.startswith("| `"):
            head = line[2:].split(" | ")[0]  # the first cell only
        elif line.startswith("- `") or (line.startswith("`") and " -> " in line):
            head = line.removeprefix("- ")  # a bullet or paragraph defining a call
        else:
            continue
        m = _SIG.match(head)
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def _parse_params(text: str) -> list[tuple[str, object]]:
    """``a, *, b=None, ...`` -> ``[(name, default or inspect._empty)]``."""
    out: list[tuple[str, object]] = []
    for part in (p.strip() for p in text.split(",")):
        if part in ("", "*", "...") or part.startswith("**"):
            continue
        name, _, default = part.partition("=")
        out.append(
            (name.strip(), ast.literal_eval(default) if default else inspect._empty)
        )
    return out


def _resolve(name: str) -> object:
    import tmfast.geometry
    import tmfast.io

    if "." in name:  # Class.method
        cls, meth = name.split(".")
        return getattr(getattr(tmfast, cls), meth)
    for mod in (tmfast, tmfast.io, tmfast.geometry):
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AssertionError(f"docs/api.md documents {name}, which tmfast does not export")


def test_api_md_signatures_match_the_code() -> None:
    sigs = _documented_signatures()
    assert len(sigs) >= 28  # the headings, tables and bullets were found
    problems = []
    for name, text in sigs:
        obj = _resolve(name)
        params = inspect.signature(obj).parameters  # type: ignore[arg-type]
        for pname, default in _parse_params(text):
            if pname not in params:
                problems.append(f"{name}: no parameter {pname!r}")
            elif params[pname].default is not default and (
                params[pname].default != default
            ):
                problems.append(
                    f"{name}: {pname} defaults to {params[pname].default!r}, "
                    f"documented {default!r}"
                )
    assert not problems, problems


def test_write_volume_keeps_the_dtypes_api_md_says_it_keeps(tmp_path: Path) -> None:
    row = next(
        line for line in API_MD.read_text().splitlines() if "`write_volume(" in line
    )
    kept = re.search(r"; ([\w/]+) kept", row)
    assert kept, row
    names = kept.group(1).split("/")
    assert {"float32", "int16"} <= set(names)
    for name in names:
        path = tmp_path / f"{name}.mrc"
        tmfast.write_volume(path, np.ones((3, 4, 5), dtype=name), 2.0)
        with mrcfile.open(path) as mrc:
            assert mrc.data.dtype == np.dtype(name), (name, mrc.data.dtype)
    if "uint8" in row:  # documented as widened: check that too
        tmfast.write_volume(tmp_path / "u8.mrc", np.ones((3, 4, 5), np.uint8), 2.0)
        with mrcfile.open(tmp_path / "u8.mrc") as mrc:
            assert mrc.data.dtype == np.uint16


def test_match_template_takes_header_voxel_size_for_files(tmp_path: Path) -> None:
    """api.md: with every input a file, ``voxel_size_a=`` is ignored (headers win)."""
    rng = np.random.default_rng(3)
    tomo = rng.normal(size=(20, 20, 20)).astype(np.float32)
    tpl = rng.normal(size=(8, 8, 8)).astype(np.float32)
    mask = tmfast.sphere_mask(8, 3.0)
    for name, arr in (("t", tomo), ("p", tpl), ("m", mask)):
        tmfast.write_volume(tmp_path / f"{name}.mrc", arr, 12.0)
    config = tmfast.MatchConfig(
        tomogram=tmp_path / "t.mrc",
        template=tmp_path / "p.mrc",
        mask=tmp_path / "m.mrc",
        angular_search=90.0,
        particle_diameter_a=96.0,
        backend="cpu",
    )
    result = tmfast.match_template(config, voxel_size_a=30.0)
    assert result.job.voxel_size_a == pytest.approx(12.0)
    assert not (tmp_path / "t_scores.mrc").exists()  # nothing written


# --- docs/examples/embed_in_pipeline.py ------------------------------------------


def _example_main() -> object:
    import importlib.util

    path = REPO / "docs" / "examples" / "embed_in_pipeline.py"
    spec = importlib.util.spec_from_file_location("embed_in_pipeline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_example_finds_the_planted_particles_and_writes_star(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    starfile = pytest.importorskip("starfile")
    main = _example_main()
    star = tmp_path / "picks.star"
    assert main(["--star", str(star)]) == 0  # type: ignore[operator]
    out = capsys.readouterr().out
    assert out.count(": found") == 2 and "MISSED" not in out
    df = starfile.read(star)
    assert {"rlnCenteredCoordinateXAngst", "rlnLCCmax", "rlnTomoName"} <= set(df)
    assert (df["rlnTomoName"] == "synthetic").all()
    assert main(["--star", str(star), "--overwrite"]) == 0  # type: ignore[operator]


def test_example_refuses_an_existing_star_before_matching(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    star = tmp_path / "picks.star"
    star.write_text("keep me")
    assert _example_main()(["--star", str(star)]) == 2  # type: ignore[operator]
    out = capsys.readouterr()
    assert "output exists" in out.err and "picks above" not in out.out
    assert star.read_text() == "keep me"


# --- tmfast angles ---------------------------------------------------------------

# pytom-match-pick's rotation counts, from /work/shared/reference/pytom-match-pick.md
PYTOM_COUNTS = {30: (576, 288, 108), 50: (384, 192, 72)}


def _quaternion_covering_deg(angles_zxz: np.ndarray, n: int, seed: int) -> float:
    """Brute force: worst geodesic distance from ``n`` random rotations to the set."""
    q_set = Rotation.from_matrix(tmfast.zxz_to_matrices(angles_zxz)).as_quat()
    q_test = Rotation.random(n, random_state=seed).as_quat()
    best = np.abs(q_test @ q_set.T).max(axis=1)
    return float(np.degrees(2 * np.arccos(np.clip(best, -1.0, 1.0))).max())


@pytest.mark.parametrize("step", sorted(PYTOM_COUNTS))
def test_cli_angles_counts_radius_and_written_list(
    step: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full, c2, c6 = PYTOM_COUNTS[step]
    out = tmp_path / "set.txt"
    code, stdout, err = _run_main(
        ["angles", "-a", str(step), "--n-samples", "5000", "-o", str(out)], capsys
    )
    assert code == 0, err
    assert f"rotations: {full}\n" in stdout
    written = np.loadtxt(out)
    assert written.shape == (full, 3)
    np.testing.assert_array_equal(written, tmfast.pytom_angle_set(step))
    radius = float(re.search(r"covering radius: ([\d.]+) deg", stdout).group(1))  # type: ignore[union-attr]
    brute = _quaternion_covering_deg(written, 20_000, seed=5)
    # both are attained distances (lower bounds); tmfast refines its worst samples
    assert abs(radius - brute) < 3.0, (radius, brute)
    for sym, n in (("C2", c2), ("6", c6)):
        code, stdout, err = _run_main(
            ["angles", "-a", str(step), "-s", sym, "--n-samples", "1000"], capsys
        )
        assert code == 0, err
        assert f"rotations: {n}\n" in stdout
    # the written list reads back as the same set
    code, stdout, _ = _run_main(
        ["angles", "-a", str(out), "--n-samples", "1000"], capsys
    )
    assert code == 0 and f"rotations: {full}\n" in stdout


def test_cli_angles_n_samples_checked_before_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, stdout, err = _run_main(["angles", "-a", "30", "--n-samples", "10"], capsys)
    _assert_one_line_error(code, err, "--n-samples 10")
    assert "rotations:" not in stdout  # refused before building the set


@pytest.mark.parametrize(
    "extra", [["--voxel-size-angstrom", "10"], ["--low-pass", "40"]]
)
def test_cli_angles_refuses_step_options_it_would_ignore(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, err = _run_main(["angles", "-a", "30", *extra], capsys)
    _assert_one_line_error(code, err, extra[0])
    assert "rotations:" not in stdout


def test_cli_angles_diameter_without_voxel_size_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _run_main(["angles", "--particle-diameter", "300"], capsys)
    _assert_one_line_error(code, err, "needs the voxel size")
    assert "no angular sampling" not in err


# --- tmfast demo and info --------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["--n-particles", "0"], ["--n-particles", "-2"], ["--seed", "-1"]]
)
def test_cli_demo_refuses_bad_counts_and_seeds(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run_main(["demo", *args], capsys)
    _assert_one_line_error(code, err, " ".join(args))


@pytest.mark.parametrize("n", ["60", "500"])
def test_cli_demo_too_many_particles_is_one_line(
    n: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """More particles than fit the volume (60) or than the angle set has rotations
    (500) were a RuntimeError / numpy ValueError traceback."""
    code, _, err = _run_main(["demo", "--n-particles", n], capsys)
    _assert_one_line_error(code, err, f"{n} particles")


def test_cli_info_shows_the_fftw_wisdom_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """api.md: the CPU backend's environment is what ``tmfast info`` shows."""
    pytest.importorskip("pyfftw", reason="the wisdom file belongs to pyFFTW")
    from tmfast.cli.info import collect_info

    wisdom = tmp_path / "w.json"
    monkeypatch.setenv("TMFAST_FFTW_WISDOM", str(wisdom))
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    info = collect_info()
    assert info["fftw_wisdom"] == str(wisdom)
    assert info["omp_wait_policy"] == "ACTIVE"
    code, stdout, _ = _run_main(["info"], capsys)
    assert code == 0 and str(wisdom) in stdout
    monkeypatch.setenv("TMFAST_FFTW_WISDOM", "off")
    assert collect_info()["fftw_wisdom"] == "off"


@pytest.mark.parametrize("batch", [0, -1, 2.5])
def test_match_template_refuses_a_batch_of_no_rotations(batch: object) -> None:
    """``batch_rotations=0`` (or less) looped for ever at 100% CPU without scoring
    a rotation; it is a ConfigError before any work."""
    from tmfast.errors import ConfigError

    rng = np.random.default_rng(4)
    config = tmfast.MatchConfig(angular_search=90.0, backend="cpu")
    with pytest.raises(ConfigError, match="batch_rotations"):
        tmfast.match_template(
            config,
            tomogram=rng.normal(size=(12, 12, 12)).astype(np.float32),
            template=rng.normal(size=(6, 6, 6)).astype(np.float32),
            mask=tmfast.sphere_mask(6, 2.5),
            voxel_size_a=10.0,
            batch_rotations=batch,  # type: ignore[arg-type]
        )


def test_usable_cpus_follow_the_affinity_mask() -> None:
    """FFT threads follow the CPUs this process may use (a SLURM task's cores),
    not the node's count."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs Linux and at least two usable CPUs")
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from tmfast.backends.cpu import CpuBackend; print(CpuBackend().workers)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_metadata_mapping_takes_missing_ctf_constants_from_the_options() -> None:
    """api.md: CTF constants missing from a metadata mapping (a TOML
    [match.metadata] table) come from voltage_kv and the others; this was refused."""
    md = {"tilt_angles_deg": [-30.0, 0.0, 30.0], "defocus_um": [3.0, 3.1, 3.2]}
    config = tmfast.MatchConfig(
        particle_diameter_a=20.0,
        metadata={**md, "voltage_kv": 200.0},
        voltage_kv=300.0,  # the mapping's own value wins
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    assert config.metadata is not None
    assert config.metadata.voltage_kv == 200.0
    assert config.metadata.spherical_aberration_mm == 2.7
    assert config.metadata.amplitude_contrast == 0.07
    from tmfast.errors import ConfigError

    with pytest.raises(ConfigError, match="a CTF needs"):
        tmfast.MatchConfig(particle_diameter_a=20.0, metadata=md)
