//! Euler-angle conventions: ZXZ radians (matching) <-> rotation matrices <-> RELION ZYZ
//! degrees (STAR files). See `docs/conventions.md`, which this module implements.
//!
//! * A ZXZ triple `(phi, theta, psi)` in radians denotes the *active* rotation acting on
//!   `(x, y, z)` column vectors
//!   `M = Rz(psi) Rx(theta) Rz(phi)`, with `Rz(a) = [[c, -s, 0], [s, c, 0], [0, 0, 1]]` and
//!   `Rx(a) = [[1, 0, 0], [0, c, -s], [0, s, c]]` (scipy `from_euler("zxz", ...)`).
//! * RELION `(rot, tilt, psi)` in degrees denote RELION's
//!   `A = Euler_angles2matrix(rot, tilt, psi)`; tmfast writes them such that `A == M`
//!   (what pytom-match-pick exports,
//!   `Rotation.from_euler("ZXZ", -zxz).as_euler("ZYZ", degrees=True)`).
//!
//! Ranges of the angles returned: ZXZ `phi, psi` in `[0, 2 pi)`, `theta` in `[0, pi]`;
//! RELION `rot, psi` in `(-180, 180]`, `tilt` in `[0, 180]` (scipy's ranges).
//!
//! Gimbal lock (`sin(theta)` or `sin(tilt)` below [`GIMBAL_EPS`]): only the sum or
//! difference of the two outer angles is defined. ZXZ output then puts all of it in
//! `psi` (`phi = 0`); RELION output puts all of it in `rot` (`psi = 0`, as scipy does).
//! Either way the matrix is reproduced.

use std::f64::consts::PI;

/// A 3x3 rotation matrix, row-major, acting on `(x, y, z)` column vectors.
pub type Matrix3 = [[f64; 3]; 3];

/// Below this `sin` of the middle angle the outer angles are treated as degenerate.
pub const GIMBAL_EPS: f64 = 1e-10;

/// Wrap an angle in radians to `[0, 2 pi)`.
#[must_use]
pub fn wrap_two_pi(a: f64) -> f64 {
    let w = a.rem_euclid(2.0 * PI);
    // rem_euclid can round up to exactly 2 pi for tiny negative input
    if w >= 2.0 * PI {
        0.0
    } else {
        w
    }
}

/// Wrap an angle in degrees to `(-180, 180]`.
fn wrap_deg_180(a: f64) -> f64 {
    let w = (a + 180.0).rem_euclid(360.0) - 180.0;
    if w <= -180.0 {
        w + 360.0
    } else {
        w
    }
}

/// `M = Rz(psi) Rx(theta) Rz(phi)` for ZXZ angles in radians.
#[must_use]
pub fn zxz_to_matrix(zxz: [f64; 3]) -> Matrix3 {
    let [phi, theta, psi] = zxz;
    let (sf, cf) = phi.sin_cos();
    let (st, ct) = theta.sin_cos();
    let (sp, cp) = psi.sin_cos();
    [
        [cp * cf - sp * ct * sf, -cp * sf - sp * ct * cf, sp * st],
        [sp * cf + cp * ct * sf, -sp * sf + cp * ct * cf, -cp * st],
        [st * sf, st * cf, ct],
    ]
}

/// ZXZ angles in radians of a rotation matrix (see the module docs for ranges and the
/// gimbal-lock choice). The input must be a rotation; it is not re-orthogonalised.
#[must_use]
pub fn matrix_to_zxz(m: &Matrix3) -> [f64; 3] {
    let st = m[2][0].hypot(m[2][1]);
    let theta = st.atan2(m[2][2]);
    if st > GIMBAL_EPS {
        let phi = m[2][0].atan2(m[2][1]);
        let psi = m[0][2].atan2(-m[1][2]);
        [wrap_two_pi(phi), theta, wrap_two_pi(psi)]
    } else {
        // theta = 0: M = Rz(phi + psi); theta = pi: M = Rz(psi - phi) diag(1, -1, -1).
        [0.0, theta, wrap_two_pi(m[1][0].atan2(m[0][0]))]
    }
}

/// RELION's `Euler_angles2matrix(rot, tilt, psi)` (degrees).
#[must_use]
pub fn relion_deg_to_matrix(rtp: [f64; 3]) -> Matrix3 {
    let [a, b, g] = rtp.map(f64::to_radians);
    let (sa, ca) = a.sin_cos();
    let (sb, cb) = b.sin_cos();
    let (sg, cg) = g.sin_cos();
    let (cc, cs, sc, ss) = (cb * ca, cb * sa, sb * ca, sb * sa);
    [
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ]
}

/// RELION `(rot, tilt, psi)` in degrees with `Euler_angles2matrix(rot, tilt, psi) == m`.
#[must_use]
pub fn matrix_to_relion_deg(m: &Matrix3) -> [f64; 3] {
    let sb = m[2][0].hypot(m[2][1]);
    let tilt = sb.atan2(m[2][2]);
    let (rot, psi) = if sb > GIMBAL_EPS {
        (m[2][1].atan2(m[2][0]), m[1][2].atan2(-m[0][2]))
    } else if m[2][2] > 0.0 {
        // tilt = 0: A = Rz-like in (rot + psi)
        (m[0][1].atan2(m[0][0]), 0.0)
    } else {
        // tilt = pi: A depends on psi - rot
        ((-m[0][1]).atan2(-m[0][0]), 0.0)
    };
    [
        wrap_deg_180(rot.to_degrees()),
        tilt.to_degrees(),
        wrap_deg_180(psi.to_degrees()),
    ]
}

/// ZXZ radians -> RELION degrees (same matrix).
#[must_use]
pub fn zxz_to_relion_deg(zxz: [f64; 3]) -> [f64; 3] {
    matrix_to_relion_deg(&zxz_to_matrix(zxz))
}

/// RELION degrees -> ZXZ radians (same matrix).
#[must_use]
pub fn relion_deg_to_zxz(rtp: [f64; 3]) -> [f64; 3] {
    matrix_to_zxz(&relion_deg_to_matrix(rtp))
}

/// Unit quaternion `[w, x, y, z]` of a rotation matrix (Shepperd's method, `w >= 0`).
#[must_use]
pub fn matrix_to_quaternion(m: &Matrix3) -> [f64; 4] {
    let tr = m[0][0] + m[1][1] + m[2][2];
    let q = if tr > 0.0 {
        let s = (tr + 1.0).sqrt() * 2.0;
        [
            0.25 * s,
            (m[2][1] - m[1][2]) / s,
            (m[0][2] - m[2][0]) / s,
            (m[1][0] - m[0][1]) / s,
        ]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [
            (m[2][1] - m[1][2]) / s,
            0.25 * s,
            (m[0][1] + m[1][0]) / s,
            (m[0][2] + m[2][0]) / s,
        ]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [
            (m[0][2] - m[2][0]) / s,
            (m[0][1] + m[1][0]) / s,
            0.25 * s,
            (m[1][2] + m[2][1]) / s,
        ]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [
            (m[1][0] - m[0][1]) / s,
            (m[0][2] + m[2][0]) / s,
            (m[1][2] + m[2][1]) / s,
            0.25 * s,
        ]
    };
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let sign = if q[0] < 0.0 { -1.0 } else { 1.0 };
    q.map(|v| sign * v / n)
}

/// Rotation matrix of a unit quaternion `[w, x, y, z]` (normalised first).
#[must_use]
pub fn quaternion_to_matrix(q: [f64; 4]) -> Matrix3 {
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let [w, x, y, z] = q.map(|v| v / n);
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

/// Unit quaternion of ZXZ angles: `q(psi about z) * q(theta about x) * q(phi about z)`.
#[must_use]
pub fn zxz_to_quaternion(zxz: [f64; 3]) -> [f64; 4] {
    let [phi, theta, psi] = zxz;
    // q = qz(psi) qx(theta) qz(phi); closed form of the product
    let (st, ct) = (0.5 * theta).sin_cos();
    let (sp, cp) = (0.5 * (phi + psi)).sin_cos();
    let (sm, cm) = (0.5 * (phi - psi)).sin_cos();
    let q = [ct * cp, st * cm, -st * sm, ct * sp];
    if q[0] < 0.0 {
        q.map(|v| -v)
    } else {
        q
    }
}

/// Product `a * b` of quaternions `[w, x, y, z]` (rotation `b` first, then `a`).
#[must_use]
pub fn quaternion_mul(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    [
        a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
        a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
        a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
        a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0],
    ]
}

/// ZXZ radians of a unit quaternion.
#[must_use]
pub fn quaternion_to_zxz(q: [f64; 4]) -> [f64; 3] {
    matrix_to_zxz(&quaternion_to_matrix(q))
}

/// Geodesic distance on SO(3) (the angle of `a^-1 b`, radians, in `[0, pi]`) between
/// unit quaternions; `q` and `-q` are the same rotation.
#[must_use]
pub fn quaternion_distance(a: [f64; 4], b: [f64; 4]) -> f64 {
    let d = (a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]).abs();
    2.0 * d.min(1.0).acos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matmul(a: &Matrix3, b: &Matrix3) -> Matrix3 {
        let mut c = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
            }
        }
        c
    }

    fn rz(a: f64) -> Matrix3 {
        let (s, c) = a.sin_cos();
        [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    }

    fn rx(a: f64) -> Matrix3 {
        let (s, c) = a.sin_cos();
        [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
    }

    #[test]
    fn matrix_is_the_documented_product() {
        let zxz = [0.3, 1.1, -2.0];
        let want = matmul(&rz(zxz[2]), &matmul(&rx(zxz[1]), &rz(zxz[0])));
        let got = zxz_to_matrix(zxz);
        for i in 0..3 {
            for j in 0..3 {
                assert!((want[i][j] - got[i][j]).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn quaternion_matches_matrix() {
        let zxz = [0.7, 2.2, 4.0];
        let a = quaternion_to_matrix(zxz_to_quaternion(zxz));
        let b = zxz_to_matrix(zxz);
        for i in 0..3 {
            for j in 0..3 {
                assert!((a[i][j] - b[i][j]).abs() < 1e-14);
            }
        }
    }
}
