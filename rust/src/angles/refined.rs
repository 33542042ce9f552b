//! Refined rotation sets: point sets optimised offline and embedded in the library.
//!
//! The lattices of [`super::optimal`] grow in coarse size steps, so at the steps of
//! pytom-match-pick's table where pytom's own set is already fairly thin (covering
//! density 2.4-2.7: 5.27, 6.69, 8, 12, 12.85, 16, 20 and 25 degrees) no lattice size
//! is 25% smaller and still as fine. For each of those steps
//! `tools/refine_covering.py` built a set of `floor(0.75 N_pytom)` rotations by
//! minimax refinement (Lloyd relaxation of random points, then gradient steps on a
//! soft maximum of the exact hole radii, the facets of the convex hull of `{±q}`), to
//! covering densities of 1.78-1.79 at 1,215-6,750 rotations and 1.86-1.89 at
//! 25,920-89,424 (the lattices: 1.93-2.1). The file stores each set as `f32` ZXZ
//! angles with its exact covering radius, computed from the hull after rounding; the
//! Python tests recompute it from the embedded data with scipy's hull.
//!
//! Format (little-endian): `b"TMFREF01"`, `u32` set count, then per set `u32` rotations
//! `N`, `f64` step (degrees) it was made for, `f64` exact covering radius (degrees) and
//! `3 N` `f32` ZXZ angles in radians.

use std::sync::OnceLock;

use super::{sort_zxz, Zxz};

/// The embedded file (see the module docs).
static DATA: &[u8] = include_bytes!("../../data/refined_sets.bin");

const MAGIC: &[u8; 8] = b"TMFREF01";

/// One refined set.
#[derive(Debug, Clone)]
pub struct RefinedSet {
    /// The pytom-match-pick step (degrees) whose covering radius the set was made for.
    pub step_deg: f64,
    /// Exact covering radius (degrees), from the convex hull at build time.
    pub radius_deg: f64,
    /// ZXZ angles in radians, sorted by `(phi, theta, psi)`.
    pub angles: Vec<Zxz>,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn f64_at(data: &[u8], at: usize) -> Option<f64> {
    Some(f64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn f32_at(data: &[u8], at: usize) -> Option<f32> {
    Some(f32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Decode a refined-set file; `None` if it is malformed (wrong magic, truncated,
/// trailing bytes, non-finite values).
#[must_use]
pub fn decode(data: &[u8]) -> Option<Vec<RefinedSet>> {
    if data.get(..8)? != MAGIC {
        return None;
    }
    let count = u32_at(data, 8)? as usize;
    let mut at = 12;
    // capacities bounded by the data (a corrupt count must not ask for gigabytes)
    let mut out = Vec::with_capacity(count.min(data.len() / 20));
    for _ in 0..count {
        let n = u32_at(data, at)? as usize;
        let step_deg = f64_at(data, at + 4)?;
        let radius_deg = f64_at(data, at + 12)?;
        at += 20;
        if n.checked_mul(12)? > data.len().saturating_sub(at) {
            return None;
        }
        let mut angles: Vec<Zxz> = Vec::with_capacity(n);
        for _ in 0..n {
            let a = [
                f64::from(f32_at(data, at)?),
                f64::from(f32_at(data, at + 4)?),
                f64::from(f32_at(data, at + 8)?),
            ];
            if !a.iter().all(|v| v.is_finite()) {
                return None;
            }
            angles.push(a);
            at += 12;
        }
        if !(step_deg.is_finite() && radius_deg.is_finite() && radius_deg > 0.0) {
            return None;
        }
        sort_zxz(&mut angles);
        out.push(RefinedSet {
            step_deg,
            radius_deg,
            angles,
        });
    }
    if at != data.len() {
        return None;
    }
    out.sort_by_key(|s| s.angles.len());
    Some(out)
}

/// The embedded refined sets, smallest first (decoded once). Empty only if the
/// embedded file were malformed, which a test rules out.
#[must_use]
pub fn refined_sets() -> &'static [RefinedSet] {
    static SETS: OnceLock<Vec<RefinedSet>> = OnceLock::new();
    SETS.get_or_init(|| decode(DATA).unwrap_or_default())
}

/// The smallest refined set whose exact covering radius is at most `target_rad` and
/// which holds fewer than `max_len` rotations: its index in [`refined_sets`].
#[must_use]
pub fn refined_for_radius(target_rad: f64, max_len: usize) -> Option<usize> {
    let target_deg = target_rad.to_degrees();
    refined_sets()
        .iter()
        .position(|s| s.radius_deg <= target_deg && s.angles.len() < max_len)
}
