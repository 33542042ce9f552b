"""Build the refined rotation sets embedded in ``rust/data/refined_sets.bin``.

The lattice sets of ``rust/src/angles/optimal.rs`` come in coarse sizes, so at the
steps of pytom-match-pick's table where pytom's own set is already fairly thin
(covering density 2.4-2.7) no lattice size is 25% smaller and still as fine. For those
steps this tool builds, offline, a set of exactly ``floor(0.75 * N_pytom)`` rotations
whose covering radius is at most pytom's, by numerical minimax refinement:

1. A start: centroidal Voronoi relaxation (Lloyd, by sampling) of uniformly random unit
   quaternions. (A lattice start does not work: in a perfect lattice the pushes on
   each point from its equal holes cancel.)
2. The exact covering radius: on the unit-quaternion sphere with ``q ~ -q`` the holes
   of the set are the facets of the convex hull of ``{q} ∪ {-q}`` (a spherical
   Delaunay tessellation); a facet through ``q1..q4`` with plane ``n·x = 1`` is a hole
   of angular radius ``arccos(1 / |n|)`` on the sphere, a rotation angle of twice
   that.
3. Refinement: gradient ascent of a soft minimum of ``d_f = 1 / |n_f|`` over the
   facets (that is, descent of a soft maximum of the hole radii), with the soft-max
   sharpened in stages (annealing) and the hull rebuilt as the points move.

The refined sets reach covering densities of 1.78-1.79 at 1,215-6,750 rotations and
1.86-1.89 at 25,920-89,424 (the lattices: 1.93-2.1).

Known quirk, kept so that this file reproduces the embedded sets: between hull
rebuilds a point whose first component crosses zero is flipped to ``-q`` by
:func:`canonical`, so a stale facet may then name the wrong one of ``q``/``-q`` and
give one bogus, too-large step until the next rebuild. The result is still checked
exactly (below); a regeneration should normalise without flipping inside
:func:`refine_stage`. Likewise, when ``iters`` is not a multiple of the rebuild
interval the last few steps of a stage are not considered for its best set.

Every set is checked after rounding to float32 ZXZ angles: the exact radius must stay
below the target, the covering radius of pytom's set as
``tmfast._rust.optimal_angle_set`` estimates it (the value the library compares
against).

Usage (about 1 to 90 minutes per step on one core; needs scipy)::

    python tools/refine_covering.py 25 20 16 12 12.85 -o rust/data/refined_sets.bin
    python tools/refine_covering.py 8 --keep -o rust/data/refined_sets.bin
    python tools/refine_covering.py 6.69 --iters 270 --keep \
        -o rust/data/refined_sets.bin
    python tools/refine_covering.py 5.27 --iters 500 --rehull 12 --active 12 \
        --no-flip --stop-margin 0.003 --keep -o rust/data/refined_sets.bin

(Larger sets converge more slowly per stage, hence more steps.) At 5.27 degrees
(89,424 rotations) the default steps reached only density 2.36 and 2.20 after the
first two stages, 16 minutes each; with ``--no-flip`` (no bogus steps, see the quirk
above), 500 steps per stage made cheaper by ``--rehull 12 --active 12`` it reached
2.01 and 1.88 in 12 and 11 minutes, and stopped there (``--stop-margin``). New sets
should use ``--no-flip``.

File format (little-endian): ``b"TMFREF01"``, ``u32`` number of sets, then per set
``u32`` rotations, ``f64`` step (degrees) it was made for, ``f64`` exact covering
radius (degrees), and ``3 * N`` ``f32`` ZXZ angles in radians.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import ConvexHull, cKDTree

MAGIC = b"TMFREF01"


def canonical(q: np.ndarray) -> np.ndarray:
    """Unit quaternions with their first non-zero component positive."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    first = np.argmax(np.abs(q) > 1e-9, axis=1)
    sign = np.sign(q[np.arange(len(q)), first])
    return q * sign[:, None]


def zxz_to_quaternions(zxz: np.ndarray) -> np.ndarray:
    """tmfast's ZXZ -> quaternion (``rust/src/euler.rs``, ``zxz_to_quaternion``)."""
    phi, theta, psi = zxz[:, 0], zxz[:, 1], zxz[:, 2]
    st, ct = np.sin(0.5 * theta), np.cos(0.5 * theta)
    sp, cp = np.sin(0.5 * (phi + psi)), np.cos(0.5 * (phi + psi))
    sm, cm = np.sin(0.5 * (phi - psi)), np.cos(0.5 * (phi - psi))
    return canonical(np.stack([ct * cp, st * cm, -st * sm, ct * sp], axis=1))


def quaternions_to_zxz(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zxz_to_quaternions` (phi, psi in [0, 2 pi))."""
    w, x, y, z = q.T
    theta = 2.0 * np.arctan2(np.hypot(x, y), np.hypot(w, z))
    plus = np.arctan2(z, w)  # (phi + psi) / 2
    minus = np.arctan2(-y, x)  # (phi - psi) / 2
    phi = np.mod(plus + minus, 2 * np.pi)
    psi = np.mod(plus - minus, 2 * np.pi)
    return np.stack([phi, theta, psi], axis=1)


def hull_facets(q: np.ndarray) -> np.ndarray:
    """Facets (indices into ``[q; -q]``) of the hull: the holes of the set."""
    return ConvexHull(np.vstack([q, -q])).simplices


def facet_planes(q: np.ndarray, simplices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per facet: the vertex matrix ``Q`` and ``n`` with ``Q n = 1``."""
    points = np.vstack([q, -q])[simplices]
    normal = np.linalg.solve(points, np.ones((len(simplices), 4, 1)))[..., 0]
    return points, normal


def exact_radius_deg(q: np.ndarray) -> float:
    """Exact covering radius (rotation angle, degrees) of the unit quaternions ``q``."""
    _, normal = facet_planes(q, hull_facets(q))
    d = 1.0 / np.linalg.norm(normal, axis=1)
    return float(np.degrees(2.0 * np.arccos(np.clip(d.min(), -1.0, 1.0))))


def density(n: int, radius_deg: float) -> float:
    """Covering density ``N (R - sin R) / pi``."""
    r = math.radians(radius_deg)
    return n * (r - math.sin(r)) / math.pi


def _scatter_add(index: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``out[index[i]] += rows[i]``, as ``np.add.at`` but faster (``bincount``)."""
    return np.stack(
        [np.bincount(index, weights=rows[:, k], minlength=n) for k in range(4)], axis=1
    )


def lloyd(q: np.ndarray, rng: np.random.Generator, iters: int, per_point: int = 30):
    """Centroidal Voronoi relaxation by sampling (``q ~ -q``)."""
    n = len(q)
    for _ in range(iters):
        samples = canonical(rng.normal(size=(n * per_point, 4)))
        _, idx = cKDTree(np.vstack([q, -q])).query(samples)
        sign = np.where(idx < n, 1.0, -1.0)
        idx = idx % n
        acc = _scatter_add(idx, samples * sign[:, None], n)
        hit = np.bincount(idx, minlength=n) > 0
        q = q.copy()
        q[hit] = acc[hit]
        q = canonical(q)
    return q


def refine_stage(q, iters, sharpness, rate, rehull, active=None, flip=True):
    """Gradient ascent of a soft minimum of the facets' plane distances ``1 / |n|``.

    ``active`` (e.g. 12): between hull rebuilds, step only on the facets whose
    soft-max weight at the rebuild was above ``exp(-active)`` (a fraction of them
    once the soft-max is sharp; the large sets' steps cost less). ``flip=False``:
    keep each point's sign between rebuilds (see the module's known quirk).

    Returns the best set seen and its exact radius (degrees).
    """
    n = len(q)
    best_radius, best = math.inf, q
    simplices = hull_facets(q)
    for it in range(iters + 1):
        fresh = it % rehull == 0
        if fresh or it == iters:
            if not flip:
                q = canonical(q)
            simplices = hull_facets(q)
        points, normal = facet_planes(q, simplices)
        norm = np.linalg.norm(normal, axis=1)
        theta = np.arccos(np.clip(1.0 / norm, -1.0, 1.0))
        radius = float(np.degrees(2.0 * theta.max()))
        if fresh and radius < best_radius:
            best_radius, best = radius, q.copy()
        if it == iters:
            break
        if active is not None and fresh:
            keep = theta >= theta.max() * (1.0 - active / sharpness)
            simplices, points, normal = simplices[keep], points[keep], normal[keep]
            norm, theta = norm[keep], theta[keep]
        weight = np.exp(sharpness / theta.max() * (theta - theta.max()))
        weight /= weight.sum()
        # d(1/|n|)/d q_i = |n|^-3 w_i n with w = Q^-T n
        w = np.linalg.solve(np.transpose(points, (0, 2, 1)), normal[..., None])[..., 0]
        g = (w * (norm**-3)[:, None])[:, :, None] * normal[:, None, :]
        g *= weight[:, None, None]
        grad = _scatter_add(simplices.ravel(), g.reshape(-1, 4), 2 * n)
        step = grad[:n] - grad[n:]
        step -= (step * q).sum(1, keepdims=True) * q
        largest = np.linalg.norm(step, axis=1).max()
        q = q + rate * theta.max() / (largest + 1e-300) * step
        q = canonical(q) if flip else q / np.linalg.norm(q, axis=1, keepdims=True)
    return (best if flip else canonical(best)), best_radius


SCHEDULE = ((60, 0.005), (150, 0.003), (400, 0.002), (1000, 0.001), (2500, 0.0005))


def refine_for_step(
    step_deg: float,
    *,
    seed: int,
    log,
    iters: int = 150,
    stop_margin: float | None = None,
    active: float | None = None,
    rehull: int | None = None,
    flip: bool = True,
    lloyd_iters: int = 100,
) -> tuple[np.ndarray, float]:
    """Float32 ZXZ angles of the refined set for ``step_deg`` and its exact radius.

    With ``stop_margin`` the schedule ends after the first stage whose radius is at
    least that fraction below the target (the large sets need far less than the small
    ones: density 1.99 at 5.27 degrees).
    """
    from tmfast import _rust

    pytom = _rust.pytom_angle_set(step_deg, symmetry_n=1)
    _, _, target_rad = _rust.optimal_angle_set(step_deg, n_samples=200_000)
    target = math.degrees(target_rad)
    n = (3 * len(pytom)) // 4
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    q = lloyd(canonical(rng.normal(size=(n, 4))), rng, iters=lloyd_iters)
    # the hull of large sets costs seconds: rebuilt less often as the points move
    if rehull is None:
        rehull = 2 if n <= 12_000 else 4
    log(
        f"{step_deg} deg: {n} rotations, target {target:.4f} deg, start "
        f"{exact_radius_deg(q):.4f} deg ({time.monotonic() - t0:.0f} s)"
    )
    radius = math.inf
    for sharpness, rate in SCHEDULE:
        q, radius = refine_stage(q, iters, sharpness, rate, rehull, active, flip)
        log(
            f"  sharpness {sharpness}: {radius:.4f} deg, density "
            f"{density(n, radius):.3f} ({time.monotonic() - t0:.0f} s)"
        )
        if stop_margin is not None and radius <= target * (1.0 - stop_margin):
            break
    zxz = quaternions_to_zxz(q).astype(np.float32)
    radius = exact_radius_deg(zxz_to_quaternions(zxz.astype(np.float64)))
    if radius > target:
        raise SystemExit(
            f"{step_deg} deg: refined radius {radius:.4f} > target {target:.4f} deg"
        )
    return zxz, radius


def write_sets(path: Path, sets: list[tuple[float, np.ndarray, float]]) -> None:
    parts = [MAGIC, struct.pack("<I", len(sets))]
    for step, zxz, radius in sorted(sets, key=lambda s: len(s[1])):
        parts.append(struct.pack("<Idd", len(zxz), step, radius))
        parts.append(np.ascontiguousarray(zxz, dtype="<f4").tobytes())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(parts))
    tmp.replace(path)


def read_sets(path: Path) -> list[tuple[float, np.ndarray, float]]:
    """The sets of a file written by :func:`write_sets` as (step, ZXZ, radius)."""
    data = path.read_bytes()
    if data[:8] != MAGIC:
        raise SystemExit(f"{path}: not a refined-set file")
    (count,) = struct.unpack_from("<I", data, 8)
    offset, out = 12, []
    for _ in range(count):
        n, step, radius = struct.unpack_from("<Idd", data, offset)
        offset += 20
        zxz = np.frombuffer(data, "<f4", 3 * n, offset).reshape(n, 3)
        offset += 12 * n
        out.append((step, zxz, radius))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", type=float, nargs="+", help="angular steps (deg)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--iters", type=int, default=150, help="gradient steps per sharpness stage"
    )
    parser.add_argument(
        "--active",
        type=float,
        help="between hull rebuilds, step only on facets of soft-max weight above "
        "exp(-ACTIVE) (faster for large sets; e.g. 12)",
    )
    parser.add_argument(
        "--rehull",
        type=int,
        help="steps between hull rebuilds (default 2, or 4 above 12,000 rotations)",
    )
    parser.add_argument(
        "--no-flip",
        action="store_true",
        help="keep each point's sign between hull rebuilds (fixes the known quirk)",
    )
    parser.add_argument("--lloyd-iters", type=int, default=100)
    parser.add_argument(
        "--stop-margin",
        type=float,
        help="end once a stage is this fraction below the target (e.g. 0.02)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the output file's other steps"
    )
    args = parser.parse_args(argv)
    sets = {}
    if args.keep and args.output.exists():
        sets = {s: (s, z, r) for s, z, r in read_sets(args.output)}
    for step in args.steps:
        zxz, radius = refine_for_step(
            step,
            seed=args.seed,
            log=lambda m: print(m, flush=True),
            iters=args.iters,
            stop_margin=args.stop_margin,
            active=args.active,
            rehull=args.rehull,
            flip=not args.no_flip,
            lloyd_iters=args.lloyd_iters,
        )
        sets[step] = (step, zxz, radius)
        write_sets(args.output, list(sets.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
