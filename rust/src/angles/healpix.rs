//! HEALPix pixel centres in the RING scheme, for any `nside >= 1` (not only powers of two).
//!
//! The sphere is cut into 12 base faces of `nside x nside` pixels of equal area
//! (Górski et al. 2005, ApJ 622:759). A RING index counts pixels along iso-latitude rings
//! from the north pole. [`ring_pix2ang`] returns the colatitude `theta` in `[0, pi]` and
//! the longitude `phi` of the pixel centre in radians.
//!
//! The floating-point steps follow the route of the `healpix` PyPI package (ring index ->
//! face and in-face coordinates -> `z = cos(theta)`, `s = sin(theta)`, `phi`), so the
//! results agree bit for bit with `healpix.pix2ang(nside, ipix)`. That matters: the
//! pytom-compatible set is sorted by these values, and rotation *indices* are only
//! interchangeable with pytom-match-pick if equal longitudes in different rings compare
//! equal in both. As in that package, `phi` may be slightly negative (down to `-pi/4`
//! for odd `nside`); callers wrap it.

use std::f64::consts::{FRAC_PI_4, PI};

/// Base-face ring offset (in units of `nside`) of the 12 faces.
const FACE_RING: [i64; 12] = [2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4];
/// Base-face longitude offset (in units of `pi/4`) of the 12 faces.
const FACE_PHI: [i64; 12] = [1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7];

/// Number of pixels for `nside`: `12 * nside^2`.
#[must_use]
pub fn npix(nside: u64) -> u64 {
    12 * nside * nside
}

/// Integer square root: the largest `r` with `r * r <= x`.
fn isqrt(x: i64) -> i64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let mut r = (x as f64).sqrt() as i64;
    while r * r > x {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

/// Face number and in-face pixel coordinates `(ix, iy)` of RING pixel `pix`.
fn ring_to_face_xy(nside: i64, pix: i64) -> (usize, i64, i64) {
    let ncap = 2 * nside * (nside - 1);
    let total = 12 * nside * nside;
    // (ring counted from the north pole, position in ring from 1, face, in-face diagonal
    // coordinates (ring-relative `irt`, phi-relative `ipt`))
    let (face, irt, ipt) = if pix < ncap {
        let ring = (1 + isqrt(1 + 2 * pix)) >> 1;
        let iphi = (pix + 1) - 2 * ring * (ring - 1);
        let face = (iphi - 1) / ring;
        let f = usize::try_from(face).unwrap_or(0);
        (
            f,
            ring - FACE_RING[f] * nside + 1,
            2 * iphi - FACE_PHI[f] * ring - 1,
        )
    } else if pix < total - ncap {
        let ip = pix - ncap;
        let ring = ip / (4 * nside) + nside;
        let iphi = ip % (4 * nside) + 1;
        let shift = (ring + nside) & 1;
        let ire = ring - nside + 1;
        let irm = 2 * nside + 2 - ire;
        let ifm = (iphi - ire / 2 + nside - 1) / nside;
        let ifp = (iphi - irm / 2 + nside - 1) / nside;
        let face = match ifp.cmp(&ifm) {
            std::cmp::Ordering::Equal => ifp | 4,
            std::cmp::Ordering::Less => ifp,
            std::cmp::Ordering::Greater => ifm + 8,
        };
        let f = usize::try_from(face).unwrap_or(0);
        (
            f,
            ring - FACE_RING[f] * nside + 1,
            2 * iphi - FACE_PHI[f] * nside - shift - 1,
        )
    } else {
        let ip = total - pix;
        let ring = (1 + isqrt(2 * ip - 1)) >> 1; // counted from the south pole
        let iphi = 4 * ring + 1 - (ip - 2 * ring * (ring - 1));
        let face = 8 + (iphi - 1) / ring;
        let f = usize::try_from(face).unwrap_or(0);
        (
            f,
            4 * nside - ring - FACE_RING[f] * nside + 1,
            2 * iphi - FACE_PHI[f] * ring - 1,
        )
    };
    let ipt = if ipt >= 2 * nside {
        ipt - 8 * nside
    } else {
        ipt
    };
    (face, (ipt - irt) >> 1, (-(ipt + irt)) >> 1)
}

/// `(theta, phi)` in radians of the centre of RING pixel `pix` for `nside`.
///
/// `theta` is the colatitude in `[0, pi]`; `phi` is in `[-pi/4, 2 pi)`, exactly as the
/// `healpix` package returns it.
///
/// # Panics
/// Never for `nside >= 1` and `pix < 12 nside^2`; out-of-range input is a caller bug
/// (debug assertion).
#[must_use]
#[allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)]
pub fn ring_pix2ang(nside: u64, pix: u64) -> (f64, f64) {
    debug_assert!(nside >= 1 && pix < npix(nside));
    let ns = nside as i64;
    let (face, ix, iy) = ring_to_face_xy(ns, pix as i64);
    let nsf = nside as f64;
    let x = (ix as f64 + 0.5) / nsf;
    let y = (iy as f64 + 0.5) / nsf;
    // face row: 1 (north), 0 (equator), -1 (south)
    let row = 1 - (face as i64) / 4;
    let rowf = row as f64;
    let h = rowf - 1.0 + (x + y);
    let m = 2.0 - rowf * h;
    let (z, s, phi) = if m < 1.0 {
        let t = m * m * (1.0 / 3.0);
        (
            rowf * (1.0 - t),
            (t * (2.0 - t)).sqrt(),
            FRAC_PI_4 * (FACE_PHI[face] as f64 + (x - y) / m),
        )
    } else {
        let z = h * (2.0 / 3.0);
        (
            z,
            ((1.0 + z) * (1.0 - z)).sqrt(),
            FRAC_PI_4 * (FACE_PHI[face] as f64 + (x - y)),
        )
    };
    let theta = if s > 0.7 {
        z.acos()
    } else if z > 0.0 {
        s.asin()
    } else {
        PI - s.asin()
    };
    (theta, phi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isqrt_matches_definition() {
        for x in 0..10_000_i64 {
            let r = isqrt(x);
            assert!(r * r <= x && (r + 1) * (r + 1) > x);
        }
    }

    #[test]
    fn every_pixel_lands_in_its_own_ring_latitude_band() {
        // Pixels of equal area: z = cos(theta) of ring centres decreases monotonically
        // with the pixel index, and each ring's phi values are evenly spaced.
        for nside in 1..=9_u64 {
            let mut last_theta = -1.0;
            for p in 0..npix(nside) {
                let (theta, phi) = ring_pix2ang(nside, p);
                assert!((0.0..=PI).contains(&theta));
                assert!((-FRAC_PI_4..2.0 * PI).contains(&phi), "{nside} {p} {phi}");
                assert!(theta >= last_theta - 1e-12);
                last_theta = theta;
            }
        }
    }
}
