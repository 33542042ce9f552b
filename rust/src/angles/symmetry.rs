//! Point-group symmetry of the template, and reduction of rotation sets by it.
//!
//! If the template is invariant under a group `G` (`T(g r) = T(r)`), the rotations `M`
//! and `M g` produce the same rotated template, so one rotation per class
//! `{M g : g in G}` suffices (right cosets; `g` acts first, in the template's frame).
//!
//! Group orientations (`Cn`, `Dn`, `T`, `O` equal scipy's `Rotation.create_group`):
//! * `Cn`: rotations by `2 pi k / n` about z;
//! * `Dn`: `Cn` plus `n` two-fold axes in the xy plane, the first along x;
//! * `T`: two-folds along x, y, z and three-folds along the cube diagonals (12);
//! * `O`: four-folds along x, y, z (24);
//! * `I`: two-folds along x, y, z; five-folds along `(0, 1, 1/phi)`, `(1, 1/phi, 0)`,
//!   `(1/phi, 0, 1)` and their sign variants (`phi` the golden ratio; 60 rotations, the
//!   quaternions `(+-1, 0, 0, 0)`, `(+-1, +-1, +-1, +-1) / 2` and the even permutations
//!   of `(0, +-1, +-phi, +-1/phi) / 2`). This is not scipy's orientation of `I`.
//!
//! Reduction rules:
//! * `Cn`: keep `phi < 2 pi / n` (pytom-match-pick's rule; right multiplication by a
//!   z rotation only shifts `phi`), so counts match pytom exactly;
//! * `Dn`, `T`, `O`, `I`: keep `M` if it lies in the Dirichlet domain of the identity,
//!   i.e. no `M g` is closer to the identity (`|w(M)| >= |w(M g)|` for the quaternion scalar
//!   part `w`); ties (within 1e-12) go to the lexicographically smallest canonical
//!   quaternion. This keeps one representative per class when the set is `G`-invariant,
//!   and about `N / |G|` rotations otherwise; [`reduce`] then adds the few rotations
//!   needed so that (1) every rotation of the set, and (2) every rotation of SO(3) found
//!   by sampling and hill climbing, stays within the set's covering radius `R` of a kept
//!   rotation composed with a group element. The reduced set thus covers SO(3) modulo
//!   `G` as well as the full set covers SO(3) (measured: +1-3% rotations over `N / |G|`
//!   at 7-10 degrees, +10-25% at 20 degrees where classes are few).

use std::f64::consts::PI;

use rayon::prelude::*;

use super::covering::{
    canonical, covering_radius, uncovered_samples, worst_points, Quat, QuatIndex,
};
use super::Zxz;
use crate::euler::{quaternion_distance, quaternion_mul, zxz_to_quaternion};
use crate::{Error, Result};

/// A point group of the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symmetry {
    /// `n`-fold rotation about z (`n >= 1`; 1 = no symmetry).
    Cyclic(u32),
    /// `Cn` plus `n` perpendicular two-fold axes (`n >= 2`).
    Dihedral(u32),
    /// Tetrahedral, 12 rotations.
    Tetrahedral,
    /// Octahedral, 24 rotations.
    Octahedral,
    /// Icosahedral, 60 rotations.
    Icosahedral,
}

const MAX_ORDER: u32 = 1000;

impl Symmetry {
    /// Parse `"C4"`, `"D2"`, `"T"`, `"O"`, `"I"` or a bare `"4"` (case-insensitive).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        let s = text.trim().to_ascii_uppercase();
        let bad = || {
            Error::invalid(format!(
                "symmetry {text:?} is not understood; give n or Cn (n >= 1), Dn (n >= 2), T, O or I"
            ))
        };
        let num = |t: &str| {
            t.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_ORDER).contains(n))
        };
        match s.as_str() {
            "T" => Ok(Self::Tetrahedral),
            "O" => Ok(Self::Octahedral),
            "I" => Ok(Self::Icosahedral),
            _ if s.starts_with('C') => num(&s[1..]).map(Self::Cyclic).ok_or_else(bad),
            _ if s.starts_with('D') => num(&s[1..])
                .filter(|&n| n >= 2)
                .map(Self::Dihedral)
                .ok_or_else(bad),
            _ => num(&s).map(Self::Cyclic).ok_or_else(bad),
        }
    }

    /// Number of rotations in the group.
    #[must_use]
    pub fn order(&self) -> usize {
        match *self {
            Self::Cyclic(n) => n as usize,
            Self::Dihedral(n) => 2 * n as usize,
            Self::Tetrahedral => 12,
            Self::Octahedral => 24,
            Self::Icosahedral => 60,
        }
    }

    /// The group's rotations as unit quaternions (one of `±q` each, identity first).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn elements(&self) -> Vec<Quat> {
        let zrot = |k: u32, n: u32| {
            let h = PI * f64::from(k) / f64::from(n);
            [h.cos(), 0.0, 0.0, h.sin()]
        };
        let mut out: Vec<Quat> = match *self {
            Self::Cyclic(n) => (0..n).map(|k| zrot(k, n)).collect(),
            Self::Dihedral(n) => {
                let mut v: Vec<Quat> = (0..n).map(|k| zrot(k, n)).collect();
                // two-fold axes at angle pi k / n in the xy plane
                v.extend((0..n).map(|k| {
                    let a = PI * f64::from(k) / f64::from(n);
                    [0.0, a.cos(), a.sin(), 0.0]
                }));
                v
            }
            Self::Tetrahedral => {
                let mut v: Vec<Quat> = vec![
                    [1.0, 0.0, 0.0, 0.0],
                    [0.0, 1.0, 0.0, 0.0],
                    [0.0, 0.0, 1.0, 0.0],
                    [0.0, 0.0, 0.0, 1.0],
                ];
                for sx in [1.0, -1.0] {
                    for sy in [1.0, -1.0] {
                        for sz in [1.0, -1.0] {
                            v.push([0.5, 0.5 * sx, 0.5 * sy, 0.5 * sz]);
                        }
                    }
                }
                v
            }
            Self::Octahedral => {
                let mut v = Self::Tetrahedral.elements();
                let s = std::f64::consts::FRAC_1_SQRT_2;
                for i in 1..4 {
                    for sg in [1.0, -1.0] {
                        let mut q = [s, 0.0, 0.0, 0.0];
                        q[i] = sg * s;
                        v.push(q);
                    }
                }
                for (i, j) in [(1, 2), (1, 3), (2, 3)] {
                    for sg in [1.0, -1.0] {
                        let mut q = [0.0; 4];
                        q[i] = s;
                        q[j] = sg * s;
                        v.push(q);
                    }
                }
                v
            }
            Self::Icosahedral => {
                let mut v = Self::Tetrahedral.elements();
                let phi = 0.5 * (1.0 + 5f64.sqrt());
                // even permutations of (0, +-1, +-phi, +-1/phi) / 2
                let base = [0.0, 1.0, phi, 1.0 / phi];
                let even_perms = [
                    [0, 1, 2, 3],
                    [0, 2, 3, 1],
                    [0, 3, 1, 2],
                    [1, 0, 3, 2],
                    [1, 2, 0, 3],
                    [1, 3, 2, 0],
                    [2, 0, 1, 3],
                    [2, 1, 3, 0],
                    [2, 3, 0, 1],
                    [3, 0, 2, 1],
                    [3, 1, 0, 2],
                    [3, 2, 1, 0],
                ];
                for p in even_perms {
                    for s1 in [1.0, -1.0] {
                        for s2 in [1.0, -1.0] {
                            for s3 in [1.0, -1.0] {
                                let signed = [0.0, s1 * base[1], s2 * base[2], s3 * base[3]];
                                let mut q = [0.0; 4];
                                for (k, &src) in p.iter().enumerate() {
                                    q[k] = 0.5 * signed[src];
                                }
                                v.push(q);
                            }
                        }
                    }
                }
                v
            }
        };
        // one of +-q each
        let mut seen = std::collections::HashSet::new();
        out.retain(|q| {
            let c = canonical(*q);
            #[allow(clippy::cast_possible_truncation)]
            seen.insert(c.map(|v| (v * 1e9).round() as i64))
        });
        out
    }
}

/// Samples of the covering-radius estimate that sets the coverage tolerance of
/// [`reduce`] (seed 0).
pub const COVERAGE_SAMPLES: usize = 100_000;

/// Keep one rotation per symmetry class of `set` (see the module docs); the order of the
/// kept rotations is preserved.
///
/// For `Dn`, `T`, `O`, `I` the Dirichlet-domain representatives are completed so that
/// every rotation `s` of `set` lies within the covering radius `R` of `set` of some kept
/// rotation composed with a group element (`min d(s, k g) <= R`; `R` estimated by
/// [`covering_radius`] with [`COVERAGE_SAMPLES`] samples and seed 0), and then so that
/// sampled and hill-climbed rotations of SO(3) do too (up to 10 rounds): where the
/// domain boundary cuts between grid points, the rotations of `set` that best fill the
/// holes are added, worst hole first.
#[must_use]
pub fn reduce(set: &[Zxz], symmetry: Symmetry) -> Vec<Zxz> {
    match symmetry {
        Symmetry::Cyclic(n) => {
            let max_phi = 2.0 * PI / f64::from(n.max(1));
            set.iter().copied().filter(|a| a[0] < max_phi).collect()
        }
        _ => reduce_covering(set, symmetry),
    }
}

/// Like [`reduce`], but `Cn` too goes through the coverage completion (after pytom's
/// `phi < 2 pi / n` rule). For sets that are not invariant under rotations about z
/// (custom or covering-optimal sets), where the sector boundaries cut between set
/// rotations; counts then differ slightly from pytom-match-pick's rule.
#[must_use]
pub fn reduce_covering(set: &[Zxz], symmetry: Symmetry) -> Vec<Zxz> {
    let group = symmetry.elements();
    let quats: Vec<Quat> = set.iter().map(|a| zxz_to_quaternion(*a)).collect();
    let mut keep: Vec<bool> = match symmetry {
        Symmetry::Cyclic(n) => {
            let max_phi = 2.0 * PI / f64::from(n.max(1));
            set.iter().map(|a| a[0] < max_phi).collect()
        }
        _ => quats
            .par_iter()
            .map(|q| in_identity_domain(*q, &group))
            .collect(),
    };
    if group.len() > 1 {
        complete_coverage(&quats, &group, &mut keep);
    }
    set.iter()
        .zip(keep)
        .filter_map(|(a, k)| k.then_some(*a))
        .collect()
}

/// Add rotations to `keep` until every rotation is within the set's covering radius of a
/// kept rotation composed with a group element.
fn complete_coverage(quats: &[Quat], group: &[Quat], keep: &mut [bool]) {
    if quats.is_empty() {
        return;
    }
    let radius = covering_radius(quats, COVERAGE_SAMPLES, 0).radius_rad;
    let images: Vec<Quat> = quats
        .iter()
        .zip(keep.iter())
        .filter(|(_, &k)| k)
        .flat_map(|(q, _)| group.iter().map(move |g| quaternion_mul(*q, *g)))
        .collect();
    let index = QuatIndex::new(&images);
    let mut uncovered: Vec<(f64, usize)> = quats
        .par_iter()
        .enumerate()
        .filter_map(|(i, q)| {
            let d = index.nearest(q).map_or(f64::INFINITY, |(_, d)| d);
            (d > radius).then_some((d, i))
        })
        .collect();
    uncovered.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut added: Vec<Quat> = Vec::new();
    for (_, i) in uncovered {
        let q = quats[i];
        let covered = added.iter().any(|k| {
            group
                .iter()
                .any(|g| quaternion_distance(q, quaternion_mul(*k, *g)) <= radius)
        });
        if !covered {
            keep[i] = true;
            added.push(q);
        }
    }
    cover_holes(quats, group, keep, radius);
}

/// Rounds of hole filling in [`cover_holes`].
const HOLE_ROUNDS: u64 = 10;

/// Add rotations of the set until sampled rotations of SO(3) are, like for the full set,
/// within `radius` of a kept rotation composed with a group element: for each sampled
/// hole `x`, the set rotation `s` minimising `d(x, s g)` over `g` is kept.
fn cover_holes(quats: &[Quat], group: &[Quat], keep: &mut [bool], radius: f64) {
    let set_index = QuatIndex::new(quats);
    let inverses: Vec<Quat> = group.iter().map(|g| [g[0], -g[1], -g[2], -g[3]]).collect();
    for round in 0..HOLE_ROUNDS {
        let images: Vec<Quat> = quats
            .iter()
            .zip(keep.iter())
            .filter(|(_, &k)| k)
            .flat_map(|(q, _)| group.iter().map(move |g| quaternion_mul(*q, *g)))
            .collect();
        let index = QuatIndex::new(&images);
        let mut holes = uncovered_samples(&index, COVERAGE_SAMPLES, round + 1, radius);
        // the refined worst points: the deepest holes, which sampling alone misses
        holes.extend(
            worst_points(&index, COVERAGE_SAMPLES, round + 101)
                .into_iter()
                .filter(|h| h.0 > radius),
        );
        if holes.is_empty() {
            return;
        }
        holes.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut new_images: Vec<Quat> = Vec::new();
        let mut added = false;
        for (_, x) in holes {
            if new_images
                .iter()
                .any(|p| quaternion_distance(*p, x) <= radius)
            {
                continue;
            }
            let best = inverses
                .iter()
                .filter_map(|gi| set_index.nearest(&quaternion_mul(x, *gi)))
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            if let Some((i, _)) = best {
                if !keep[i] {
                    keep[i] = true;
                    added = true;
                }
                new_images.extend(group.iter().map(|g| quaternion_mul(quats[i], *g)));
            }
        }
        if !added {
            return;
        }
    }
}

fn lex_less(a: &Quat, b: &Quat) -> bool {
    for k in 0..4 {
        if (a[k] - b[k]).abs() > 1e-12 {
            return a[k] < b[k];
        }
    }
    false
}

/// Whether `q` is the representative of its class `{q g}` (Dirichlet domain of identity).
#[must_use]
pub fn in_identity_domain(q: Quat, group: &[Quat]) -> bool {
    let w = q[0].abs();
    let cq = canonical(q);
    for g in group.iter().skip(1) {
        let qg = quaternion_mul(q, *g);
        let wg = qg[0].abs();
        if wg > w + 1e-12 {
            return false;
        }
        if (wg - w).abs() <= 1e-12 && lex_less(&canonical(qg), &cq) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_have_their_order_and_are_closed() {
        let groups = [
            Symmetry::Cyclic(1),
            Symmetry::Cyclic(5),
            Symmetry::Dihedral(2),
            Symmetry::Dihedral(7),
            Symmetry::Tetrahedral,
            Symmetry::Octahedral,
            Symmetry::Icosahedral,
        ];
        for g in groups {
            let el = g.elements();
            assert_eq!(el.len(), g.order(), "{g:?}");
            for a in &el {
                assert!((a.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
                for b in &el {
                    let ab = quaternion_mul(*a, *b);
                    let found = el.iter().any(|c| quaternion_distance(*c, ab) < 1e-6);
                    assert!(found, "{g:?} not closed");
                }
            }
        }
    }

    #[test]
    fn parse_symmetry() {
        assert_eq!(Symmetry::parse("c4").unwrap(), Symmetry::Cyclic(4));
        assert_eq!(Symmetry::parse("6").unwrap(), Symmetry::Cyclic(6));
        assert_eq!(Symmetry::parse("D2").unwrap(), Symmetry::Dihedral(2));
        assert_eq!(Symmetry::parse(" i ").unwrap(), Symmetry::Icosahedral);
        for bad in ["", "X", "C0", "D1", "C-2", "Cx", "D"] {
            assert!(Symmetry::parse(bad).is_err(), "{bad}");
        }
    }
}
