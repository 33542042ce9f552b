//! Rotation sets for the exhaustive template-matching search.
//!
//! A rotation is a ZXZ Euler triple `(phi, theta, psi)` in radians (type [`Zxz`]), the
//! pytom-match-pick convention; [`crate::euler`] gives the matrix it denotes. Every set
//! is sorted lexicographically by `(phi, theta, psi)`, and a score run's angle index `i`
//! refers to row `i` of the set.
//!
//! * [`healpix`]: HEALPix RING pixel centres for any `nside`;
//! * [`pytom`]: the pytom-match-pick compatible set and the Crowther step;
//! * [`file`]: custom lists from text files;
//! * [`symmetry`]: point groups (Cn, Dn, T, O, I) and reduction of sets by them;
//! * [`covering`]: covering-radius estimation (k-d tree over unit quaternions);
//! * [`optimal`]: the opt-in covering-efficient set;
//! * [`refined`]: rotation sets optimised offline, embedded (part of [`optimal`]'s choice).

pub mod covering;
pub mod file;
pub mod healpix;
pub mod optimal;
pub mod pytom;
pub mod refined;
pub mod symmetry;

pub use file::{parse_angle_text, read_angle_file};
pub use pytom::{crowther_step_deg, nside_for_step, psi_steps, pytom_angle_set};

/// ZXZ Euler angles `(phi, theta, psi)` in radians.
pub type Zxz = [f64; 3];

/// Sort rotations lexicographically by `(phi, theta, psi)`, the order pytom-match-pick
/// uses (Python tuple comparison; `-0.0 == 0.0`, stable).
pub fn sort_zxz(angles: &mut [Zxz]) {
    angles.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}
