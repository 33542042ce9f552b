//! The CPU backend kernels against direct (scalar, obvious) implementations.

use _rust::kernels::{
    conj_multiply, conj_multiply_pair, fold_noise, fold_rotations, local_denominators,
    normalise_under_mask, rotate_bspline, zero_outside_corner, AngleIndex, Normalisation,
    RoiTotals, RunningMapsMut,
};
use _rust::rowfft::{RowForm, RowInverse};

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn fold_equals_a_scalar_loop_with_row_padding_and_noise() {
    // short rows (no whole 16-voxel group), and long rows over many rotations: groups
    // with and without a new maximum, group remainders, settled and unsettled maxima
    for (rows, row_len, stride, b) in [(37, 11, 12, 5), (13, 53, 54, 40), (6, 32, 34, 64)] {
        fold_case(rows, row_len, stride, b);
    }
}

fn fold_case(rows: usize, row_len: usize, stride: usize, b: usize) {
    let nvox = rows * row_len;
    let corr = values(b * rows * stride, 1);
    let noise = values(b * rows * stride, 2);
    let inv: Vec<f32> = values(nvox, 3).iter().map(|v| 1.5 + v).collect();
    let mut best = vec![f32::NEG_INFINITY; nvox];
    let mut ang = vec![-1i32; nvox];
    let mut s1 = vec![0f64; nvox];
    let mut s2 = vec![0f64; nvox];
    let mut nz = vec![f32::NEG_INFINITY; nvox];
    // two calls: batches continue the indices
    for (start, end) in [(0, 2), (2, b)] {
        let plane = rows * stride;
        fold_rotations(
            RunningMapsMut {
                scores: &mut best,
                angles: &mut ang,
                score_sum: Some(&mut s1),
                score_sq_sum: Some(&mut s2),
                noise_scores: Some(&mut nz),
                roi: None,
                angle_high: None,
            },
            &corr[start * plane..end * plane],
            Some(&noise[start * plane..end * plane]),
            &Normalisation::Inverse(&inv),
            start as i32,
            row_len,
            stride,
            RowForm::Real,
        )
        .unwrap();
    }
    for v in 0..nvox {
        let (r, x) = (v / row_len, v % row_len);
        let mut eb = f32::NEG_INFINITY;
        let mut ea = -1;
        let (mut e1, mut e2, mut en) = (0f64, 0f64, f32::NEG_INFINITY);
        for i in 0..b {
            let s = corr[i * rows * stride + r * stride + x] * inv[v];
            if s > eb {
                eb = s;
                ea = i as i32;
            }
            e1 += f64::from(s);
            e2 += f64::from(s) * f64::from(s);
            en = en.max(noise[i * rows * stride + r * stride + x] * inv[v]);
        }
        assert_eq!(best[v], eb);
        assert_eq!(ang[v], ea);
        assert_eq!(s1[v], e1);
        assert_eq!(s2[v], e2);
        assert_eq!(nz[v], en);
    }
}

#[test]
fn fold_local_normalisation_and_ties() {
    let nvox = 40;
    let b = 3;
    // identical correlations: ties keep the first rotation
    let one = values(nvox, 7);
    let corr: Vec<f32> = (0..b).flat_map(|_| one.clone()).collect();
    let sum_v: Vec<f32> = values(b * nvox, 8).iter().map(|v| v * 10.0).collect();
    // E[V^2] large enough for a real variance at most voxels, 0 (floor) at voxel 0
    let mut sum_v2: Vec<f32> = values(b * nvox, 9)
        .iter()
        .map(|v| 200.0 + 50.0 * v)
        .collect();
    for i in 0..b {
        sum_v2[i * nvox] = sum_v[i * nvox] * sum_v[i * nvox] / 100.0;
    }
    let n_m = [100.0f32, 100.0, 100.0];
    let mut best = vec![f32::NEG_INFINITY; nvox];
    let mut ang = vec![-1i32; nvox];
    let mut s1 = vec![0f32; nvox];
    let mut s2 = vec![0f32; nvox];
    fold_rotations(
        RunningMapsMut {
            scores: &mut best,
            angles: &mut ang,
            score_sum: Some(&mut s1),
            score_sq_sum: Some(&mut s2),
            noise_scores: None,
            roi: None,
            angle_high: None,
        },
        &corr,
        None,
        &Normalisation::Local {
            sum_v: &sum_v,
            sum_v2: &sum_v2,
            n_m: &n_m,
            floor_rel: 1e-4,
        },
        10,
        nvox,
        nvox,
        RowForm::Real,
    )
    .unwrap();
    for v in 0..nvox {
        let mut eb = f32::NEG_INFINITY;
        let mut ea = -1;
        for i in 0..b {
            let m = sum_v[i * nvox + v] / 100.0;
            let e2 = sum_v2[i * nvox + v] / 100.0;
            let var = e2 - m * m;
            let sd = if var > (e2 + 1.0) * 1e-4 {
                var.sqrt()
            } else {
                1.0
            };
            let s = corr[i * nvox + v] / (sd * 100.0);
            if s > eb {
                eb = s;
                ea = 10 + i as i32;
            }
        }
        assert_eq!(best[v], eb, "voxel {v}");
        assert_eq!(ang[v], ea, "voxel {v}");
    }
    // voxel 0: variance 0 -> sigma 1 -> score corr / n_m
    assert_eq!(best[0], one[0] / 100.0);
}

/// The local denominators written in place equal the scalar formula, the fold with
/// them equals the fold with `Local` bit for bit, and the noise-only fold equals the
/// noise maxima of the combined fold; padded rows keep their padding untouched.
#[test]
fn denominators_and_noise_fold_match_the_combined_fold() {
    let (rows, row_len, stride, b) = (23, 7, 8, 3);
    let nvox = rows * row_len;
    let plane = rows * stride;
    let corr = values(b * plane, 21);
    let noise = values(b * plane, 22);
    let sum_v: Vec<f32> = values(b * plane, 23).iter().map(|v| v * 10.0).collect();
    let sum_v2: Vec<f32> = values(b * plane, 24)
        .iter()
        .map(|v| 200.0 + 50.0 * v)
        .collect();
    let n_m = [100.0f32, 90.0, 110.0];
    let fold = |norm: &Normalisation<'_>, with_noise: bool| {
        let mut best = vec![f32::NEG_INFINITY; nvox];
        let mut ang = vec![-1i32; nvox];
        let mut s1 = vec![0f32; nvox];
        let mut s2 = vec![0f32; nvox];
        let mut nz = vec![f32::NEG_INFINITY; nvox];
        fold_rotations(
            RunningMapsMut {
                scores: &mut best,
                angles: &mut ang,
                score_sum: Some(&mut s1),
                score_sq_sum: Some(&mut s2),
                noise_scores: if with_noise { Some(&mut nz) } else { None },
                roi: None,
                angle_high: None,
            },
            &corr,
            if with_noise { Some(&noise) } else { None },
            norm,
            0,
            row_len,
            stride,
            RowForm::Real,
        )
        .unwrap();
        (best, ang, s1, s2, nz)
    };
    let local = Normalisation::Local {
        sum_v: &sum_v,
        sum_v2: &sum_v2,
        n_m: &n_m,
        floor_rel: 1e-4,
    };
    let want = fold(&local, true);
    let mut den = sum_v.clone();
    local_denominators(
        &mut den,
        &sum_v2,
        &n_m,
        1e-4,
        row_len,
        stride,
        RowForm::Real,
    )
    .unwrap();
    for (i, &nm) in n_m.iter().enumerate() {
        for r in 0..rows {
            for x in 0..stride {
                let k = i * plane + r * stride + x;
                if x >= row_len {
                    assert_eq!(den[k], sum_v[k], "padding changed");
                    continue;
                }
                let m = sum_v[k] / nm;
                let e2 = sum_v2[k] / nm;
                let var = e2 - m * m;
                let sd = if var > (e2 + 1.0) * 1e-4 {
                    var.sqrt()
                } else {
                    1.0
                };
                assert_eq!(den[k], sd * nm);
            }
        }
    }
    let got = fold(&Normalisation::Denominator(&den), false);
    assert_eq!(
        (&got.0, &got.1, &got.2, &got.3),
        (&want.0, &want.1, &want.2, &want.3)
    );
    for norm in [Normalisation::Denominator(&den), local] {
        let mut nz = vec![f32::NEG_INFINITY; nvox];
        fold_noise(&mut nz, &noise, &norm, row_len, stride, RowForm::Real).unwrap();
        assert_eq!(nz, want.4);
    }
    assert!(local_denominators(
        &mut den,
        &sum_v2[1..],
        &n_m,
        1e-4,
        row_len,
        stride,
        RowForm::Real
    )
    .is_err());
    let mut nz = vec![0f32; nvox];
    let short = Normalisation::Denominator(&den[1..]);
    assert!(fold_noise(&mut nz, &noise, &short, row_len, stride, RowForm::Real).is_err());
}

/// Sums not kept per voxel come back as totals over the region of interest that
/// equal the per-voxel sums reduced over it (f64 oracle), with identical maxima.
/// A per-voxel region of interest packed as the fold takes it (LSB first).
fn pack_bits(roi: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8; roi.len().div_ceil(8)];
    for (v, r) in roi.iter().enumerate() {
        bits[v / 8] |= u8::from(*r != 0) << (v % 8);
    }
    bits
}

#[test]
fn roi_totals_equal_the_reduced_per_voxel_sums() {
    // rows that do not start on a byte of the bit map, and rows that do
    for (rows, row_len, stride) in [(41, 9, 10), (12, 24, 26)] {
        roi_case(rows, row_len, stride);
    }
}

fn roi_case(rows: usize, row_len: usize, stride: usize) {
    let b = 4;
    let nvox = rows * row_len;
    let corr = values(b * rows * stride, 31);
    let inv: Vec<f32> = values(nvox, 32).iter().map(|v| 1.5 + v).collect();
    let roi: Vec<u8> = values(nvox, 33)
        .iter()
        .map(|v| u8::from(*v > -0.3))
        .collect();
    let bits = pack_bits(&roi);
    let run = |keep1: bool, keep2: bool| {
        let mut best = vec![f32::NEG_INFINITY; nvox];
        let mut ang = vec![-1i32; nvox];
        let mut s1 = vec![0f64; nvox];
        let mut s2 = vec![0f64; nvox];
        let mut totals = (0f64, 0f64);
        for (start, end) in [(0, 1), (1, 4)] {
            let plane = rows * stride;
            let t = fold_rotations(
                RunningMapsMut {
                    scores: &mut best,
                    angles: &mut ang,
                    score_sum: if keep1 { Some(&mut s1) } else { None },
                    score_sq_sum: if keep2 { Some(&mut s2) } else { None },
                    noise_scores: None,
                    roi: Some(&bits),
                    angle_high: None,
                },
                &corr[start * plane..end * plane],
                None,
                &Normalisation::Inverse(&inv),
                start as i32,
                row_len,
                stride,
                RowForm::Real,
            )
            .unwrap();
            assert_eq!(t.len(), end - start);
            for t in t {
                totals.0 += t.score_sum;
                totals.1 += t.score_sq_sum;
            }
        }
        (best, ang, s1, s2, totals)
    };
    let full = run(true, true);
    assert_eq!(full.4, (0.0, 0.0));
    let reduce = |a: &[f64]| -> f64 {
        a.iter()
            .zip(&roi)
            .filter(|(_, r)| **r != 0)
            .map(|(v, _)| v)
            .sum()
    };
    let (want1, want2) = (reduce(&full.2), reduce(&full.3));
    for (keep1, keep2) in [(false, false), (true, false), (false, true)] {
        let got = run(keep1, keep2);
        assert_eq!((&got.0, &got.1), (&full.0, &full.1));
        if keep1 {
            assert_eq!(got.2, full.2);
            assert_eq!(got.4 .0, 0.0);
        } else {
            assert!((got.4 .0 - want1).abs() <= 1e-9 * want1.abs().max(1.0));
        }
        if keep2 {
            assert_eq!(got.3, full.3);
            assert_eq!(got.4 .1, 0.0);
        } else {
            // squares in f32, totalled in f64 per block of 64 voxels: a few f32 ulps
            assert!((got.4 .1 - want2).abs() <= 1e-6 * want2);
        }
    }
    // a sum not kept per voxel needs the region of interest
    let mut best = vec![0f32; nvox];
    let mut ang = vec![0i32; nvox];
    let r = fold_rotations::<f64, i32>(
        RunningMapsMut {
            scores: &mut best,
            angles: &mut ang,
            score_sum: None,
            score_sq_sum: None,
            noise_scores: None,
            roi: None,
            angle_high: None,
        },
        &corr[..rows * stride],
        None,
        &Normalisation::Inverse(&inv),
        0,
        row_len,
        stride,
        RowForm::Real,
    );
    assert!(r.is_err());
}

#[test]
fn fold_rejects_inconsistent_sizes() {
    let mut best = vec![0f32; 10];
    let mut ang = vec![0i32; 10];
    let mut s1 = vec![0f32; 10];
    let mut s2 = vec![0f32; 9];
    let inv = vec![1f32; 10];
    let r = fold_rotations(
        RunningMapsMut {
            scores: &mut best,
            angles: &mut ang,
            score_sum: Some(&mut s1),
            score_sq_sum: Some(&mut s2),
            noise_scores: None,
            roi: None,
            angle_high: None,
        },
        &[0f32; 10],
        None,
        &Normalisation::Inverse(&inv),
        0,
        10,
        10,
        RowForm::Real,
    );
    assert!(r.is_err());
}

/// Direct evaluation of the sampling rule (tensor-product cubic B-spline, zero
/// outside), written from the definition `b(t) = (2 - |t|)^3 / 6` etc.
fn bspline(t: f64) -> f64 {
    let a = t.abs();
    if a < 1.0 {
        2.0 / 3.0 - a * a + a * a * a / 2.0
    } else if a < 2.0 {
        (2.0 - a).powi(3) / 6.0
    } else {
        0.0
    }
}

#[test]
fn rotation_equals_the_definition() {
    let (nz, ny, nx) = (6usize, 7usize, 5usize);
    let c = values(nz * ny * nx, 11);
    let (a, b) = (0.7f64, 0.4f64);
    // rotation about x then z (any orthonormal matrix will do)
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, a.cos(), -a.sin()],
        [0.0, a.sin(), a.cos()],
    ];
    let rz = [
        [b.cos(), -b.sin(), 0.0],
        [b.sin(), b.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let mut m = [[0f64; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| rz[i][k] * rx[k][j]).sum();
        }
    }
    let mut out = vec![0f32; c.len()];
    rotate_bspline(&c, [nz, ny, nx], &m, &mut out).unwrap();
    let ctr = [(nx / 2) as f64, (ny / 2) as f64, (nz / 2) as f64]; // x, y, z
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let d = [x as f64 - ctr[0], y as f64 - ctr[1], z as f64 - ctr[2]];
                // p_i = sum_j M[j][i] d_j + c_i  (M.T d + c)
                let p: Vec<f64> = (0..3)
                    .map(|i| (0..3).map(|j| m[j][i] * d[j]).sum::<f64>() + ctr[i])
                    .collect();
                let mut want = 0.0;
                for kz in 0..nz {
                    for ky in 0..ny {
                        for kx in 0..nx {
                            want += f64::from(c[(kz * ny + ky) * nx + kx])
                                * bspline(p[2] - kz as f64)
                                * bspline(p[1] - ky as f64)
                                * bspline(p[0] - kx as f64);
                        }
                    }
                }
                let got = out[(z * ny + y) * nx + x];
                assert!(
                    (f64::from(got) - want).abs() < 1e-6,
                    "({z}, {y}, {x}): {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn conj_multiply_is_the_complex_product() {
    let n = 3 * (1 << 14) + 6; // several work chunks and a ragged end
    let a0 = values(n, 21);
    let b = values(n, 22);
    let mut a = a0.clone();
    conj_multiply(&mut a, &b).unwrap();
    for k in (0..n).step_by(2) {
        // (ar - i ai)(br + i bi)
        let (ar, ai, br, bi) = (a0[k], a0[k + 1], b[k], b[k + 1]);
        assert_eq!(a[k], ar * br + ai * bi);
        assert_eq!(a[k + 1], ar * bi - ai * br);
    }
    assert!(conj_multiply(&mut a, &b[..n - 2]).is_err());
}

#[test]
fn conj_multiply_pair_equals_two_conj_multiplies() {
    let n = 2 * 5000 + 2;
    let a = values(n, 41);
    let (b, c) = (values(n, 42), values(n, 43));
    let mut want_b = a.clone();
    conj_multiply(&mut want_b, &b).unwrap();
    let mut want_c = a.clone();
    conj_multiply(&mut want_c, &c).unwrap();
    let mut got_a = a.clone();
    let mut got_out = vec![0f32; n];
    conj_multiply_pair(&mut got_a, &mut got_out, &b, &c).unwrap();
    assert_eq!(got_a, want_b);
    assert_eq!(got_out, want_c);
    assert!(conj_multiply_pair(&mut got_a, &mut got_out, &b, &c[1..]).is_err());
}

#[test]
fn zero_outside_corner_keeps_only_the_corner_rows() {
    let (items, planes, rows, row_len, n) = (2, 5, 4, 3, 2);
    let mut buf = vec![1f32; items * planes * rows * row_len];
    zero_outside_corner(&mut buf, planes, rows, row_len, n).unwrap();
    for (i, v) in buf.iter().enumerate() {
        let y = i / row_len % rows;
        let z = i / (row_len * rows) % planes;
        assert_eq!(*v, if z < n && y < n { 1.0 } else { 0.0 }, "value {i}");
    }
    assert!(zero_outside_corner(&mut buf[1..], planes, rows, row_len, n).is_err());
}

#[test]
fn u16_angle_map_folds_like_i32_and_refuses_indices_it_cannot_hold() {
    let (rows, row_len, b) = (9, 40, 30);
    let nvox = rows * row_len;
    let corr = values(b * nvox, 7);
    let inv: Vec<f32> = values(nvox, 8).iter().map(|v| 1.5 + v).collect();
    let first = 65_000; // near the top of the u16 range
    let mut best32 = vec![f32::NEG_INFINITY; nvox];
    let mut ang32 = vec![-1i32; nvox];
    let mut best16 = vec![f32::NEG_INFINITY; nvox];
    let mut ang16 = vec![u16::MAX; nvox];
    let roi = vec![0xffu8; nvox.div_ceil(8)];
    let t32 = fold_all_roi(&mut best32, &mut ang32, &corr, &inv, &roi, first, row_len).unwrap();
    let t16 = fold_all_roi(&mut best16, &mut ang16, &corr, &inv, &roi, first, row_len).unwrap();
    assert_eq!(t32, t16);
    assert_eq!(best32, best16);
    let widened: Vec<i32> = ang16.iter().map(|&a| i32::from(a)).collect();
    assert_eq!(ang32, widened);
    assert!(ang32.iter().all(|&a| a >= first));
    // 65535 is the "none yet" mark: the last index a u16 map takes is 65534
    let err = fold_all_roi(
        &mut best16,
        &mut ang16,
        &corr[..2 * nvox],
        &inv,
        &roi,
        65_534,
        row_len,
    );
    assert!(err.is_err());
}

/// Fold `corr` (packed rows) with an inverse normalisation, the sums totalled over
/// `roi` (bits).
fn fold_all_roi<A: AngleIndex>(
    best: &mut [f32],
    ang: &mut [A],
    corr: &[f32],
    inv: &[f32],
    roi: &[u8],
    first: i32,
    row_len: usize,
) -> _rust::Result<Vec<RoiTotals>> {
    fold_rotations::<f32, A>(
        RunningMapsMut {
            scores: best,
            angles: ang,
            score_sum: None,
            score_sq_sum: None,
            noise_scores: None,
            roi: Some(roi),
            angle_high: None,
        },
        corr,
        None,
        &Normalisation::Inverse(inv),
        first,
        row_len,
        row_len,
        RowForm::Real,
    )
}

#[test]
fn normalise_under_mask_matches_the_f64_formula() {
    let n = 5 * 5 * 5 + 3; // not a multiple of the lane count
    let t: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 4.5) * 0.3).collect();
    let w: Vec<f32> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                0.0
            } else {
                (i % 4) as f32 / 3.0
            }
        })
        .collect();
    let mut out = vec![0f32; n];
    normalise_under_mask(&t, &w, &mut out).unwrap();
    // two-pass float64 reference
    let n_m: f64 = w.iter().map(|&v| f64::from(v)).sum();
    let mu: f64 = t
        .iter()
        .zip(&w)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum::<f64>()
        / n_m;
    let var: f64 = t
        .iter()
        .zip(&w)
        .map(|(&a, &b)| f64::from(b) * (f64::from(a) - mu).powi(2))
        .sum::<f64>()
        / n_m;
    for ((o, &a), &b) in out.iter().zip(&t).zip(&w) {
        let want = f64::from(b) * (f64::from(a) - mu) / var.sqrt();
        assert!((f64::from(*o) - want).abs() < 1e-5, "{o} vs {want}");
    }
    // normalised: zero mean and unit variance under the mask
    let m1: f64 = out.iter().map(|&v| f64::from(v)).sum::<f64>() / n_m;
    assert!(m1.abs() < 1e-6);
    // flat template and empty mask give zeros; lengths must agree
    normalise_under_mask(&vec![2.0; n], &w, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 0.0));
    out.fill(1.0);
    normalise_under_mask(&t, &vec![0.0; n], &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 0.0));
    assert!(normalise_under_mask(&t, &w[1..], &mut out).is_err());
}

/// A u16 angle map with high bit planes folds to the same indices as an i32 map, over
/// several chunks (rows not a multiple of 8 voxels, so groups straddle plane bytes)
/// and index ranges on both sides of each 65,536 boundary.
#[test]
fn fold_with_high_angle_bits_equals_the_i32_fold() {
    let (rows, row_len, stride): (usize, usize, usize) = (700, 37, 38); // 25,900 voxels: two chunks
    let nvox = rows * row_len;
    let bytes = nvox.div_ceil(8);
    let inv = vec![1.0f32; nvox];
    let planes = 2; // indices up to 2^18 - 2
    let mut best32 = vec![f32::NEG_INFINITY; nvox];
    let mut ang32 = vec![-1i32; nvox];
    let mut best16 = vec![f32::NEG_INFINITY; nvox];
    let mut ang16 = vec![u16::MAX; nvox];
    let mut high = vec![0xFFu8; planes * bytes];
    let roi = vec![0xFFu8; bytes];
    let plane = rows * stride;
    // batches at indices 65,534.., 131,070.. and 200,000..: maxima move in later
    // batches too (the values grow with the batch)
    for (k, first) in [65_534i32, 131_070, 200_000].into_iter().enumerate() {
        let b = 4;
        let corr: Vec<f32> = values(b * plane, 10 + k as u64)
            .iter()
            .map(|v| v + k as f32 * 0.5)
            .collect();
        fold_rotations(
            RunningMapsMut::<f32, _> {
                scores: &mut best32,
                angles: &mut ang32,
                score_sum: None,
                score_sq_sum: None,
                noise_scores: None,
                roi: Some(&roi),
                angle_high: None,
            },
            &corr,
            None,
            &Normalisation::Inverse(&inv),
            first,
            row_len,
            stride,
            RowForm::Real,
        )
        .unwrap();
        fold_rotations(
            RunningMapsMut::<f32, _> {
                scores: &mut best16,
                angles: &mut ang16,
                score_sum: None,
                score_sq_sum: None,
                noise_scores: None,
                roi: Some(&roi),
                angle_high: Some(&mut high),
            },
            &corr,
            None,
            &Normalisation::Inverse(&inv),
            first,
            row_len,
            stride,
            RowForm::Real,
        )
        .unwrap();
    }
    assert_eq!(best16, best32);
    let mut seen = [false; 4];
    for v in 0..nvox {
        let mut index = i64::from(ang16[v]);
        for j in 0..planes {
            index |= i64::from((high[j * bytes + v / 8] >> (v % 8)) & 1) << (16 + j);
        }
        assert_eq!(index, i64::from(ang32[v]), "voxel {v}");
        seen[(index >> 16) as usize] = true;
    }
    // high bits 2 (plane 0 cleared) and 3 (both planes set) both occur
    assert!(seen[2] && seen[3], "index ranges seen: {seen:?}");
    // an index beyond the planes is refused
    let corr = values(plane, 99);
    let err = fold_rotations(
        RunningMapsMut::<f32, _> {
            scores: &mut best16,
            angles: &mut ang16,
            score_sum: None,
            score_sq_sum: None,
            noise_scores: None,
            roi: Some(&roi),
            angle_high: Some(&mut high),
        },
        &corr,
        None,
        &Normalisation::Inverse(&inv),
        (1 << 18) - 1,
        row_len,
        stride,
        RowForm::Real,
    );
    assert!(err.is_err());
}

/// The unnormalised inverse real DFT of the half spectrum `x` (interleaved), in `f64`
/// with the imaginary parts of the zero and (even `n`) Nyquist terms ignored.
fn direct_inverse(x: &[f32], n: usize) -> Vec<f64> {
    let k_max = n / 2;
    (0..n)
        .map(|j| {
            let mut v = f64::from(x[0]);
            for k in 1..=k_max {
                let (re, im) = (f64::from(x[2 * k]), f64::from(x[2 * k + 1]));
                let a = 2.0 * std::f64::consts::PI * (k * j) as f64 / n as f64;
                if 2 * k == n {
                    v += re * a.cos(); // Nyquist: its own conjugate
                } else {
                    v += 2.0 * (re * a.cos() - im * a.sin());
                }
            }
            v
        })
        .collect()
}

#[test]
fn row_inverse_equals_the_direct_dft() {
    // even lengths (power of two, odd half, prime half, tiny) and odd ones
    for n in [
        1, 2, 3, 4, 5, 6, 8, 9, 14, 16, 22, 31, 64, 96, 250, 256, 258, 262,
    ] {
        let t = RowInverse::new(n).unwrap();
        assert_eq!(t.spectrum_floats(), 2 * (n / 2 + 1));
        // nonzero imaginary parts everywhere, DC and Nyquist too: they must be ignored
        let x = values(t.spectrum_floats(), n as u64);
        let mut work = t.scratch();
        let mut out = vec![f32::NAN; n + 3];
        t.inverse(&x, &mut work, &mut out);
        let want = direct_inverse(&x, n);
        let scale = (n as f64).max(1.0);
        for (j, (&got, &w)) in out.iter().zip(&want).enumerate() {
            let err = (f64::from(got) - w).abs();
            assert!(err <= 1e-5 * scale, "n {n} j {j}: {got} vs {w}");
        }
        assert!(
            out[n..].iter().all(|v| v.is_nan()),
            "n {n}: wrote past the row"
        );
        // the same again with the same work space: nothing carried over
        let mut again = vec![0f32; n];
        t.inverse(&x, &mut work, &mut again);
        assert_eq!(&out[..n], &again[..]);
    }
    assert!(RowInverse::new(0).is_err());
}

#[test]
fn half_spectrum_fold_equals_the_fold_of_the_transformed_rows() {
    for row_len in [16, 35, 64] {
        let rows = 9;
        let t = RowInverse::new(row_len).unwrap();
        let stride = t.spectrum_floats();
        let b = 3;
        let nvox = rows * row_len;
        let spectra = values(b * rows * stride, 7);
        let noise_spectra = values(b * rows * stride, 8);
        // the rows transformed one by one, in the padded real layout
        let transform = |s: &[f32]| {
            let mut real = vec![0f32; s.len()];
            let mut work = t.scratch();
            for (src, dst) in s.chunks(stride).zip(real.chunks_mut(stride)) {
                t.inverse(src, &mut work, dst);
            }
            real
        };
        let (corr, noise) = (transform(&spectra), transform(&noise_spectra));
        let inv: Vec<f32> = values(nvox, 9).iter().map(|v| 0.1 + v.abs()).collect();
        let roi: Vec<u8> = (0..nvox).map(|v| u8::from(v % 7 != 3)).collect();
        let roi = pack_bits(&roi);
        let run = |c: &[f32], nc: &[f32], form: RowForm| {
            let mut best = vec![f32::NEG_INFINITY; nvox];
            let mut ang = vec![-1i32; nvox];
            let mut nz = vec![f32::NEG_INFINITY; nvox];
            let totals = fold_rotations::<f64, i32>(
                RunningMapsMut {
                    scores: &mut best,
                    angles: &mut ang,
                    score_sum: None,
                    score_sq_sum: None,
                    noise_scores: Some(&mut nz),
                    roi: Some(&roi),
                    angle_high: None,
                },
                c,
                Some(nc),
                &Normalisation::Inverse(&inv),
                4,
                row_len,
                stride,
                form,
            )
            .unwrap();
            let mut nz2 = vec![f32::NEG_INFINITY; nvox];
            fold_noise(
                &mut nz2,
                nc,
                &Normalisation::Inverse(&inv),
                row_len,
                stride,
                form,
            )
            .unwrap();
            assert_eq!(nz, nz2);
            (best, ang, nz, totals)
        };
        // bit for bit: the fold transforms each row exactly as RowInverse does
        assert_eq!(
            run(&spectra, &noise_spectra, RowForm::HalfSpectrum),
            run(&corr, &noise, RowForm::Real)
        );
    }
    // a half-spectrum row needs exactly 2 * (row_len / 2 + 1) values
    let mut best = vec![0f32; 32];
    let mut ang = vec![0i32; 32];
    let err = fold_rotations::<f64, i32>(
        RunningMapsMut {
            scores: &mut best,
            angles: &mut ang,
            score_sum: Some(&mut vec![0f64; 32]),
            score_sq_sum: Some(&mut vec![0f64; 32]),
            noise_scores: None,
            roi: None,
            angle_high: None,
        },
        &[0f32; 2 * 20],
        None,
        &Normalisation::Inverse(&[1f32; 32]),
        0,
        16,
        20,
        RowForm::HalfSpectrum,
    );
    assert!(err.is_err());
}

#[test]
fn half_spectrum_denominators_equal_those_of_the_transformed_rows() {
    for row_len in [16, 35] {
        let (rows, b) = (5, 2);
        let t = RowInverse::new(row_len).unwrap();
        let stride = t.spectrum_floats();
        // spectra of positive rows (a masked mean and mean square), so that the
        // variance is not floored everywhere
        let mut work = t.scratch();
        let real_rows = |seed: u64, offset: f32| {
            let mut spec = values(b * rows * stride, seed);
            for row in spec.chunks_mut(stride) {
                row[0] += offset * row_len as f32; // the mean of the row
            }
            spec
        };
        let (s1, s2) = (real_rows(11, 0.0), real_rows(12, 2.0));
        let transform = |s: &[f32], work: &mut _| {
            let mut real = vec![0f32; s.len()];
            for (src, dst) in s.chunks(stride).zip(real.chunks_mut(stride)) {
                t.inverse(src, work, dst);
            }
            real
        };
        let (mut want, r2) = (transform(&s1, &mut work), transform(&s2, &mut work));
        let n_m = [3.5f32, 7.0];
        local_denominators(&mut want, &r2, &n_m, 1e-4, row_len, stride, RowForm::Real).unwrap();
        let mut got = s1.clone();
        local_denominators(
            &mut got,
            &s2,
            &n_m,
            1e-4,
            row_len,
            stride,
            RowForm::HalfSpectrum,
        )
        .unwrap();
        for (g, w) in got.chunks(stride).zip(want.chunks(stride)) {
            assert_eq!(&g[..row_len], &w[..row_len]);
        }
        // a wrong stride for half-spectrum rows
        let mut bad = s1.clone();
        assert!(local_denominators(
            &mut bad[..b * rows * (stride - 2)],
            &s2[..b * rows * (stride - 2)],
            &n_m,
            1e-4,
            row_len,
            stride - 2,
            RowForm::HalfSpectrum
        )
        .is_err());
    }
}
