//! IMOD binary model writer for particle positions (scattered-point objects).
//!
//! Layout (IMOD `binspec.html`; all numbers big-endian): `IMODV1.2`, the 232-byte model
//! header, then per object an `OBJT` chunk (176 bytes), one `CONT` chunk (16 bytes +
//! 12 bytes per point) holding all of its points and, when per-point radii are given,
//! a `SIZE` chunk (4 bytes per point), and finally `IEOF`. No `MESH` chunks are
//! written (`meshsize = 0`).
//!
//! Field conventions follow models written by 3dmod (checked against real files):
//! model name `IMOD-NewModel` unless given, `xmax/ymax/zmax` = image size, model flags
//! `0xF400` (bit 10: Z of slice `k` is `k`, i.e. Z starts at -0.5; bits 12-15 as 3dmod
//! sets them), pixel size in nm with `units = -9`; objects are `SCAT | OPEN`
//! (`0x208`, as `point2model -scat`), contours `WILD` (points on many Z). Coordinates
//! are written as given, in IMOD model units (pixels; `x, y, z`).

use std::io::Write;

use crate::error::{Error, Result};

/// Model-header flags: bits 10, 12, 13, 14, 15 (as 3dmod writes them).
pub const MODEL_FLAGS: u32 = (1 << 10) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15);
/// Object flags: scattered points (bit 9) and open contours (bit 3).
pub const OBJECT_FLAGS_SCATTERED: u32 = (1 << 9) | (1 << 3);
/// Contour flags: wild (points not in one Z plane).
pub const CONTOUR_FLAGS_WILD: u32 = 1 << 4;

/// One scattered-point object.
#[derive(Clone, Debug)]
pub struct ImodObject {
    /// Object name (at most 63 bytes are stored).
    pub name: String,
    /// Colour, red, green, blue in `0..=1`.
    pub color_rgb: [f32; 3],
    /// Default sphere radius in pixels (`pdrawsize`).
    pub sphere_radius_px: i32,
    /// Points `(x, y, z)` in model pixel coordinates.
    pub points_xyz: Vec<[f32; 3]>,
    /// Optional per-point sphere radii (pixels), written as a `SIZE` chunk.
    pub point_radii_px: Option<Vec<f32>>,
}

/// A model of scattered-point objects.
#[derive(Clone, Debug)]
pub struct ImodModel {
    /// Model name (at most 127 bytes are stored).
    pub name: String,
    /// Image size `(nx, ny, nz)` in pixels.
    pub dims_xyz: [i32; 3],
    /// Pixel size in Å (stored in nm, `units = -9`).
    pub pixel_size_a: f32,
    /// The objects, in order.
    pub objects: Vec<ImodObject>,
}

fn fixed_name(name: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut n = name.len().min(len - 1);
    while !name.is_char_boundary(n) {
        n -= 1;
    }
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

fn io(source: std::io::Error) -> Error {
    Error::Io {
        path: "<IMOD output>".to_string(),
        source,
    }
}

/// Encode `model` into the IMOD binary format.
///
/// # Errors
/// [`Error::InvalidArgument`] for non-finite coordinates, a radii list of the wrong
/// length, too many points, or a colour outside `0..=1`.
pub fn encode(model: &ImodModel) -> Result<Vec<u8>> {
    let mut b: Vec<u8> = Vec::with_capacity(
        8 + 232
            + model
                .objects
                .iter()
                .map(|o| 200 + 16 * o.points_xyz.len())
                .sum::<usize>(),
    );
    let i32be = |b: &mut Vec<u8>, v: i32| b.extend_from_slice(&v.to_be_bytes());
    let u32be = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_be_bytes());
    let f32be = |b: &mut Vec<u8>, v: f32| b.extend_from_slice(&v.to_be_bytes());
    let n_obj =
        i32::try_from(model.objects.len()).map_err(|_| Error::invalid("too many IMOD objects"))?;
    if !(model.pixel_size_a.is_finite() && model.pixel_size_a > 0.0) {
        return Err(Error::invalid(format!(
            "pixel size {} Å is invalid; pass a positive pixel size",
            model.pixel_size_a
        )));
    }

    b.extend_from_slice(b"IMODV1.2");
    b.extend_from_slice(&fixed_name(&model.name, 128));
    for d in model.dims_xyz {
        i32be(&mut b, d);
    }
    i32be(&mut b, n_obj);
    u32be(&mut b, MODEL_FLAGS);
    i32be(&mut b, 1); // drawmode
    i32be(&mut b, 1); // mousemode: model
    i32be(&mut b, 0); // blacklevel
    i32be(&mut b, 255); // whitelevel
    for v in [0.0, 0.0, 0.0, 1.0, 1.0, 1.0] {
        f32be(&mut b, v); // x/y/z offset, x/y/z scale
    }
    i32be(&mut b, 0); // current object
    i32be(&mut b, -1); // current contour
    i32be(&mut b, -1); // current point
    i32be(&mut b, 3); // res
    i32be(&mut b, 128); // thresh
    f32be(&mut b, model.pixel_size_a / 10.0); // pixsize (nm)
    i32be(&mut b, -9); // units: nm
    i32be(&mut b, 0); // csum
    for v in [0.0, 0.0, 0.0] {
        f32be(&mut b, v); // alpha, beta, gamma
    }
    debug_assert_eq!(b.len(), 8 + 232);

    for (k, obj) in model.objects.iter().enumerate() {
        let n = i32::try_from(obj.points_xyz.len())
            .map_err(|_| Error::invalid(format!("object {k} has too many points")))?;
        if obj.color_rgb.iter().any(|c| !(0.0..=1.0).contains(c)) {
            return Err(Error::invalid(format!(
                "object {k} colour {:?} is outside 0..1; pass RGB fractions",
                obj.color_rgb
            )));
        }
        if obj.points_xyz.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "object {k} has a non-finite coordinate; drop those points"
            )));
        }
        if let Some(r) = &obj.point_radii_px {
            if r.len() != obj.points_xyz.len() {
                return Err(Error::invalid(format!(
                    "object {k}: {} radii for {} points; pass one radius per point",
                    r.len(),
                    obj.points_xyz.len()
                )));
            }
        }
        let start = b.len();
        b.extend_from_slice(b"OBJT");
        b.extend_from_slice(&fixed_name(&obj.name, 64));
        b.extend_from_slice(&[0u8; 64]); // extra[16]
        i32be(&mut b, 1); // contsize
        u32be(&mut b, OBJECT_FLAGS_SCATTERED);
        i32be(&mut b, 0); // axis
        i32be(&mut b, 1); // drawmode
        for c in obj.color_rgb {
            f32be(&mut b, c);
        }
        i32be(&mut b, obj.sphere_radius_px);
        // symbol (1 = none), symsize, linewidth2, linewidth, linesty, symflags, sympad, trans
        b.extend_from_slice(&[1, 3, 1, 1, 0, 0, 0, 0]);
        i32be(&mut b, 0); // meshsize
        i32be(&mut b, 0); // surfsize
        debug_assert_eq!(b.len() - start, 4 + 176);

        b.extend_from_slice(b"CONT");
        i32be(&mut b, n);
        u32be(&mut b, CONTOUR_FLAGS_WILD);
        i32be(&mut b, 0); // time
        i32be(&mut b, 0); // surf
        for p in &obj.points_xyz {
            for &v in p {
                f32be(&mut b, v);
            }
        }
        if let Some(r) = &obj.point_radii_px {
            b.extend_from_slice(b"SIZE");
            i32be(&mut b, 4 * n);
            for &v in r {
                f32be(&mut b, v);
            }
        }
    }
    b.extend_from_slice(b"IEOF");
    Ok(b)
}

/// Write `model` to `w`.
///
/// # Errors
/// As [`encode`], plus [`Error::Io`] when writing fails.
pub fn write_imod<W: Write>(w: &mut W, model: &ImodModel) -> Result<()> {
    let bytes = encode(model)?;
    w.write_all(&bytes).map_err(io)?;
    w.flush().map_err(io)
}

/// Write `model` to `path` atomically (see [`super::write_atomic`]).
///
/// # Errors
/// As [`write_imod`], plus [`Error::Io`] if `path` exists and `overwrite` is false.
pub fn write_imod_file(path: &std::path::Path, model: &ImodModel, overwrite: bool) -> Result<()> {
    let bytes = encode(model)?;
    super::write_atomic(path, overwrite, |w| w.write_all(&bytes).map_err(io))
}
