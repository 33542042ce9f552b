"""Use tmfast from your own Python program: match in memory, get a table of particles.

Everything here goes through ``import tmfast`` (see docs/api.md). The script

1. synthesises a small tomogram with two copies of an asymmetric template planted at
   known positions and rotations taken from the angle set (in a pipeline, the
   tomogram, template and mask are arrays you already hold, or MRC files named in
   the config);
2. matches the arrays on the CPU with :func:`tmfast.match_template`, which returns
   the score and angle maps as arrays and writes nothing;
3. picks particles from that result with :func:`tmfast.extract_candidates`, which
   returns a :class:`tmfast.CandidateTable` (positions, scores, ZXZ and RELION
   angles as numpy arrays);
4. writes a RELION5 particle STAR file only when ``--star PATH`` is given.

Run it from anywhere (it leaves no file behind unless ``--star`` is given)::

    python docs/examples/embed_in_pipeline.py
    python docs/examples/embed_in_pipeline.py --star particles.star

It prints the picks and exits with status 1 if a planted particle was not found,
2 (before any work) if the ``--star`` file exists and ``--overwrite`` is not given.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tmfast

VOXEL_SIZE_A = 10.0
BOX = 16
SHAPE_ZYX = (40, 48, 48)
ANGULAR_STEP_DEG = 60.0  # 72 rotations: coarse, so the example runs in seconds


def asymmetric_template(box: int) -> npt.NDArray[np.float32]:
    """Four Gaussian blobs on unequal arms: no two rotations look alike."""
    z, y, x = np.indices((box, box, box), dtype=np.float64) - box // 2
    blobs = (
        (0, 0, 0, 2.0, 1.0),
        (0, 0, 5, 1.5, 0.9),
        (0, 4, 0, 1.3, 0.8),
        (-3, 0, 2, 1.1, 0.7),
    )  # (z, y, x, sigma, amplitude)
    out = np.zeros((box, box, box))
    for bz, by, bx, sigma, amp in blobs:
        out += amp * np.exp(
            -((z - bz) ** 2 + (y - by) ** 2 + (x - bx) ** 2) / (2 * sigma**2)
        )
    return out.astype(np.float32)


@dataclass(frozen=True)
class Synthetic:
    """A synthetic tomogram, its template and mask, and the planted truth."""

    tomogram: npt.NDArray[np.float32]
    template: npt.NDArray[np.float32]
    mask: npt.NDArray[np.float32]
    truth_pos_zyx: npt.NDArray[np.int64]
    truth_idx: npt.NDArray[np.int64]


def synthesise(seed: int) -> Synthetic:
    """Make a tomogram with two planted particles (arrays only, no files)."""
    from tmfast.geometry import bspline_coefficients, rotate_volume

    rng = np.random.default_rng(seed)
    template = asymmetric_template(BOX)
    angles = tmfast.angle_set(ANGULAR_STEP_DEG)  # (N, 3) ZXZ radians
    truth_idx = rng.choice(len(angles), size=2, replace=False).astype(np.int64)
    truth_pos = np.array([[14, 16, 15], [25, 32, 33]], dtype=np.int64)  # (z, y, x)
    tomo = rng.normal(0.0, 0.4, SHAPE_ZYX).astype(np.float32)
    coeffs = bspline_coefficients(template)
    c = BOX // 2
    for (pz, py, px), m in zip(
        truth_pos, tmfast.zxz_to_matrices(angles[truth_idx]), strict=True
    ):
        tomo[pz - c : pz - c + BOX, py - c : py - c + BOX, px - c : px - c + BOX] += (
            rotate_volume(coeffs, m)
        )
    mask = tmfast.sphere_mask(BOX, 7.0, sigma_px=1.0)
    return Synthetic(tomo, template, mask, truth_pos, truth_idx)


def find_particles(data: Synthetic, n_max: int) -> tmfast.CandidateTable:
    """Match the arrays in memory and pick particles from the result."""
    config = tmfast.MatchConfig(
        tomo_id="synthetic",  # names the picks (rlnTomoName)
        angular_search=ANGULAR_STEP_DEG,
        particle_diameter_a=BOX * VOXEL_SIZE_A,
        tilt_angles=(-60.0, 60.0),  # binary missing wedge, degrees
        backend="cpu",
    )
    result = tmfast.match_template(  # writes nothing
        config,
        tomogram=data.tomogram,
        template=data.template,
        mask=data.mask,
        voxel_size_a=VOXEL_SIZE_A,
    )
    logging.info(
        "score map %s, %d rotations, background sigma %.4f",
        result.scores.shape,
        len(result.angle_set),
        result.stats.std,
    )
    return tmfast.extract_candidates(result, n_particles=n_max)


def main(argv: list[str] | None = None) -> int:
    """Run the example; return 0 when both planted particles are found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--star", type=Path, help="write the picks to this STAR file")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --star file"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.star is not None and args.star.exists() and not args.overwrite:
        # check outputs before any work, as tmfast's own writers would only refuse
        # after the search
        print(f"{args.star}: output exists; pass --overwrite", file=sys.stderr)
        return 2

    data = synthesise(args.seed)
    table = find_particles(data, n_max=10)
    truth_pos, truth_idx = data.truth_pos_zyx, data.truth_idx

    print(f"{len(table)} picks above the cutoff {table.cutoff:.4f}")
    print(" x   y   z   score   RELION rot tilt psi (deg)")
    for (x, y, z), s, (rot, tilt, psi) in zip(
        table.positions_xyz, table.scores, table.relion_angles_deg, strict=True
    ):
        print(f"{x:2d} {y:3d} {z:3d}  {s:6.3f}  {rot:7.1f} {tilt:6.1f} {psi:6.1f}")

    ok = True
    for pos, idx in zip(truth_pos, truth_idx, strict=True):
        d = (
            np.linalg.norm(table.positions_zyx - pos, axis=1)
            if len(table)
            else [np.inf]
        )
        j = int(np.argmin(d))
        found = d[j] <= 1.0 and table.angle_indices[j] == idx
        print(
            f"planted at (x, y, z) {tuple(int(v) for v in pos[::-1])}, rotation "
            f"{idx}: {'found' if found else 'MISSED'}"
        )
        ok &= bool(found)

    if args.star is not None:
        tmfast.write_star(
            args.star, table.to_star_blocks(relion5=True), overwrite=args.overwrite
        )
        print(f"wrote {args.star}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
