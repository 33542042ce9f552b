//! Integration tests of the formats core (no Python): STAR write/read round trips,
//! reading tricky STAR syntax, the IMOD byte layout, and atomic path writes.

use _rust::formats::imod::{encode, ImodModel, ImodObject, MODEL_FLAGS};
use _rust::formats::star::{read_star, read_star_as, write_star, Block, Column, ColumnData, Value};
use _rust::formats::write_atomic;

#[test]
fn star_round_trip_through_own_reader() {
    let xs: Vec<f32> = (0..5000).map(|i| (i as f32) * 0.37 - 812.3).collect();
    let ds: Vec<f64> = (0..5000).map(|i| 1.0 / (f64::from(i) + 3.0)).collect();
    let is: Vec<i64> = (0..5000).map(|i| i * 7 - 20).collect();
    let ss: Vec<String> = (0..5000)
        .map(|i| {
            if i % 3 == 0 {
                format!("tomo {i}")
            } else {
                format!("t_{i}")
            }
        })
        .collect();
    let blocks = vec![
        Block::Pairs {
            name: "general".into(),
            items: vec![
                ("rlnTomoSubTomosAre2DStacks".into(), Value::Int(1)),
                ("_rlnSomeText".into(), Value::Str("a b".into())),
                ("rlnX".into(), Value::Float(2.5)),
            ],
        },
        Block::Loop {
            name: "particles".into(),
            columns: vec![
                ("rlnCenteredCoordinateXAngst".into(), Column::F32(&xs)),
                ("rlnD".into(), Column::F64(&ds)),
                ("rlnClassNumber".into(), Column::I64(&is)),
                ("rlnTomoName".into(), Column::Str(&ss)),
            ],
        },
        Block::Loop {
            name: String::new(),
            columns: vec![("rlnA".into(), Column::I64(&is[..2]))],
        },
    ];
    let mut buf = Vec::new();
    write_star(&mut buf, &blocks).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let read = read_star(&text, "mem").unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].name, "general");
    assert!(!read[0].is_loop);
    assert_eq!(
        read[0].columns[0],
        (
            "rlnTomoSubTomosAre2DStacks".into(),
            ColumnData::I64(vec![1])
        )
    );
    assert_eq!(
        read[0].columns[1],
        ("rlnSomeText".into(), ColumnData::Str(vec!["a b".into()]))
    );
    assert_eq!(
        read[0].columns[2],
        ("rlnX".into(), ColumnData::F64(vec![2.5]))
    );
    let p = &read[1];
    assert!(p.is_loop);
    let ColumnData::F64(rx) = &p.columns[0].1 else {
        panic!("x not float")
    };
    assert!(rx
        .iter()
        .zip(&xs)
        .all(|(a, b)| (*a as f32).to_bits() == b.to_bits()));
    assert_eq!(p.columns[1].1, ColumnData::F64(ds.clone()));
    assert_eq!(p.columns[2].1, ColumnData::I64(is.clone()));
    assert_eq!(p.columns[3].1, ColumnData::Str(ss.clone()));
    assert_eq!(read[2].name, "");
    assert_eq!(read[2].columns[0].1, ColumnData::I64(vec![-20, -13]));
}

#[test]
fn star_reader_handles_comments_quotes_and_text_fields() {
    let text = "# comment\n\ndata_a\nloop_\n_rlnA #1\n_rlnB\n 1 'x y' # trailing\n2 \"it's\"\n\
                \ndata_b\n_rlnK 3.5\n_rlnL\n;multi\nline\n;\n_rlnM \"q\"\ndata_\nloop_\n_rlnZ\n";
    let r = read_star(text, "mem").unwrap();
    assert_eq!(r[0].columns[0].1, ColumnData::I64(vec![1, 2]));
    assert_eq!(
        r[0].columns[1].1,
        ColumnData::Str(vec!["x y".into(), "it's".into()])
    );
    assert_eq!(r[1].columns[0].1, ColumnData::F64(vec![3.5]));
    assert_eq!(
        r[1].columns[1].1,
        ColumnData::Str(vec!["multi\nline".into()])
    );
    assert_eq!(r[1].columns[2].1, ColumnData::Str(vec!["q".into()]));
    assert_eq!(r[2].name, "");
    assert!(r[2].is_loop);
    assert_eq!(r[2].columns[0].1, ColumnData::F64(vec![]));
}

#[test]
fn star_errors() {
    assert!(read_star("loop_\n_a\n1\n", "m").is_err()); // before any block
    assert!(read_star("data_x\nloop_\n_a\n_b\n1 2 3\n", "m").is_err()); // ragged
    assert!(read_star("data_x\n_a\n", "m").is_err()); // key without value
    let a = [1i64, 2];
    let b = [1i64];
    let bad = [Block::Loop {
        name: "x".into(),
        columns: vec![("a".into(), Column::I64(&a)), ("b".into(), Column::I64(&b))],
    }];
    assert!(write_star(&mut Vec::new(), &bad).is_err());
}

/// Walk the chunks of an IMOD file and return (chunk id, offset) pairs.
fn walk(b: &[u8]) -> Vec<(String, usize)> {
    let be = |o: usize| i32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    assert_eq!(&b[..8], b"IMODV1.2");
    let mut o = 8 + 232;
    let mut out = Vec::new();
    loop {
        let id = String::from_utf8(b[o..o + 4].to_vec()).unwrap();
        out.push((id.clone(), o));
        o += 4;
        match id.as_str() {
            "OBJT" => o += 176,
            "CONT" => o += 16 + 12 * be(o) as usize,
            "IEOF" => break,
            _ => o += 4 + be(o) as usize,
        }
    }
    assert_eq!(o, b.len());
    out
}

#[test]
fn imod_layout() {
    let model = ImodModel {
        name: "picks".into(),
        dims_xyz: [100, 90, 40],
        pixel_size_a: 13.48,
        objects: vec![
            ImodObject {
                name: "ribosome".into(),
                color_rgb: [1.0, 0.0, 0.5],
                sphere_radius_px: 7,
                points_xyz: vec![[1.0, 2.0, 3.0], [4.5, 5.5, 6.0]],
                point_radii_px: Some(vec![7.5, 2.0]),
            },
            ImodObject {
                name: "empty".into(),
                color_rgb: [0.0, 1.0, 0.0],
                sphere_radius_px: 3,
                points_xyz: vec![],
                point_radii_px: None,
            },
        ],
    };
    let b = encode(&model).unwrap();
    let ids: Vec<String> = walk(&b).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["OBJT", "CONT", "SIZE", "OBJT", "CONT", "IEOF"]);
    let be_i = |o: usize| i32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    let be_f = |o: usize| f32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    assert_eq!(&b[8..13], b"picks");
    assert_eq!(
        [be_i(136), be_i(140), be_i(144), be_i(148)],
        [100, 90, 40, 2]
    );
    assert_eq!(be_i(152) as u32, MODEL_FLAGS);
    assert!((be_f(216) - 1.348).abs() < 1e-6); // pixsize nm
    assert_eq!(be_i(220), -9);
    let objt = walk(&b)[0].1 + 4;
    assert_eq!(&b[objt..objt + 8], b"ribosome");
    assert_eq!(be_i(objt + 128), 1); // contsize
    assert_eq!(be_i(objt + 132), 0x208); // SCAT | OPEN
    assert_eq!(
        [be_f(objt + 144), be_f(objt + 148), be_f(objt + 152)],
        [1.0, 0.0, 0.5]
    );
    assert_eq!(be_i(objt + 156), 7);
    let cont = walk(&b)[1].1 + 4;
    assert_eq!(be_i(cont), 2);
    assert_eq!(be_f(cont + 16 + 12), 4.5);
    let size = walk(&b)[2].1 + 4;
    assert_eq!(be_i(size), 8);
    assert_eq!(be_f(size + 4), 7.5);
    let mut bad = model.clone();
    bad.objects[0].point_radii_px = Some(vec![1.0]);
    assert!(encode(&bad).is_err());
    bad.objects[0].point_radii_px = None;
    bad.objects[0].points_xyz[0][0] = f32::NAN;
    assert!(encode(&bad).is_err());
}

#[test]
fn atomic_write_refuses_overwrite_and_leaves_no_partial_file() {
    let dir = std::env::temp_dir().join(format!("tmfast_fmt_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.star");
    write_atomic(&path, false, |w| {
        std::io::Write::write_all(w, b"one").map_err(|e| _rust::Error::Io {
            path: "x".into(),
            source: e,
        })
    })
    .unwrap();
    assert!(write_atomic(&path, false, |_| Ok(())).is_err());
    // A failing writer leaves the old content and no temporary file.
    let failed = write_atomic(&path, true, |w| {
        std::io::Write::write_all(w, b"partial").unwrap();
        Err(_rust::Error::invalid("boom"))
    });
    assert!(failed.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"one");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    write_atomic(&path, true, |w| {
        std::io::Write::write_all(w, b"two").map_err(|e| _rust::Error::Io {
            path: "x".into(),
            source: e,
        })
    })
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn star_reader_as_text_keeps_values_as_written() {
    let text = "data_global\nloop_\n_rlnTomoName\n_rlnTomoHand\n007 -1.000\n'8 9' 1\n\
                data_k\n_rlnV 0012\n";
    let r = read_star_as(text, "mem", true).unwrap();
    assert_eq!(
        r[0].columns[0].1,
        ColumnData::Str(vec!["007".into(), "8 9".into()])
    );
    assert_eq!(
        r[0].columns[1].1,
        ColumnData::Str(vec!["-1.000".into(), "1".into()])
    );
    assert_eq!(r[1].columns[0].1, ColumnData::Str(vec!["0012".into()]));
    // the typed reader of the same text gives numbers
    let t = read_star(text, "mem").unwrap();
    assert_eq!(t[1].columns[0].1, ColumnData::I64(vec![12]));
}
