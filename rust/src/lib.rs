//! tmfast core: rotation sets, Euler conventions, peak finding and file writers.
//!
//! Pure Rust with no Python dependency; `cargo test` exercises it directly. The Python
//! extension `tmfast._rust` is the thin layer in [`py`], built only with the `python` feature.
//!
//! Conventions (shared with the Python package):
//! * volumes are C-ordered `(z, y, x)` `f32` arrays;
//! * rotations are ZXZ Euler angles `(phi, theta, psi)` in radians, the pytom-match-pick
//!   convention; see [`euler`] for the matrix they denote.

pub mod angles;
pub mod error;
pub mod euler;
pub mod formats;
pub mod kernels;
pub mod peaks;
pub mod rowfft;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
