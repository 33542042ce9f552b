//! Integration tests of the angles core (no Python).

use std::f64::consts::PI;

use _rust::angles::{self, crowther_step_deg, pytom_angle_set, sort_zxz};
use _rust::euler::{
    matrix_to_relion_deg, matrix_to_zxz, relion_deg_to_matrix, relion_deg_to_zxz, zxz_to_matrix,
    zxz_to_relion_deg,
};

/// pytom-match-pick's counts (reference §3.2): (step, total, C2, C6).
const TABLE: &[(f64, usize, usize, usize)] = &[
    (3.0, 576_000, 288_000, 96_840),
    (5.0, 124_416, 62_208, 20_736),
    (6.0, 72_000, 36_000, 12_420),
    (7.0, 50_544, 25_272, 8_424),
    (8.0, 34_560, 17_280, 5_895),
    (10.0, 15_552, 7_776, 2_592),
    (11.0, 14_256, 7_128, 2_376),
    (12.0, 9_000, 4_500, 1_560),
    (12.85, 8_700, 0, 0),
    (13.0, 8_400, 4_200, 1_456),
    (15.0, 4_608, 2_304, 840),
    (16.0, 4_416, 2_208, 805),
    (18.0, 3_840, 1_920, 700),
    (20.0, 1_944, 972, 324),
    (25.0, 1_620, 810, 270),
    (30.0, 576, 288, 108),
    (38.53, 480, 240, 90),
    (50.0, 384, 192, 72),
    (90.0, 48, 24, 12),
];

#[test]
fn pytom_counts_match_reference_table() {
    for &(step, total, c2, c6) in TABLE {
        assert_eq!(pytom_angle_set(step, 1).unwrap().len(), total, "{step}");
        if c2 > 0 {
            assert_eq!(pytom_angle_set(step, 2).unwrap().len(), c2, "{step} C2");
            assert_eq!(pytom_angle_set(step, 6).unwrap().len(), c6, "{step} C6");
        }
    }
}

#[test]
fn nside_table() {
    for (step, nside) in [
        (3.0, 20),
        (5.0, 12),
        (7.0, 9),
        (10.0, 6),
        (12.0, 5),
        (20.0, 3),
        (90.0, 1),
    ] {
        assert_eq!(angles::nside_for_step(step).unwrap(), nside, "{step}");
    }
}

#[test]
fn pytom_set_is_sorted_unique_and_in_range() {
    let set = pytom_angle_set(7.0, 1).unwrap();
    let mut sorted = set.clone();
    sort_zxz(&mut sorted);
    assert_eq!(sorted, set);
    assert!(set.windows(2).all(|w| w[0] != w[1]));
    for [phi, theta, psi] in &set {
        assert!((0.0..2.0 * PI).contains(phi));
        assert!((0.0..PI).contains(theta));
        assert!((0.0..2.0 * PI).contains(psi));
    }
}

#[test]
fn cyclic_reduction_keeps_phi_below_sector() {
    let full = pytom_angle_set(10.0, 1).unwrap();
    let c4 = pytom_angle_set(10.0, 4).unwrap();
    let want: Vec<_> = full.into_iter().filter(|a| a[0] < PI / 2.0).collect();
    assert_eq!(c4, want);
}

#[test]
fn crowther_tutorial() {
    // 300 A ribosome at 13.79 A with a 40 A low-pass gives 7.64 deg and 36,864 rotations.
    let step = crowther_step_deg(300.0, 13.79, Some(40.0)).unwrap();
    assert!((step - 7.639_437).abs() < 1e-5);
    assert_eq!(pytom_angle_set(step, 1).unwrap().len(), 36_864);
    let no_lp = crowther_step_deg(300.0, 13.79, None).unwrap();
    assert!((no_lp - (2.0 * 13.79 / 300.0_f64).to_degrees()).abs() < 1e-12);
    assert!(crowther_step_deg(-1.0, 13.79, None).is_err());
    assert!(crowther_step_deg(300.0, 0.0, None).is_err());
    assert!(crowther_step_deg(300.0, 13.79, Some(f64::NAN)).is_err());
}

#[test]
fn angle_file_round_trip() {
    let dir = std::env::temp_dir().join(format!("tmfast-angles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.txt");
    std::fs::write(&path, "# list\n0.5 0.1 0.2\n0.25,0.3,0.4\n").unwrap();
    let a = angles::read_angle_file(&path).unwrap();
    assert_eq!(a, vec![[0.25, 0.3, 0.4], [0.5, 0.1, 0.2]]);
    let missing = angles::read_angle_file(&dir.join("missing.txt"));
    assert!(matches!(missing, Err(_rust::Error::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn max_abs_diff(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> f64 {
    let mut d: f64 = 0.0;
    for i in 0..3 {
        for j in 0..3 {
            d = d.max((a[i][j] - b[i][j]).abs());
        }
    }
    d
}

/// A deterministic spread of angles (no external RNG crate).
fn grid_angles() -> Vec<[f64; 3]> {
    let mut v = Vec::new();
    for i in 0..13 {
        for j in 0..=12 {
            for k in 0..11 {
                v.push([
                    f64::from(i) * 0.49,
                    f64::from(j) * PI / 12.0,
                    f64::from(k) * 0.61 - 0.3,
                ]);
            }
        }
    }
    v
}

#[test]
fn euler_round_trips_reproduce_the_matrix() {
    for zxz in grid_angles() {
        let m = zxz_to_matrix(zxz);
        assert!(
            max_abs_diff(&zxz_to_matrix(matrix_to_zxz(&m)), &m) < 1e-12,
            "{zxz:?}"
        );
        let rel = zxz_to_relion_deg(zxz);
        assert!(
            max_abs_diff(&relion_deg_to_matrix(rel), &m) < 1e-12,
            "{zxz:?}"
        );
        assert!(max_abs_diff(&zxz_to_matrix(relion_deg_to_zxz(rel)), &m) < 1e-12);
        assert!(max_abs_diff(&relion_deg_to_matrix(matrix_to_relion_deg(&m)), &m) < 1e-12);
    }
}

#[test]
fn euler_canonical_angles_round_trip_exactly() {
    for zxz in grid_angles() {
        let [phi, theta, psi] = zxz;
        if !(0.01..PI - 0.01).contains(&theta) || !(0.0..2.0 * PI).contains(&psi) {
            continue;
        }
        let back = matrix_to_zxz(&zxz_to_matrix(zxz));
        assert!((back[0] - phi).abs() < 1e-10 && (back[1] - theta).abs() < 1e-10);
        assert!((back[2] - psi).abs() < 1e-10, "{zxz:?} {back:?}");
    }
}

#[test]
fn relion_angles_of_identity_and_known_rotation() {
    assert_eq!(zxz_to_relion_deg([0.0, 0.0, 0.0]), [0.0, 0.0, 0.0]);
    // A pure z rotation by +30 deg (phi) is RELION rot = -30 (RELION's matrix is the
    // transpose-style convention), tilt 0.
    let r = zxz_to_relion_deg([30f64.to_radians(), 0.0, 0.0]);
    assert!(
        (r[0] + 30.0).abs() < 1e-12 && r[1].abs() < 1e-12 && r[2] == 0.0,
        "{r:?}"
    );
}

mod symmetry_and_covering {
    use _rust::angles::covering::{covering_radius, random_quaternion, QuatIndex, SplitMix64};
    use _rust::angles::optimal::{
        cell600_set, cell600_vertices, cube_bcc_for_radius, cube_bcc_set, lattice_for_radius,
        octa_bcc_set, optimal_angle_set, optimal_for_radius, verification_samples, Family,
        OptimalKind, VERIFY_SEED,
    };
    use _rust::angles::pytom_angle_set;
    use _rust::angles::symmetry::{reduce, Symmetry};
    use _rust::euler::{quaternion_distance, quaternion_mul, zxz_to_quaternion};

    #[test]
    fn dihedral_and_platonic_reduction_cover_the_full_set() {
        // (D2, T, O and I on the 10 degree set are checked from Python)
        let full = pytom_angle_set(20.0, 1).unwrap();
        let fq: Vec<_> = full.iter().map(|a| zxz_to_quaternion(*a)).collect();
        // the tolerance reduce() uses
        let radius = covering_radius(&fq, 100_000, 0).radius_rad;
        for sym in [Symmetry::Dihedral(3), Symmetry::Octahedral] {
            let kept = reduce(&full, sym);
            let g = sym.elements();
            #[allow(clippy::cast_precision_loss)]
            let expect = full.len() as f64 / g.len() as f64;
            #[allow(clippy::cast_precision_loss)]
            let got = kept.len() as f64;
            // boundary completion adds a few rotations where classes are few
            assert!(
                (got - expect).abs() <= 0.15 * expect,
                "{sym:?} {got} {expect}"
            );
            let images: Vec<_> = kept
                .iter()
                .flat_map(|k| {
                    g.iter()
                        .map(move |h| quaternion_mul(zxz_to_quaternion(*k), *h))
                })
                .collect();
            let index = QuatIndex::new(&images);
            for q in &fq {
                let (_, d) = index.nearest(q).unwrap();
                assert!(d <= radius + 1e-12, "{sym:?}");
            }
        }
    }

    #[test]
    fn cyclic_reduction_is_pytoms_rule() {
        let full = pytom_angle_set(12.0, 1).unwrap();
        assert_eq!(
            reduce(&full, Symmetry::Cyclic(4)),
            pytom_angle_set(12.0, 4).unwrap()
        );
    }

    #[test]
    fn estimator_lower_bounds_and_tracks_brute_force() {
        let mut rng = SplitMix64::new(42);
        let set: Vec<_> = (0..300).map(|_| random_quaternion(&mut rng)).collect();
        let est = covering_radius(&set, 20_000, 1);
        // the reported worst rotation really is that far from the set
        let attained = set
            .iter()
            .map(|p| quaternion_distance(*p, est.worst))
            .fold(f64::INFINITY, f64::min);
        assert!((attained - est.radius_rad).abs() < 1e-12);
        // and no brute-force probe is farther
        let mut probe_rng = SplitMix64::new(7);
        for _ in 0..20_000 {
            let q = random_quaternion(&mut probe_rng);
            let d = set
                .iter()
                .map(|p| quaternion_distance(*p, q))
                .fold(f64::INFINITY, f64::min);
            assert!(d <= est.radius_rad + 1e-12);
        }
    }

    #[test]
    fn cube_bcc_set_sizes_and_uniqueness() {
        for n in 2..6_u32 {
            let s = cube_bcc_set(n);
            // 4 cells x (n^3 + (n+1)^3) minus the points shared by faces, edges, corners
            let raw = 4 * (n.pow(3) + (n + 1).pow(3)) as usize;
            assert!(s.len() < raw && s.len() > raw / 2, "{n} {}", s.len());
            let index = QuatIndex::new(&s);
            for (i, q) in s.iter().enumerate() {
                let others: f64 = s
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| quaternion_distance(*p, *q))
                    .fold(f64::INFINITY, f64::min);
                assert!(others > 1e-6, "duplicate at {n}");
                assert!(index.nearest(q).unwrap().1 < 1e-6);
            }
        }
    }

    #[test]
    fn octa_bcc_set_merges_every_shared_face_point() {
        for m in 1..6_u32 {
            let s = octa_bcc_set(m);
            // 12 cells of interior points (Z^3 with |x|_1 <= m - 1, (Z + 1/2)^3 with
            // |x|_1 < m), then the 48 faces, 48 edges and 12 vertices of the 24-cell
            // (mod sign) once each: a point counted twice would break the formula
            let m = m as usize;
            let mut interior = 0;
            let r = m as i64;
            for i in -r..=r {
                for j in -r..=r {
                    for k in -r..=r {
                        if i.abs() + j.abs() + k.abs() < r {
                            interior += 1;
                        }
                        // half-integer point (i + 1/2, ...): |.|_1 < m
                        let h = (2 * i + 1).abs() + (2 * j + 1).abs() + (2 * k + 1).abs();
                        if h < 2 * r {
                            interior += 1;
                        }
                    }
                }
            }
            let face = if m >= 2 { (m - 1) * (m - 2) / 2 } else { 0 };
            let expect = 12 * interior + 48 * face + 48 * (m - 1) + 12;
            assert_eq!(s.len(), expect, "m = {m}");
            let index = QuatIndex::new(&s);
            for (i, q) in s.iter().enumerate() {
                let others: f64 = s
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| quaternion_distance(*p, *q))
                    .fold(f64::INFINITY, f64::min);
                assert!(others > 1e-3, "near-duplicate at m = {m}");
                assert!(index.nearest(q).unwrap().1 < 1e-6);
            }
        }
    }

    #[test]
    fn cell600_is_a_group_and_its_set_covers_within_karneys_radius() {
        let v = cell600_vertices();
        assert_eq!(v.len(), 120);
        // closed under multiplication: the binary icosahedral group
        let index = QuatIndex::new(&v);
        for a in &v {
            for b in &v {
                let (_, d) = index.nearest(&quaternion_mul(*a, *b)).unwrap();
                assert!(d < 1e-9);
            }
        }
        let s = cell600_set();
        assert_eq!(s.len(), 60 + 300);
        // Karney's c600vc: covering radius 27.78 degrees
        let r = covering_radius(&s, 200_000, 3).radius_rad.to_degrees();
        assert!((r - 27.78).abs() < 0.05, "{r}");
    }

    #[test]
    fn optimal_for_radius_takes_the_smaller_family() {
        let target = 12.0_f64.to_radians();
        let (angles, radius, kind) = optimal_for_radius(target, 20_000, usize::MAX).unwrap();
        assert!(radius <= target);
        let mut tried = 0;
        for family in Family::ALL {
            // (the single 600-cell set does not reach 12 degrees)
            if let Some((own, _, _)) = lattice_for_radius(family, target, 20_000, usize::MAX) {
                assert!(angles.len() <= own.len(), "{family:?}");
                tried += 1;
            }
        }
        assert_eq!(tried, 2);
        assert!(!matches!(kind, OptimalKind::Pytom));
    }

    #[test]
    fn optimal_set_beats_pytom_at_15_degrees() {
        // (10 degrees is checked from Python on the release build)
        let opt = optimal_angle_set(15.0, 50_000).unwrap();
        assert!(matches!(
            opt.kind,
            OptimalKind::CubeBcc(_) | OptimalKind::OctaBcc(_)
        ));
        // at 30 degrees only the 600-cell set is smaller than pytom's 576
        let opt = optimal_angle_set(30.0, 50_000).unwrap();
        assert_eq!(opt.kind, OptimalKind::Cell600);
        assert_eq!(opt.angles.len(), 360);
        assert!(opt.radius_rad <= opt.pytom_radius_rad);
        #[allow(clippy::cast_precision_loss)]
        let ratio = opt.angles.len() as f64 / opt.pytom_len as f64;
        assert!(ratio <= 0.75, "{ratio}");
        assert!(opt.radius_rad <= opt.pytom_radius_rad);
    }

    #[test]
    fn optimal_set_is_never_larger_than_pytom() {
        for step in [25.0, 90.0] {
            let opt = optimal_angle_set(step, 20_000).unwrap();
            assert!(opt.angles.len() <= opt.pytom_len);
            assert!(opt.radius_rad <= opt.pytom_radius_rad);
        }
    }

    #[test]
    fn verification_samples_scale_with_the_set() {
        assert_eq!(verification_samples(100, 50_000), 50_000);
        assert_eq!(verification_samples(10_000, 50_000), 200_000);
        assert_eq!(verification_samples(1_000_000, 50_000), 2_000_000);
        assert_eq!(verification_samples(1_000_000, 3_000_000), 3_000_000);
    }

    #[test]
    fn accepted_lattice_passes_the_verifying_estimate() {
        let target = 20.0_f64.to_radians();
        let (angles, radius, n) = cube_bcc_for_radius(target, 20_000, usize::MAX).unwrap();
        assert!(radius <= target);
        let q: Vec<_> = angles.iter().map(|a| zxz_to_quaternion(*a)).collect();
        let check = covering_radius(&q, verification_samples(q.len(), 20_000), VERIFY_SEED);
        assert!(check.radius_rad <= radius + 1e-12);
        // the next smaller lattice misses the target (so this is the smallest)
        let smaller = cube_bcc_set(n - 1);
        assert!(covering_radius(&smaller, 20_000, 5).radius_rad > target);
    }
}

mod refined_sets {
    use _rust::angles::covering::covering_radius;
    use _rust::angles::optimal::{optimal_angle_set, optimal_for_radius, OptimalKind};
    use _rust::angles::pytom_angle_set;
    use _rust::angles::refined::{decode, refined_for_radius, refined_sets};
    use _rust::euler::zxz_to_quaternion;

    #[test]
    fn embedded_sets_decode_smallest_first() {
        let sets = refined_sets();
        let steps: Vec<f64> = sets.iter().map(|s| s.step_deg).collect();
        assert_eq!(steps, [25.0, 20.0, 16.0, 12.85, 12.0, 8.0, 6.69, 5.27]);
        for pair in sets.windows(2) {
            assert!(pair[0].angles.len() <= pair[1].angles.len());
        }
        for s in sets {
            // a quarter fewer rotations than pytom's set for the step it was made for
            let pytom = pytom_angle_set(s.step_deg, 1).unwrap();
            assert!(4 * s.angles.len() <= 3 * pytom.len(), "{}", s.step_deg);
            for a in &s.angles {
                assert!((0.0..=std::f64::consts::TAU).contains(&a[0]));
                assert!((0.0..=std::f64::consts::PI).contains(&a[1]));
                assert!((0.0..=std::f64::consts::TAU).contains(&a[2]));
            }
        }
    }

    #[test]
    fn stored_radius_bounds_the_estimate() {
        // the estimate is a distance actually attained: never above the exact radius,
        // and close below it (so the stored radius is not overstated either)
        for s in refined_sets().iter().take(2) {
            let q: Vec<_> = s.angles.iter().map(|a| zxz_to_quaternion(*a)).collect();
            let est = covering_radius(&q, 200_000, 9).radius_rad.to_degrees();
            assert!(est <= s.radius_deg + 1e-6, "{est} > {}", s.radius_deg);
            assert!(est >= 0.97 * s.radius_deg, "{est} << {}", s.radius_deg);
        }
    }

    #[test]
    fn malformed_data_is_refused() {
        let mut data = b"TMFREF01".to_vec();
        data.extend(1_u32.to_le_bytes());
        data.extend(2_u32.to_le_bytes());
        data.extend(20.0_f64.to_le_bytes());
        data.extend(15.0_f64.to_le_bytes());
        for v in [0.1_f32, 0.2, 0.3, 1.0, 2.0, 3.0] {
            data.extend(v.to_le_bytes());
        }
        let sets = decode(&data).unwrap();
        assert_eq!(sets.len(), 1);
        // sorted by (phi, theta, psi)
        assert_eq!(sets[0].angles[0][0], f64::from(0.1_f32));
        assert!(decode(&data[..data.len() - 1]).is_none());
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        let mut magic = data.clone();
        magic[0] = b'X';
        assert!(decode(&magic).is_none());
        // a count far beyond the data is refused, not allocated
        let mut huge = data.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none());
        let mut sets_huge = data.clone();
        sets_huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&sets_huge).is_none());
        let mut nan = data;
        let at = nan.len() - 4;
        nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(decode(&nan).is_none());
    }

    #[test]
    fn refined_set_serves_25_degrees() {
        let opt = optimal_angle_set(25.0, 50_000).unwrap();
        assert!(
            matches!(opt.kind, OptimalKind::Refined(_)),
            "{:?}",
            opt.kind
        );
        assert!(4 * opt.angles.len() <= 3 * opt.pytom_len);
        assert!(opt.radius_rad <= opt.pytom_radius_rad);
        // a target just below the smallest set's radius takes another set or none
        let smallest = &refined_sets()[0];
        let below = (smallest.radius_deg - 1e-6).to_radians();
        assert_ne!(refined_for_radius(below, usize::MAX), Some(0));
        assert_eq!(
            refined_for_radius(smallest.radius_deg.to_radians(), usize::MAX),
            Some(0)
        );
        // max_len excludes sets that are not smaller
        assert_eq!(
            refined_for_radius(smallest.radius_deg.to_radians(), smallest.angles.len()),
            None
        );
        let (angles, _, kind) =
            optimal_for_radius(smallest.radius_deg.to_radians(), 20_000, usize::MAX).unwrap();
        assert!(angles.len() <= smallest.angles.len(), "{kind:?}");
    }
}
