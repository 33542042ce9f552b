"""A throw-away single-node SLURM cluster for tests (tools/slurm/start_cluster.sh).

``slurm_cluster`` is a pytest fixture: it starts munged, slurmctld and slurmd with
their own key, socket, ports and state folder in a temporary directory, sets
``SLURM_CONF`` for the test, yields a :class:`Cluster`, and stops the three daemons
by their PID files afterwards. Where SLURM or munge is not installed or the daemons
do not come up (no root, sandbox limits), the test is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
START = REPO / "tools" / "slurm" / "start_cluster.sh"
STOP = REPO / "tools" / "slurm" / "stop_cluster.sh"


@dataclasses.dataclass
class Cluster:
    """A running test cluster."""

    dir: Path
    conf: Path

    def pids(self) -> list[int]:
        """PIDs of munged, slurmctld and slurmd."""
        out = []
        for f in ("run/slurmd.pid", "run/slurmctld.pid", "munge/munged.pid"):
            p = self.dir / f
            if p.is_file():
                out.append(int(p.read_text().split()[0]))
        return out

    def wait_for_jobs(self, job_ids: list[int], timeout_s: float = 90.0) -> None:
        """Poll squeue until none of ``job_ids`` is queued or running."""
        deadline = time.monotonic() + timeout_s
        ids = ",".join(str(j) for j in job_ids)
        while time.monotonic() < deadline:
            proc = subprocess.run(
                ["squeue", "-h", "-j", ids], capture_output=True, text=True, check=False
            )
            if proc.returncode == 0 and not proc.stdout.strip():
                return
            if proc.returncode != 0 and "Invalid job id" in proc.stderr:
                return
            time.sleep(0.3)
        raise TimeoutError(
            f"jobs {ids} still queued after {timeout_s} s; see {self.dir}/log"
        )

    def task_state(self, job_id: int, index: int) -> str:
        """State of one array task from ``scontrol show job`` (e.g. COMPLETED)."""
        proc = subprocess.run(
            ["scontrol", "-o", "show", "job", f"{job_id}_{index}"],
            capture_output=True,
            text=True,
            check=False,
        )
        for field in proc.stdout.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 60000:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    return 16917


def start_cluster(directory: Path) -> Cluster:
    """Start a cluster in ``directory``; ``pytest.skip`` when that is impossible."""
    missing = [
        e
        for e in ("munged", "slurmctld", "slurmd", "sbatch", "squeue")
        if shutil.which(e) is None
    ]
    if missing:
        pytest.skip(
            f"SLURM test cluster needs {', '.join(missing)} "
            "(apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        pytest.skip("SLURM test cluster needs root (slurmd runs jobs as their user)")
    port = _free_port_pair()
    proc = subprocess.run(
        ["bash", str(START), str(directory), str(port)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    cluster = Cluster(dir=directory, conf=directory / "slurm.conf")
    if proc.returncode != 0:
        stop_cluster(cluster)
        pytest.skip(
            "SLURM test cluster did not start: "
            + " ".join((proc.stderr or proc.stdout).split())[-300:]
        )
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    """Stop the daemons by PID file."""
    subprocess.run(
        ["bash", str(STOP), str(cluster.dir)],
        capture_output=True,
        check=False,
        timeout=60,
    )


@pytest.fixture(name="slurm_cluster")
def slurm_cluster_fixture(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    """A running single-node cluster; ``SLURM_CONF`` points at it during the test."""
    # A short path: the munge socket path must fit in a Unix socket name.
    directory = tmp_path_factory.mktemp("slurm")
    cluster = start_cluster(directory)
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    try:
        yield cluster
    finally:
        pids = cluster.pids()
        stop_cluster(cluster)
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            raise AssertionError(f"SLURM daemon {pid} survived stop_cluster")


# --------------------------------------------------------------------------------
# A tiny RELION5 project with planted particles, shaped like the real fixture

SHARED = REPO.parent / "shared"
REAL_JOB = SHARED / "data" / "formats" / "relion5_tomograms" / "pytom_job009"

#: Planted particle centres (z, y, x) in every synthetic tomogram.
PLANTED_ZYX = ((12, 14, 30), (30, 30, 16), (24, 36, 36))
TOMO_SHAPE = 48
TEMPLATE_BOX = 9
VOXEL_A = 10.0
TS_PIXEL_A = 2.5
BINNING = 4.0


def synthetic_template() -> tuple[np.ndarray, np.ndarray]:
    """A 9³ asymmetric blob template and a spherical mask, float32 (z, y, x)."""
    n = TEMPLATE_BOX
    z, y, x = np.mgrid[:n, :n, :n] - n // 2
    tmpl = np.exp(-((x / 2.0) ** 2 + (y / 1.2) ** 2 + z.astype(float) ** 2))
    tmpl = tmpl + 0.5 * np.exp(-(x**2 + y**2) / 2.0) * (z == 2)
    mask = (x**2 + y**2 + z**2 <= (n // 2) ** 2).astype(np.float32)
    return tmpl.astype(np.float32), mask


def _tilt_series_rows(rng: np.random.Generator) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of a per-tilt-series STAR: the real fixture's, shuffled."""
    real = REAL_JOB / "tilt_series" / "tomo200528_107.star"
    if real.is_file():
        from tmfast.io.star import read_star

        block = next(iter(read_star(real, as_text=True).values()))
        rows = [list(r) for r in zip(*block.values(), strict=True)]
        rng.shuffle(rows)  # row order must not matter
        return list(block), rows
    cols = [
        "rlnTomoNominalStageTiltAngle",
        "rlnMicrographPreExposure",
        "rlnDefocusU",
        "rlnDefocusV",
    ]
    tilts = np.arange(-60, 61, 3.0)
    order = np.argsort(np.abs(tilts), kind="stable")
    rows = [
        [f"{tilts[i]:.2f}", f"{3.0 * r:.1f}", "24000", "23000"]
        for r, i in enumerate(order)
    ]
    return cols, rows


def make_relion5_project(
    root: Path,
    names: tuple[str, ...] = ("TS_01", "TS_02", "TS_03"),
    noise: float = 0.15,
    seed: int = 0,
) -> dict[str, Path]:
    """Write a RELION5 project (Tomograms/job010) with planted particles.

    Returns the paths ``tomograms_star``, ``template``, ``mask``.
    """
    import mrcfile

    rng = np.random.default_rng(seed)
    tmpl, mask = synthetic_template()
    root.mkdir(parents=True, exist_ok=True)
    mrcfile.write(root / "template.mrc", tmpl, voxel_size=VOXEL_A, overwrite=True)
    mrcfile.write(root / "mask.mrc", mask, voxel_size=VOXEL_A, overwrite=True)
    job = root / "Tomograms" / "job010"
    (job / "tomograms").mkdir(parents=True, exist_ok=True)
    (job / "tilt_series").mkdir(parents=True, exist_ok=True)
    h = TEMPLATE_BOX // 2
    global_cols = [
        "rlnTomoName",
        "rlnVoltage",
        "rlnSphericalAberration",
        "rlnAmplitudeContrast",
        "rlnMicrographOriginalPixelSize",
        "rlnTomoHand",
        "rlnTomoTiltSeriesPixelSize",
        "rlnTomoTiltSeriesStarFile",
        "rlnTomoTomogramBinning",
        "rlnTomoSizeX",
        "rlnTomoSizeY",
        "rlnTomoSizeZ",
        "rlnTomoReconstructedTomogram",
    ]
    size = str(int(TOMO_SHAPE * BINNING))
    rows = []
    for name in names:
        vol = rng.normal(0.0, noise, (TOMO_SHAPE,) * 3).astype(np.float32)
        for zz, yy, xx in PLANTED_ZYX:
            vol[zz - h : zz + h + 1, yy - h : yy + h + 1, xx - h : xx + h + 1] += tmpl
        mrcfile.write(
            job / "tomograms" / f"rec_{name}.mrc",
            vol,
            voxel_size=VOXEL_A,
            overwrite=True,
        )
        cols, ts_rows = _tilt_series_rows(rng)
        text = ["", "# version 50001", "", f"data_{name}", "", "loop_"]
        text += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
        text += [" ".join(r) for r in ts_rows]
        (job / "tilt_series" / f"{name}.star").write_text("\n".join(text) + "\n")
        rows.append(
            [
                name,
                "300.0",
                "2.7",
                "0.07",
                str(TS_PIXEL_A),
                "-1.0",
                str(TS_PIXEL_A),
                f"Tomograms/job010/tilt_series/{name}.star",
                str(BINNING),
                size,
                size,
                size,
                f"Tomograms/job010/tomograms/rec_{name}.mrc",
            ]
        )
    text = ["", "# version 50001", "", "data_global", "", "loop_"]
    text += [f"_{c} #{i + 1}" for i, c in enumerate(global_cols)]
    text += [" ".join(r) for r in rows]
    (job / "tomograms.star").write_text("\n".join(text) + "\n")
    return {
        "tomograms_star": job / "tomograms.star",
        "template": root / "template.mrc",
        "mask": root / "mask.mrc",
    }
