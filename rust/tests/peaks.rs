//! Integration tests of the peaks core (no Python): the tiled picker must pick exactly
//! what a brute-force loop (global argmax with numpy tie rules, then remove a sphere)
//! picks, on random maps with ties, masks, borders and cutoffs.

use _rust::peaks::{find_peaks, AngleMap, Mask, PeakOptions, Peaks};
use ndarray::{Array3, ArrayView3};

/// Small deterministic generator (xorshift64*), so the tests need no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The reference: a working copy with removed voxels set to -inf, argmax = first max.
fn brute(
    scores: ArrayView3<'_, f32>,
    mask: Option<ArrayView3<'_, f32>>,
    angles: Option<ArrayView3<'_, i32>>,
    opts: &PeakOptions,
) -> Peaks {
    let (nz, ny, nx) = scores.dim();
    let mut work = scores.to_owned();
    for ((z, y, x), v) in work.indexed_iter_mut() {
        let b = opts.border_vox;
        let inside = z >= b && z + b < nz && y >= b && y + b < ny && x >= b && x + b < nx;
        let masked = mask.is_some_and(|m| m[[z, y, x]] <= 0.0);
        if v.is_nan() || !inside || masked {
            *v = f32::NEG_INFINITY;
        }
    }
    let mut out = Peaks::default();
    let r2 = opts.exclusion_radius_vox * opts.exclusion_radius_vox;
    while out.scores.len() < opts.n_peaks {
        let mut best = f32::NEG_INFINITY;
        let mut arg = None;
        for (i, &v) in work.iter().enumerate() {
            if arg.is_none() || v > best {
                best = v;
                arg = Some(i);
            }
        }
        let Some(i) = arg else { break };
        if best == f32::NEG_INFINITY || opts.cutoff.is_some_and(|c| f64::from(best) <= c) {
            break;
        }
        let (pz, py, px) = (i / (ny * nx), (i / nx) % ny, i % nx);
        out.positions_zyx.push([pz as i64, py as i64, px as i64]);
        out.scores.push(best);
        out.angle_indices
            .push(angles.map_or(-1, |a| i64::from(a[[pz, py, px]])));
        for ((z, y, x), v) in work.indexed_iter_mut() {
            let d2 = (z as i64 - pz as i64).pow(2)
                + (y as i64 - py as i64).pow(2)
                + (x as i64 - px as i64).pow(2);
            if d2 as f64 <= r2 {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    out
}

#[test]
fn matches_brute_force_on_random_maps() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..120 {
        let shape = (
            1 + (rng.next() % 20) as usize,
            1 + (rng.next() % 24) as usize,
            1 + (rng.next() % 40) as usize,
        );
        let levels = [0u64, 3, 16][case % 3]; // 0 = continuous, else quantised (ties)
        let scores = Array3::from_shape_fn(shape, |_| {
            let u = rng.unit();
            if levels == 0 {
                u
            } else {
                (u * levels as f32).floor() / levels as f32
            }
        });
        let mut scores = scores;
        if case % 5 == 0 {
            for v in scores.iter_mut() {
                if rng.next() % 17 == 0 {
                    *v = f32::NAN;
                } else if rng.next() % 19 == 0 {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        let mask = (case % 4 == 1)
            .then(|| Array3::from_shape_fn(shape, |_| if rng.next() % 3 == 0 { 0.0 } else { 1.0 }));
        let angles = Array3::from_shape_fn(shape, |_| (rng.next() % 1000) as i32);
        let opts = PeakOptions {
            n_peaks: 1 + (rng.next() % 60) as usize,
            exclusion_radius_vox: [0.0, 1.0, 1.5, 2.9, 4.0, 6.3][case % 6],
            cutoff: (case % 7 == 3).then_some(0.4),
            border_vox: [0usize, 0, 1, 3][case % 4],
        };
        // The same mask as f32, u8 and i8 must give the same picks.
        let mask_u8 = mask.as_ref().map(|m| m.mapv(|v| v as u8));
        let mask_i8 = mask
            .as_ref()
            .map(|m| m.mapv(|v| if v > 0.0 { 1i8 } else { -128 }));
        for alt in [
            mask_u8.as_ref().map(|m| Mask::U8(m.view())),
            mask_i8.as_ref().map(|m| Mask::I8(m.view())),
        ]
        .into_iter()
        .flatten()
        {
            let got = find_peaks(scores.view(), Some(alt), AngleMap::None, &opts).unwrap();
            let want = brute(scores.view(), mask.as_ref().map(|m| m.view()), None, &opts);
            assert_eq!(got, want, "case {case} with an integer mask");
        }
        let got = find_peaks(
            scores.view(),
            mask.as_ref().map(|m| Mask::F32(m.view())),
            AngleMap::I32(angles.view()),
            &opts,
        )
        .unwrap();
        let want = brute(
            scores.view(),
            mask.as_ref().map(|m| m.view()),
            Some(angles.view()),
            &opts,
        );
        assert_eq!(got, want, "case {case} shape {shape:?} opts {opts:?}");
    }
}

#[test]
fn float_angle_map_and_no_angle_map() {
    let scores = Array3::from_shape_fn((4, 5, 6), |(z, y, x)| (z * 30 + y * 6 + x) as f32);
    let angf = scores.mapv(|v| v + 0.2);
    let opts = PeakOptions {
        n_peaks: 3,
        exclusion_radius_vox: 1.0,
        cutoff: None,
        border_vox: 0,
    };
    let with = find_peaks(scores.view(), None, AngleMap::F32(angf.view()), &opts).unwrap();
    assert_eq!(with.positions_zyx[0], [3, 4, 5]);
    assert_eq!(with.angle_indices[0], 119);
    let without = find_peaks(scores.view(), None, AngleMap::None, &opts).unwrap();
    assert_eq!(without.angle_indices, vec![-1, -1, -1]);
    assert_eq!(without.positions_zyx, with.positions_zyx);
}

#[test]
fn rejects_bad_arguments() {
    let scores = Array3::<f32>::zeros((3, 3, 3));
    let mask = Array3::<f32>::zeros((3, 3, 2));
    let mut opts = PeakOptions {
        n_peaks: 1,
        exclusion_radius_vox: -1.0,
        cutoff: None,
        border_vox: 0,
    };
    assert!(find_peaks(scores.view(), None, AngleMap::None, &opts).is_err());
    opts.exclusion_radius_vox = 1.0;
    assert!(find_peaks(
        scores.view(),
        Some(Mask::F32(mask.view())),
        AngleMap::None,
        &opts
    )
    .is_err());
    let t = scores.view().reversed_axes();
    assert!(find_peaks(t, None, AngleMap::None, &opts).is_err());
}

#[test]
fn huge_radius_removes_everything_after_the_first_pick() {
    let scores = Array3::from_shape_fn((5, 6, 7), |(z, y, x)| ((z * 7 + y * 3 + x) % 11) as f32);
    for r in [1e6, 1e300, f64::from(f32::MAX)] {
        let opts = PeakOptions {
            n_peaks: 10,
            exclusion_radius_vox: r,
            cutoff: None,
            border_vox: 0,
        };
        let got = find_peaks(scores.view(), None, AngleMap::None, &opts).unwrap();
        assert_eq!(got, brute(scores.view(), None, None, &opts));
        assert_eq!(got.scores.len(), 1);
    }
}
