"""``tmfast demo``: plant a built-in template in a synthetic tomogram, match, extract.

Everything is generated from seeds: an asymmetric template (four Gaussian lobes of
different sizes on unequal arms, so every rotation is distinguishable), a tomogram
of Gaussian noise with copies of the template planted at known positions and
rotations taken from the angle set, then a CPU match with a coarse angle set and
extraction. The demo passes when every planted particle is found within 2 voxels
with the right rotation (angular error reported in degrees).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tmfast._progress import ProgressCallback
from tmfast.errors import ConfigError
from tmfast.types import Volume

__all__ = ["DemoReport", "demo_mask", "demo_template", "run_demo"]

logger = logging.getLogger(__name__)


def demo_template(box_size: int = 20, *, voxel_size_a: float = 10.0) -> Volume:
    """Return the built-in asymmetric template (dense = positive values).

    Four Gaussian lobes about the box centre ``N // 2``: a core, and arms of lengths
    0.30, 0.22 and 0.15 box along +x, +y and -z/+x (all different), so the template
    has no rotational symmetry.
    """
    n = int(box_size)
    idx = np.indices((n, n, n), dtype=np.float64) - n // 2
    z, y, x = idx
    lobes = (
        ((0.0, 0.0, 0.0), 0.11, 1.0),
        ((0.0, 0.0, 0.30), 0.08, 0.9),
        ((0.0, 0.22, 0.0), 0.07, 0.8),
        ((-0.15, 0.0, 0.12), 0.06, 0.7),
    )
    out = np.zeros((n, n, n))
    for (cz, cy, cx), sigma, amp in lobes:
        s = sigma * n
        d2 = (z - cz * n) ** 2 + (y - cy * n) ** 2 + (x - cx * n) ** 2
        out += amp * np.exp(-d2 / (2 * s * s))
    return out.astype(np.float32)


def demo_mask(box_size: int = 20) -> Volume:
    """Sphere of radius ``0.45 * box`` about ``N // 2`` with a 1-voxel soft edge."""
    n = int(box_size)
    z, y, x = np.indices((n, n, n), dtype=np.float64) - n // 2
    r = np.sqrt(x * x + y * y + z * z)
    radius = 0.45 * n
    return np.clip(radius + 0.5 - r, 0.0, 1.0).astype(np.float32)


def _place(vol: np.ndarray, box: np.ndarray, pos_zyx: tuple[int, int, int]) -> None:
    n = box.shape[0]
    c = n // 2
    sl_v, sl_b = [], []
    for p, size in zip(pos_zyx, vol.shape, strict=True):
        a = p - c
        lo, hi = max(a, 0), min(a + n, size)
        sl_v.append(slice(lo, hi))
        sl_b.append(slice(lo - a, hi - a))
    vol[tuple(sl_v)] += box[tuple(sl_b)]


def synthesise_tomogram(
    shape_zyx: tuple[int, int, int],
    template: Volume,
    positions_zyx: npt.NDArray[np.int64],
    matrices: npt.NDArray[np.float64],
    *,
    noise_sigma: float,
    seed: int,
) -> Volume:
    """Return Gaussian noise plus rotated template copies centred on the positions."""
    from tmfast.geometry.interpolation import bspline_coefficients, rotate_volume

    rng = np.random.default_rng(seed)
    vol = rng.normal(0.0, noise_sigma, shape_zyx).astype(np.float32)
    coeffs = bspline_coefficients(template)
    for pos, m in zip(positions_zyx, matrices, strict=True):
        _place(vol, rotate_volume(coeffs, m), tuple(int(v) for v in pos))  # type: ignore[arg-type]
    return vol


def _positions(
    shape_zyx: tuple[int, int, int],
    n: int,
    count: int,
    box: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Random positions at least ``box`` apart and ``box // 2 + 1`` from the border."""
    margin = box // 2 + 1
    out: list[np.ndarray] = []
    for _ in range(10000):
        p = np.array([rng.integers(margin, s - margin) for s in shape_zyx])
        if all(np.linalg.norm(p - q) >= box for q in out):
            out.append(p)
            if len(out) == count:
                break
    return np.array(out, dtype=np.int64)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoReport:
    """Found-versus-truth table of a demo run."""

    truth_positions_zyx: npt.NDArray[np.int64]
    truth_angle_indices: npt.NDArray[np.int64]
    found_positions_zyx: npt.NDArray[np.int64]
    found_angle_indices: npt.NDArray[np.int64]
    found_scores: npt.NDArray[np.float32]
    #: For each truth particle: distance (voxels) to its nearest pick, inf if none.
    distance_vox: npt.NDArray[np.float64]
    #: For each truth particle: rotation angle (degrees) between truth and pick.
    angular_error_deg: npt.NDArray[np.float64]
    n_rotations: int
    cutoff: float
    seconds: float
    output_dir: Path | None
    #: A pick counts when its rotation is within this angle of the truth (degrees).
    angular_tolerance_deg: float = 0.0

    @property
    def recovered(self) -> npt.NDArray[np.bool_]:
        """Truth particles matched within 2 voxels and 1 angular step (see run_demo)."""
        return (self.distance_vox <= 2.0) & (
            self.angular_error_deg <= self.angular_tolerance_deg
        )

    @property
    def success(self) -> bool:
        """Whether every planted particle was recovered."""
        return bool(self.recovered.all())

    def table(self) -> str:
        """Human-readable found-vs-truth lines."""
        lines = [
            f"{'#':>2} {'truth (x, y, z)':>16} {'found (x, y, z)':>16} "
            f"{'dist':>5} {'ang.err':>8} {'score':>6}"
        ]
        for i, (t, d, a) in enumerate(
            zip(
                self.truth_positions_zyx,
                self.distance_vox,
                self.angular_error_deg,
                strict=True,
            )
        ):
            j = self._nearest(i)
            found = (
                "-"
                if j < 0
                else str(tuple(int(v) for v in self.found_positions_zyx[j][::-1]))
            )
            score = "" if j < 0 else f"{float(self.found_scores[j]):.3f}"
            lines.append(
                f"{i:>2} {tuple(int(v) for v in t[::-1])!s:>16} {found:>16} "
                f"{d:5.2f} {a:7.2f}° {score:>6}"
            )
        return "\n".join(lines)

    def _nearest(self, i: int) -> int:
        if len(self.found_positions_zyx) == 0:
            return -1
        d = np.linalg.norm(
            self.found_positions_zyx - self.truth_positions_zyx[i], axis=1
        )
        return int(d.argmin())


def _rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def run_demo(
    *,
    output_dir: str | Path | None = None,
    shape_zyx: tuple[int, int, int] = (64, 96, 96),
    n_particles: int = 8,
    box_size: int = 20,
    angular_step_deg: float = 38.53,
    noise_sigma: float = 0.6,
    seed: int = 2024,
    progress: ProgressCallback | None = None,
    backend: str = "cpu",
) -> DemoReport:
    """Synthesise, match (CPU), extract and compare with the truth.

    Parameters
    ----------
    output_dir
        Keep the tomogram, template, mask, maps, job and the particles STAR file
        (``demo_tomogram_particles.star``, RELION5 columns) here; by default a
        temporary folder that is removed.
    shape_zyx, n_particles, box_size, angular_step_deg, noise_sigma, seed
        Size of the synthetic problem (the default runs in well under a minute on
        two cores: 480 rotations).
    progress
        Matching progress callback.
    backend
        Compute backend name.

    Returns
    -------
    DemoReport
    """
    import time

    from tmfast.extraction.candidates import extract_candidates
    from tmfast.geometry.angles import angle_set
    from tmfast.geometry.rotations import zxz_to_matrices
    from tmfast.io.mrc import write_volume
    from tmfast.matching.config import MatchConfig
    from tmfast.matching.engine import run_match

    t0 = time.monotonic()
    voxel = 10.0
    rng = np.random.default_rng(seed)
    template = demo_template(box_size, voxel_size_a=voxel)
    mask = demo_mask(box_size)
    angles = angle_set(angular_step_deg)
    if not 1 <= n_particles <= len(angles):
        raise ConfigError(
            f"demo: {n_particles} particles: give 1 to {len(angles)} (one rotation "
            f"of the {angular_step_deg:g}-degree set each)"
        )
    truth_idx = rng.choice(len(angles), size=n_particles, replace=False).astype(
        np.int64
    )
    truth_pos = _positions(shape_zyx, box_size, n_particles, box_size, rng)
    if len(truth_pos) < n_particles:
        raise ConfigError(
            f"demo: {n_particles} particles do not fit a {shape_zyx[::-1]} (x, y, z) "
            f"volume {box_size} voxels apart; found room for {len(truth_pos)}: "
            "ask for fewer"
        )
    mats = zxz_to_matrices(angles[truth_idx])
    tomo = synthesise_tomogram(
        shape_zyx, template, truth_pos, mats, noise_sigma=noise_sigma, seed=seed + 1
    )
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if output_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tmfast-demo-")
        out = Path(tmp.name)
    else:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
    try:
        write_volume(out / "demo_tomogram.mrc", tomo, voxel, overwrite=True)
        write_volume(out / "demo_template.mrc", template, voxel, overwrite=True)
        write_volume(out / "demo_mask.mrc", mask, voxel, overwrite=True)
        config = MatchConfig(
            template=out / "demo_template.mrc",
            tomogram=out / "demo_tomogram.mrc",
            mask=out / "demo_mask.mrc",
            destination=out,
            angular_search=angular_step_deg,
            particle_diameter_a=box_size * voxel,
            tilt_angles=(-60.0, 60.0),
            low_pass_a=2.5 * voxel,
            backend=backend,
            rng_seed=seed,
            checkpoint_every=0,
            checkpoint_interval_s=0,
        )
        job = run_match(config, progress=progress, overwrite=True)
        table = extract_candidates(
            out / f"{config.tomo_id}_job.json",
            n_particles=3 * n_particles,
            particle_diameter_a=box_size * voxel,
        )
        from tmfast.io.star import write_star

        write_star(
            out / f"{config.tomo_id}_particles.star",
            table.to_star_blocks(relion5=True),
            overwrite=True,
        )
        found = np.asarray(table.positions_zyx, dtype=np.int64).reshape(-1, 3)
        found_idx = np.asarray(table.angle_indices, dtype=np.int64)
        dist = np.full(n_particles, np.inf)
        ang = np.full(n_particles, np.inf)
        for i, p in enumerate(truth_pos):
            if len(found) == 0:
                continue
            d = np.linalg.norm(found - p, axis=1)
            j = int(d.argmin())
            dist[i] = d[j]
            ang[i] = _rotation_angle_deg(
                mats[i], zxz_to_matrices(angles[found_idx[j]])[0]
            )
        report = DemoReport(
            truth_positions_zyx=truth_pos,
            truth_angle_indices=truth_idx,
            found_positions_zyx=found,
            found_angle_indices=found_idx,
            found_scores=np.asarray(table.scores, dtype=np.float32),
            distance_vox=dist,
            angular_error_deg=ang,
            n_rotations=job.n_rotations,
            cutoff=float(table.cutoff),
            seconds=time.monotonic() - t0,
            output_dir=None if tmp is not None else out,
            angular_tolerance_deg=float(angular_step_deg),
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
    return report
