//! The pytom-match-pick compatible angle set and the Crowther angular step.
//!
//! For an angular step `step_deg` pytom-match-pick (>= 0.7) builds its rotations as
//! * `nside`: the smallest integer with `12 nside^2 >= 4 pi / step_rad^2`;
//! * `(phi, theta)` = HEALPix RING pixel centres of that `nside` (longitude wrapped to
//!   `[0, 2 pi)`), used as the first Z and the X angle of a ZXZ rotation;
//! * `psi` = `linspace(0, 2 pi, ceil(360 / step_deg), endpoint=False)`, the second Z angle;
//! * the Cartesian product sorted lexicographically by `(phi, theta, psi)`.
//!
//! With rotational symmetry `Cn` about z only rotations with `phi < 2 pi / n` are kept.
//! Every floating-point step mirrors the Python original (numpy's `linspace`, the
//! `healpix` package), so the sorted list, and hence every angle index, is identical.

use std::f64::consts::PI;

use super::healpix::{npix, ring_pix2ang};
use super::{sort_zxz, Zxz};
use crate::{Error, Result};

/// The most rotations a set may hold (12 GB of ZXZ triples; a 0.35 degree step).
pub const MAX_ROTATIONS: u64 = 500_000_000;

/// The largest angular step accepted (degrees); one rotation about z per 360 degrees.
pub const MAX_STEP_DEG: f64 = 360.0;

fn check_step(step_deg: f64) -> Result<()> {
    if !(step_deg.is_finite() && step_deg > 0.0 && step_deg <= MAX_STEP_DEG) {
        return Err(Error::invalid(format!(
            "angular step {step_deg} deg is invalid; give a step in (0, 360] degrees, e.g. 7"
        )));
    }
    // 0.05 deg already means 3e11 rotations; refuse before allocating.
    if step_deg < 0.05 {
        return Err(Error::invalid(format!(
            "angular step {step_deg} deg would need more than 10^11 rotations; use a step >= 0.05 deg"
        )));
    }
    Ok(())
}

/// HEALPix `nside` pytom-match-pick uses for `step_deg`: the smallest integer with
/// `12 nside^2 >= 4 pi / (step_deg pi / 180)^2` (evaluated as pytom evaluates it).
///
/// # Errors
/// [`Error::InvalidArgument`] for a step outside `(0, 360]` degrees.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn nside_for_step(step_deg: f64) -> Result<u64> {
    check_step(step_deg)?;
    let step_rad = step_deg * PI / 180.0;
    let target = 4.0 * PI / (step_rad * step_rad);
    // start near the answer, then settle exactly with the integer/float comparison
    let mut nside = ((target / 12.0).sqrt().floor() as u64).saturating_sub(1);
    while (npix(nside) as f64) < target {
        nside += 1;
    }
    Ok(nside.max(1))
}

/// Number of in-plane (second Z, `psi`) steps: `ceil(360 / step_deg)`.
///
/// # Errors
/// [`Error::InvalidArgument`] for a step outside `(0, 360]` degrees.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn psi_steps(step_deg: f64) -> Result<usize> {
    check_step(step_deg)?;
    Ok((360.0 / step_deg).ceil() as usize)
}

/// `numpy.linspace(0, 2 pi, n, endpoint=False)`, bit for bit.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn psi_values(n: usize) -> Vec<f64> {
    let step = 2.0 * PI / n as f64;
    (0..n).map(|i| i as f64 * step).collect()
}

/// HEALPix `(phi, theta)` pairs for `nside`, `phi` wrapped to `[0, 2 pi)`, in RING order.
#[must_use]
pub fn healpix_phi_theta(nside: u64) -> Vec<[f64; 2]> {
    (0..npix(nside))
        .map(|p| {
            let (theta, phi) = ring_pix2ang(nside, p);
            let phi = if phi < 0.0 { phi + 2.0 * PI } else { phi };
            [phi, theta]
        })
        .collect()
}

/// The pytom-match-pick rotation set for `step_deg`, reduced by `Cn` symmetry about z
/// (`symmetry_n = 1` keeps everything), sorted by `(phi, theta, psi)`.
///
/// Returns ZXZ Euler angles `(phi, theta, psi)` in radians.
///
/// # Errors
/// [`Error::InvalidArgument`] for a step outside `(0, 360]` degrees or `symmetry_n == 0`.
#[allow(clippy::cast_precision_loss)]
pub fn pytom_angle_set(step_deg: f64, symmetry_n: u32) -> Result<Vec<Zxz>> {
    if symmetry_n == 0 {
        return Err(Error::invalid(
            "symmetry order 0 is invalid; give n >= 1 (1 = no symmetry)",
        ));
    }
    let nside = nside_for_step(step_deg)?;
    let n_psi = psi_steps(step_deg)?;
    let total = npix(nside).saturating_mul(n_psi as u64);
    if total > MAX_ROTATIONS {
        return Err(Error::invalid(format!(
            "angular step {step_deg} deg gives {total} rotations (over {MAX_ROTATIONS}, \
             {} GB); use a larger step",
            total * 24 / 1_000_000_000
        )));
    }
    let psi = psi_values(n_psi);
    let max_phi = 2.0 * PI / f64::from(symmetry_n);
    let mut pairs: Vec<[f64; 2]> = healpix_phi_theta(nside)
        .into_iter()
        .filter(|pt| pt[0] < max_phi)
        .collect();
    // HEALPix pairs are distinct and psi is increasing, so sorting the pairs and
    // expanding in order gives the lexicographically sorted product.
    pairs.sort_by(|a, b| {
        a[0].partial_cmp(&b[0])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a[1].partial_cmp(&b[1]).unwrap_or(std::cmp::Ordering::Equal))
    });
    let mut out = Vec::with_capacity(pairs.len() * psi.len());
    for [phi, theta] in pairs {
        out.extend(psi.iter().map(|&p| [phi, theta, p]));
    }
    debug_assert!({
        let mut c = out.clone();
        sort_zxz(&mut c);
        c == out
    });
    Ok(out)
}

/// Crowther angular step in degrees for a particle of `particle_diameter_a`:
/// `degrees(max(2 voxel_size_a, low_pass_a) / particle_diameter_a)`, as pytom-match-pick.
///
/// # Errors
/// [`Error::InvalidArgument`] for non-positive or non-finite sizes, a negative low-pass,
/// or a step that would exceed 360 degrees.
pub fn crowther_step_deg(
    particle_diameter_a: f64,
    voxel_size_a: f64,
    low_pass_a: Option<f64>,
) -> Result<f64> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(particle_diameter_a) {
        return Err(Error::invalid(format!(
            "particle diameter {particle_diameter_a} A is invalid; give the diameter in Angstrom (> 0)"
        )));
    }
    if !positive(voxel_size_a) {
        return Err(Error::invalid(format!(
            "voxel size {voxel_size_a} A is invalid; give the voxel size in Angstrom (> 0)"
        )));
    }
    let low_pass = low_pass_a.unwrap_or(0.0);
    if !(low_pass.is_finite() && low_pass >= 0.0) {
        return Err(Error::invalid(format!(
            "low-pass {low_pass} A is invalid; give a resolution in Angstrom (>= 0) or none"
        )));
    }
    let step = ((2.0 * voxel_size_a).max(low_pass) / particle_diameter_a).to_degrees();
    if step > MAX_STEP_DEG {
        return Err(Error::invalid(format!(
            "particle diameter {particle_diameter_a} A gives an angular step of {step:.1} deg; \
             the diameter must exceed max(2 x voxel size, low-pass) / (2 pi)"
        )));
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_values_match_linspace_definition() {
        let v = psi_values(36);
        assert_eq!(v.len(), 36);
        assert_eq!(v[0], 0.0);
        assert!((v[35] - 35.0 * 10f64.to_radians()).abs() < 1e-12);
    }

    #[test]
    fn invalid_steps_are_rejected() {
        for s in [0.0, -1.0, f64::NAN, f64::INFINITY, 361.0, 0.01, 0.1] {
            assert!(pytom_angle_set(s, 1).is_err(), "{s}");
        }
        assert!(pytom_angle_set(10.0, 0).is_err());
    }
}
