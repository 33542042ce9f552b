//! A covering-efficient rotation set, opt-in alternative to the pytom set.
//!
//! Three constructions ([`Family`]) and the embedded refined sets
//! ([`super::refined`]); for a target covering radius [`optimal_for_radius`] builds
//! each construction at its smallest size that fits and keeps the candidate with the
//! fewest rotations, which softens the coarse size steps of each family.
//!
//! [`cube_bcc_set`]: the unit quaternions (mod sign) split into 4 cells by their largest
//! component `c`; in each, `q ~ e_c + sum_k t_k e_k` with `t_k = tan(k u_k) / tan(k)` over
//! `u in [-1, 1]^3` (`k` = [`WARP`]). A body-centred cubic lattice with `n` cells per axis
//! (points at `-1 + (2/n) i` and at the cell centres) fills each cell; its planes fall on
//! the cell faces, where neighbouring cells' points coincide and are merged. A BCC lattice
//! is the best lattice covering of 3D space, and its {100} cell faces are mirror planes
//! of the lattice, so the cells join without a seam.
//!
//! [`octa_bcc_set`]: the 12 octahedral cells (mod sign) of the 24-cell, centred at the
//! `(±1, ±1, 0, 0) / sqrt 2` permutations, with vertices at the 24 Hurwitz units. In the
//! gnomonic chart of a cell the cell is the octahedron `|x|_1 <= 1`; a BCC lattice
//! `(Z^3 ∪ (Z + 1/2)^3) / m` puts only integer points on the faces, and both cells of a
//! face send face point `(i, j, k) / m` to the sphere point `∝ i V1 + j V2 + k V3` of the
//! face's vertices, so face points coincide exactly and are merged (a test checks the
//! count). Warp: `|u|_1` through `tan` ([`OCTA_WARP_RADIAL`]) and the barycentric
//! direction pushed towards the face centres ([`OCTA_WARP_FACE`]).
//!
//! [`cell600_set`]: one set, the 60 vertices and 300 cell centres of the 600-cell (mod
//! sign), 360 rotations of covering radius 27.78 degrees (Karney's `c600vc`), which
//! serves 30 degrees. (Its vertices plus edge midpoints, 420, reach 26.57; the
//! 600-cell's tetrahedra filled with the barycentric grid of size `m`, an FCC lattice,
//! have density 2.14-2.23, never better than the two lattices above.)
//!
//! Covering density `N (R - sin R) / pi` (how many times, on average, the balls of
//! radius `R` around the rotations cover SO(3); at least 1), estimated with 30 test
//! rotations per rotation: cube cells 1.93-1.95 for `n` = 3..9, rising to 2.0-2.1 for
//! `n` = 11..21 (the warp [`WARP`] was tuned for it; the tan warp `k = pi/4` gives 2.25,
//! the plain gnomonic map 3.4); octahedral cells 2.04-2.08 for every `m` (unwarped
//! 2.2-2.3), better than the cube cells below about 7 degrees. The pytom set is at
//! about 3.5 where its psi step sets the radius and 2.4-2.7 elsewhere.
//!
//! [`optimal_angle_set`] sizes the sets to the covering radius of the pytom set for a
//! step; a set is accepted only when a second, larger estimate
//! ([`verification_samples`], other seed) also stays within the target. Measured
//! against independent 1,000,000-sample estimates of both radii (rotations saved):
//! 40.3% at 7.64, 39.8% at 15, 37.5% at 30, 36.9% at 7, 35.2% at 3, 35.1% at 6, 31.5%
//! at 5, 31.2% at 10, 30.1% at 13, 27.8% at 18, 25.0% at 11; but only 18.3% at 5.27,
//! 11.0% at 6.69, 10.7% at 12, 10.3% at 16, 9.9% at 20, 7.6% at 8 and 12.85, and none
//! at 25 degrees. Where pytom's density is 2.4-2.7 (those eight steps) 25% fewer
//! rotations needs an effective density of 1.81-1.99 *after* the size step, below
//! both lattices' 1.93-2.08. For those steps the library embeds refined sets
//! ([`super::refined`]): `floor(0.75 N_pytom)` rotations optimised offline to density
//! 1.78-1.89, with an exact covering radius within pytom's; [`optimal_for_radius`]
//! takes one whenever it is the smallest candidate that reaches the target, so every
//! step of the table saves at least 25%.
//!
//! Tried and dropped (densities as above):
//! * BCC across the octahedral {111} faces forms a twin boundary: the flat BCC
//!   covering radius 0.559 (unit cube) rises to 0.633 next to a mirrored {111} plane,
//!   which is why the octahedral cells stay near 2.05 whatever the warp; the
//!   `|u|_1`-radial `tan` warp alone gives 2.11-2.2.
//! * Cube cells: non-separable warps (`k_i` depending on the other coordinates, a cubic
//!   correction): tuned at `n = 6` to 1.93 (plain: 1.99 with the same 300,000 samples),
//!   but 2.06-2.12 at `n` = 10 and 14, worse than the plain warp; `WARP` 0.82 or 0.90
//!   instead of 0.86: 2.12-2.37.
//! * The same lattice in the 24 truncated-cube cells of the octahedral group: erratic
//!   densities 1.95-4.5 from the unmatched faces (their square face grids meet rotated
//!   by 45 degrees); per-component cell counts `(n, n, n+1, n+1)`, whose radius follows
//!   the coarser cells; greedy thinning of a finer lattice and patching the holes of a
//!   coarser one.
//! * Refinement of *lattice* points: Lloyd-type minimax (each point to the centre of
//!   its Voronoi vertices, exact from the convex hull of `±q`) leaves the radius as
//!   is (1.93 -> 1.96 at 1,020 rotations); a soft-max gradient step on the exact hole
//!   radii reaches 1.82 there, but only at the lattice's own size: grown to 1,215
//!   rotations by points at its deepest holes and then refined, it ends at 1.95 (in a
//!   near-perfect lattice the pushes of a point's equal holes cancel). The same
//!   gradient steps from a Lloyd-relaxed *random* start, sharpened in stages, are
//!   what built the refined sets (stop 15, [`super::refined`]); k-centre steps
//!   towards the farthest of random test rotations overfit fixed samples (1.93 ->
//!   2.27 on independent ones) and drift with fresh ones (2.05-2.10).
//! * A BCC lattice along the Hopf fibration (stop 14): BCC is a triangular lattice of
//!   columns with ABC-staggered points, so icosahedral geodesic grids on the sphere
//!   of z axes (frequency 2-8) carried columns of `m` psi steps, each column's psi
//!   offset set by minimising the frustrated XY energy `sum cos(2 pi (o_q - o_p -
//!   twist_pq) / h)` over grid edges (`twist_pq`: the Hopf connection between the
//!   columns' frames; its 120-degree ground state is the ABC stagger): densities
//!   1.82-2.01 at 336-1,656 rotations (frequency 2-3; 25 degrees needs 1.84 at 1,215)
//!   and 2.02-2.08 at 2,916-28,248 (frequency 4-8). The bundle's
//!   curvature (4 pi in all) forces about `2 m` phase vortices whatever the offsets
//!   (energy -0.42 to -0.46 against -0.5 for a perfect stagger), each a hole.

use super::covering::{canonical, covering_radius, normalize, Quat};
use super::refined::{refined_for_radius, refined_sets};
use super::{pytom_angle_set, sort_zxz, Zxz};
use crate::euler::{quaternion_to_zxz, zxz_to_quaternion};
use crate::Result;

/// The warp parameter of [`cube_bcc_set`] (tuned for the smallest covering density).
pub const WARP: f64 = 0.86;

/// Covering radius of [`cube_bcc_set`] times `n`, in degrees, slightly below the
/// estimates (94.4 at n = 5, 94.9 at n = 8, 95.5 at n = 11): the first size tried.
pub const CUBE_BCC_RADIUS_TIMES_N_DEG: f64 = 94.0;

/// The cube-cell BCC rotation set with `n >= 1` lattice cells per axis (module docs).
/// `4 (n^3 + (n+1)^3)` lattice points before merging the shared faces.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn cube_bcc_set(n: u32) -> Vec<Quat> {
    let n = n.max(1);
    let a = 2.0 / f64::from(n);
    let tk = WARP.tan();
    let warp = |u: f64| (WARP * u).tan() / tk;
    let cube: Vec<f64> = (0..n)
        .map(|i| warp(-1.0 + a * (f64::from(i) + 0.5)))
        .collect();
    let centre: Vec<f64> = (0..=n)
        .map(|i| warp((-1.0 + a * f64::from(i)).clamp(-1.0, 1.0)))
        .collect();
    let mut out: Vec<Quat> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in 0..4 {
        for axis in [&cube, &centre] {
            for &x in axis.iter() {
                for &y in axis.iter() {
                    for &z in axis.iter() {
                        let mut q = [0.0; 4];
                        q[c] = 1.0;
                        let mut k = 0;
                        for v in [x, y, z] {
                            if k == c {
                                k += 1;
                            }
                            q[k] = v;
                            k += 1;
                        }
                        let q = canonical(normalize(q));
                        #[allow(clippy::cast_possible_truncation)]
                        let key = q.map(|v| (v * 1e9).round() as i64);
                        if seen.insert(key) {
                            out.push(q);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Radial warp of [`octa_bcc_set`] (tuned for the smallest covering density).
pub const OCTA_WARP_RADIAL: f64 = 0.35;

/// In-face warp of [`octa_bcc_set`] (tuned with [`OCTA_WARP_RADIAL`]).
pub const OCTA_WARP_FACE: f64 = 0.25;

/// Covering radius of [`octa_bcc_set`] times `m`, in degrees, slightly below the
/// estimates (61.1-61.5 for m = 4..12): the first size tried.
pub const OCTA_BCC_RADIUS_TIMES_M_DEG: f64 = 60.5;

/// The warp of one chart point of [`octa_bcc_set`]: `s = |u|_1` goes to
/// `tan(k s) / tan(k)` and the barycentric direction `b = |u| / s` to `h(b) / sum h`
/// with `h(b) = b (1 + c s (1 - b))`; faces (`s = 1`) map onto themselves by a map
/// symmetric in the three face vertices, so both cells of a face agree.
fn octa_warp(u: [f64; 3]) -> [f64; 3] {
    let s: f64 = u.iter().map(|v| v.abs()).sum();
    if s <= 0.0 {
        return [0.0; 3];
    }
    let h = u.map(|v| {
        let b = v.abs() / s;
        b * (1.0 + OCTA_WARP_FACE * s * (1.0 - b))
    });
    let hs: f64 = h.iter().sum();
    let f = (OCTA_WARP_RADIAL * s).tan() / OCTA_WARP_RADIAL.tan();
    [0, 1, 2].map(|i| u[i].signum() * h[i] / hs * f)
}

/// The 24-cell rotation set with a body-centred cubic lattice of size `m >= 1` in each
/// octahedral cell (module docs): `12 (I_Z + I_H) + 24 (m - 1)(m - 2) + 48 (m - 1) + 12`
/// rotations, with `I_Z` the integer points of `|x|_1 <= m - 1` and `I_H = 8 C(m+1, 3)`
/// the half-integer points of `|x|_1 < m`.
#[must_use]
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
pub fn octa_bcc_set(m: u32) -> Vec<Quat> {
    let m = i64::from(m.max(1));
    let inv = 1.0 / m as f64;
    // chart points: Z^3 and (Z + 1/2)^3 with |x|_1 <= m, scaled by 1/m
    let mut chart: Vec<[f64; 3]> = Vec::new();
    for i in -m..=m {
        for j in -m..=m {
            for k in -m..=m {
                if i.abs() + j.abs() + k.abs() <= m {
                    chart.push([i, j, k].map(|v| v as f64 * inv));
                }
                let h = [i, j, k].map(|v| v as f64 + 0.5);
                if h.iter().map(|v| v.abs()).sum::<f64>() < m as f64 {
                    chart.push(h.map(|v| v * inv));
                }
            }
        }
    }
    let chart: Vec<[f64; 3]> = chart.into_iter().map(octa_warp).collect();
    let r = std::f64::consts::FRAC_1_SQRT_2;
    let mut out: Vec<Quat> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for a in 0..4 {
        for b in a + 1..4 {
            let mut rest = (0..4).filter(|&k| k != a && k != b);
            let (c, d) = (rest.next().unwrap_or(0), rest.next().unwrap_or(0));
            for sb in [1.0, -1.0] {
                // cell centre (e_a + sb e_b) / sqrt 2; its six vertices (Hurwitz units)
                // lie at unit distance along the three axes of the gnomonic chart
                let mut centre = [0.0; 4];
                centre[a] = r;
                centre[b] = sb * r;
                let mut axes = [[0.0; 4]; 3];
                axes[0][a] = r;
                axes[0][b] = -sb * r;
                axes[1][c] = r;
                axes[1][d] = r;
                axes[2][c] = r;
                axes[2][d] = -r;
                for x in &chart {
                    let mut q = centre;
                    for (axis, xv) in axes.iter().zip(x) {
                        for l in 0..4 {
                            q[l] += xv * axis[l];
                        }
                    }
                    let q = canonical(normalize(q));
                    // face points of neighbouring cells agree to rounding error
                    let key = q.map(|v| (v * 1e7).round() as i64);
                    if seen.insert(key) {
                        out.push(q);
                    }
                }
            }
        }
    }
    out
}

/// The 120 vertices of the 600-cell (the binary icosahedral group) as unit
/// quaternions: the 8 `±e_i`, the 16 `(±1/2, ±1/2, ±1/2, ±1/2)` and the 96 even
/// permutations of `(±phi, ±1, ±1/phi, 0) / 2`.
#[must_use]
pub fn cell600_vertices() -> Vec<Quat> {
    let phi = 0.5 * (1.0 + 5f64.sqrt());
    let mut out: Vec<Quat> = Vec::with_capacity(120);
    for i in 0..4 {
        for s in [1.0, -1.0] {
            let mut q = [0.0; 4];
            q[i] = s;
            out.push(q);
        }
    }
    for bits in 0..16_u32 {
        out.push([0, 1, 2, 3].map(|k| if bits >> k & 1 == 1 { -0.5 } else { 0.5 }));
    }
    let base = [0.5 * phi, 0.5, 0.5 / phi, 0.0];
    // the 12 even permutations of 4 positions
    let mut perms: Vec<[usize; 4]> = Vec::with_capacity(12);
    for a in 0..4 {
        for b in (0..4).filter(|&b| b != a) {
            for c in (0..4).filter(|&c| c != a && c != b) {
                let p = [a, b, c, 6 - a - b - c];
                let inversions = (0..4)
                    .flat_map(|i| (i + 1..4).map(move |j| (i, j)))
                    .filter(|&(i, j)| p[i] > p[j])
                    .count();
                if inversions % 2 == 0 {
                    perms.push(p);
                }
            }
        }
    }
    for p in &perms {
        for bits in 0..8_u32 {
            let mut q = [0.0; 4];
            for k in 0..3 {
                q[p[k]] = if bits >> k & 1 == 1 {
                    -base[k]
                } else {
                    base[k]
                };
            }
            out.push(q);
        }
    }
    out
}

/// The 600-cell rotation set: its 60 vertices and 300 cell centres (both mod sign),
/// 360 rotations of covering radius 27.78 degrees (covering density 2.15); the only
/// size of [`Family::Cell600`].
#[must_use]
pub fn cell600_set() -> Vec<Quat> {
    let v = cell600_vertices();
    // neighbours: 36 degrees apart on the 3-sphere, dot phi / 2
    let phi = 0.5 * (1.0 + 5f64.sqrt());
    let dot = |a: &Quat, b: &Quat| (0..4).map(|k| a[k] * b[k]).sum::<f64>();
    let adj = |a: usize, b: usize| (dot(&v[a], &v[b]) - 0.5 * phi).abs() < 1e-9;
    let mut out: Vec<Quat> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |q: Quat, out: &mut Vec<Quat>| {
        let q = canonical(normalize(q));
        #[allow(clippy::cast_possible_truncation)]
        let key = q.map(|x| (x * 1e7).round() as i64);
        if seen.insert(key) {
            out.push(q);
        }
    };
    for q in &v {
        push(*q, &mut out);
    }
    let n = v.len();
    for a in 0..n {
        for b in a + 1..n {
            if !adj(a, b) {
                continue;
            }
            for c in b + 1..n {
                if !(adj(a, c) && adj(b, c)) {
                    continue;
                }
                for d in c + 1..n {
                    if adj(a, d) && adj(b, d) && adj(c, d) {
                        let q = [0, 1, 2, 3].map(|k| v[a][k] + v[b][k] + v[c][k] + v[d][k]);
                        push(q, &mut out);
                    }
                }
            }
        }
    }
    out
}

/// Covering radius (radians) of a ZXZ set, estimated with [`covering_radius`]
/// (`n_samples`, the fixed [`DEFAULT_SEED`]).
fn zxz_covering_radius(set: &[Zxz], n_samples: usize) -> f64 {
    let q: Vec<Quat> = set.iter().map(|a| zxz_to_quaternion(*a)).collect();
    covering_radius(&q, n_samples, DEFAULT_SEED).radius_rad
}

/// The larger of the [`DEFAULT_SEED`] estimate (`n_samples`) and the verifying one
/// ([`verification_samples`], [`VERIFY_SEED`]): both are distances actually attained,
/// so their maximum is still a lower bound of the true radius, and a tighter one.
fn zxz_covering_radius_verified(set: &[Zxz], n_samples: usize) -> f64 {
    let q: Vec<Quat> = set.iter().map(|a| zxz_to_quaternion(*a)).collect();
    covering_radius(&q, n_samples, DEFAULT_SEED)
        .radius_rad
        .max(covering_radius(&q, verification_samples(q.len(), n_samples), VERIFY_SEED).radius_rad)
}

/// Covering radius (radians) of the pytom-match-pick set for `step_deg`, estimated with
/// [`covering_radius`] (`n_samples`, fixed seed).
///
/// # Errors
/// [`crate::Error::InvalidArgument`] for an invalid step.
pub fn pytom_covering_radius(step_deg: f64, n_samples: usize) -> Result<f64> {
    Ok(zxz_covering_radius(
        &pytom_angle_set(step_deg, 1)?,
        n_samples,
    ))
}

/// Seed of the estimates that size the optimal set (fixed, so sets are reproducible).
pub const DEFAULT_SEED: u64 = 0x746D_6661_7374;

/// Seed of the second, verifying estimate of a candidate's covering radius.
pub const VERIFY_SEED: u64 = 0x7665_7269_6679;

/// Test rotations of the verifying estimate for a set of `len` rotations: 20 per
/// rotation, at least `n_samples`, at most 2,000,000 (more samples find the deep holes
/// of large sets that a fixed count misses).
#[must_use]
pub fn verification_samples(len: usize, n_samples: usize) -> usize {
    len.saturating_mul(20)
        .clamp(n_samples, n_samples.max(2_000_000))
}

/// A lattice construction of [`optimal_angle_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// [`cube_bcc_set`]: the 4 cube cells (mod sign) of the unit-quaternion sphere.
    CubeBcc,
    /// [`octa_bcc_set`]: the 12 octahedral cells (mod sign) of the 24-cell.
    OctaBcc,
    /// [`cell600_set`]: one size only (360 rotations).
    Cell600,
}

impl Family {
    /// Every family, in the order [`optimal_for_radius`] tries them.
    pub const ALL: [Family; 3] = [Family::CubeBcc, Family::OctaBcc, Family::Cell600];

    /// The family's set of lattice size `size`.
    #[must_use]
    pub fn set(self, size: u32) -> Vec<Quat> {
        match self {
            Family::CubeBcc => cube_bcc_set(size),
            Family::OctaBcc => octa_bcc_set(size),
            Family::Cell600 => cell600_set(),
        }
    }

    /// Covering radius times lattice size (degrees), slightly below the estimates.
    #[must_use]
    pub fn radius_times_size_deg(self) -> f64 {
        match self {
            Family::CubeBcc => CUBE_BCC_RADIUS_TIMES_N_DEG,
            Family::OctaBcc => OCTA_BCC_RADIUS_TIMES_M_DEG,
            Family::Cell600 => 0.0,
        }
    }

    /// The largest lattice size of the family.
    #[must_use]
    pub fn max_size(self) -> u32 {
        match self {
            Family::CubeBcc | Family::OctaBcc => 2000,
            Family::Cell600 => 1,
        }
    }
}

/// Which construction [`optimal_angle_set`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimalKind {
    /// [`cube_bcc_set`] with this lattice size.
    CubeBcc(u32),
    /// [`octa_bcc_set`] with this lattice size.
    OctaBcc(u32),
    /// [`cell600_set`].
    Cell600,
    /// The refined set of this index in [`refined_sets`].
    Refined(usize),
    /// The pytom-match-pick set itself (no candidate was smaller).
    Pytom,
}

impl OptimalKind {
    fn of(family: Family, size: u32) -> Self {
        match family {
            Family::CubeBcc => OptimalKind::CubeBcc(size),
            Family::OctaBcc => OptimalKind::OctaBcc(size),
            Family::Cell600 => OptimalKind::Cell600,
        }
    }
}

/// The covering-efficient set for an angular step.
#[derive(Debug, Clone)]
pub struct OptimalSet {
    /// ZXZ angles in radians, sorted by `(phi, theta, psi)`.
    pub angles: Vec<Zxz>,
    /// Covering radius of `angles` (radians): estimated for a lattice, exact for a
    /// refined set.
    pub radius_rad: f64,
    /// Estimated covering radius of the pytom-match-pick set for the step (radians).
    pub pytom_radius_rad: f64,
    /// Number of rotations of the pytom-match-pick set for the step.
    pub pytom_len: usize,
    /// The construction used.
    pub kind: OptimalKind,
}

/// The smallest set of `family` whose estimated covering radius is at most
/// `target_rad` (`n_samples`, [`DEFAULT_SEED`], then the verifying estimate with
/// [`verification_samples`] and [`VERIFY_SEED`]), stopping early with `None` once the
/// set would hold `max_len` rotations or more. Returns the sorted ZXZ angles, the
/// estimated radius (the larger of the two estimates) and the lattice size.
#[must_use]
pub fn lattice_for_radius(
    family: Family,
    target_rad: f64,
    n_samples: usize,
    max_len: usize,
) -> Option<(Vec<Zxz>, f64, u32)> {
    if !(target_rad.is_finite() && target_rad > 0.0) {
        return None;
    }
    // start at the calibrated size and grow until the estimate fits
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mut n = (family.radius_times_size_deg() / target_rad.to_degrees())
        .ceil()
        .clamp(1.0, f64::from(family.max_size())) as u32;
    loop {
        if n > family.max_size() {
            return None;
        }
        let q = family.set(n);
        if q.len() >= max_len {
            return None;
        }
        let r = covering_radius(&q, n_samples, DEFAULT_SEED).radius_rad;
        // a second, larger estimate (other seed): the first alone accepted a lattice
        // 0.7% above the target at 8 degrees (200,000 samples for 27,060 rotations)
        let r = if r <= target_rad {
            r.max(
                covering_radius(&q, verification_samples(q.len(), n_samples), VERIFY_SEED)
                    .radius_rad,
            )
        } else {
            r
        };
        if r <= target_rad {
            let mut angles: Vec<Zxz> = q.iter().map(|x| quaternion_to_zxz(*x)).collect();
            sort_zxz(&mut angles);
            return Some((angles, r, n));
        }
        n += 1;
    }
}

/// [`lattice_for_radius`] for [`Family::CubeBcc`].
#[must_use]
pub fn cube_bcc_for_radius(
    target_rad: f64,
    n_samples: usize,
    max_len: usize,
) -> Option<(Vec<Zxz>, f64, u32)> {
    lattice_for_radius(Family::CubeBcc, target_rad, n_samples, max_len)
}

/// The fewest rotations over the embedded refined sets and every [`Family`]: the
/// smallest refined set whose exact covering radius reaches `target_rad`
/// ([`refined_for_radius`]), then each family's smallest set that reaches it
/// ([`lattice_for_radius`]), searched only below the best size found so far (and below
/// `max_len`); ties keep the refined set, then the earlier family of [`Family::ALL`].
/// Returns the sorted ZXZ angles, the radius (a refined set's exact one, a lattice's
/// estimate) and the construction.
#[must_use]
pub fn optimal_for_radius(
    target_rad: f64,
    n_samples: usize,
    max_len: usize,
) -> Option<(Vec<Zxz>, f64, OptimalKind)> {
    let mut best: Option<(Vec<Zxz>, f64, OptimalKind)> = refined_for_radius(target_rad, max_len)
        .map(|i| {
            let set = &refined_sets()[i];
            (
                set.angles.clone(),
                set.radius_deg.to_radians(),
                OptimalKind::Refined(i),
            )
        });
    for family in Family::ALL {
        let limit = best.as_ref().map_or(max_len, |b| b.0.len().min(max_len));
        if let Some((angles, r, n)) = lattice_for_radius(family, target_rad, n_samples, limit) {
            best = Some((angles, r, OptimalKind::of(family, n)));
        }
    }
    best
}

/// The covering-efficient set for an angular step: the smallest candidate
/// ([`optimal_for_radius`]: a lattice set or an embedded refined set) whose covering
/// radius does not exceed that of the pytom-match-pick set for the same step, or the
/// pytom set itself when no candidate is smaller (the lattice sizes grow in steps of
/// about `((n + 1) / n)^3`, so at some steps, e.g. 90 degrees, the next lattice that
/// fits is not smaller than pytom's set). Radii are estimated with `n_samples` and
/// the fixed [`DEFAULT_SEED`] (a refined set's is its exact radius).
///
/// # Errors
/// [`crate::Error::InvalidArgument`] for an invalid step.
pub fn optimal_angle_set(step_deg: f64, n_samples: usize) -> Result<OptimalSet> {
    let pytom = pytom_angle_set(step_deg, 1)?;
    let target = zxz_covering_radius_verified(&pytom, n_samples);
    let fallback = |pytom: Vec<Zxz>| OptimalSet {
        pytom_len: pytom.len(),
        angles: pytom,
        radius_rad: target,
        pytom_radius_rad: target,
        kind: OptimalKind::Pytom,
    };
    Ok(match optimal_for_radius(target, n_samples, pytom.len()) {
        Some((angles, radius_rad, kind)) => OptimalSet {
            angles,
            radius_rad,
            pytom_radius_rad: target,
            pytom_len: pytom.len(),
            kind,
        },
        None => fallback(pytom),
    })
}
