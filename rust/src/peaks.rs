//! Peak finding on score maps: greedy global maxima with a spherical exclusion zone.
//!
//! Conventions: maps are C-ordered `(z, y, x)` `f32` arrays; positions are returned as
//! `(z, y, x)` voxel indices; the exclusion radius is in voxels.
//!
//! # Semantics (the oracle is a plain numpy loop; see `tests/test_extraction_peaks.py`)
//! A voxel is a *candidate* unless its score is NaN, the mask holds a value `<= 0`
//! there, or it lies in the border (`i < border` or `i >= n - border` on any axis).
//! Then, up to `n_peaks` times: take the candidate with the largest score, ties going
//! to the smallest flat C-order index (exactly `numpy.argmax`); stop if there is none,
//! if its score is `-inf`, or if it is `<= cutoff`; record it; remove every candidate
//! whose squared Euclidean distance to it is `<= radius²`.
//!
//! # Design
//! The caller's map is never copied or modified. Removed voxels live in a bitmask
//! (1 bit per voxel). The map is cut into tiles of `8 x 8 x 16` voxels; each tile keeps
//! its best candidate, and a tournament (segment) tree over the tiles gives the global
//! best in O(1). A pick removes its sphere from the bitmask; only tiles whose best voxel
//! was removed are rescanned (removing other voxels cannot change a tile's best), then
//! their tree paths are updated. A pick thus costs O(sphere + rescanned tiles), not
//! O(map). Extra memory is about `map / 32` (bitmask) plus 16 bytes per tile.

use ndarray::ArrayView3;
use rayon::prelude::*;

use crate::error::{Error, Result};

const TZ: usize = 8;
const TY: usize = 8;
const TX: usize = 16;
const NONE: u64 = u64::MAX;

/// The per-voxel angle index map read at each pick.
#[derive(Clone, Copy, Debug)]
pub enum AngleMap<'a> {
    /// No angle map: every pick gets index `-1`.
    None,
    /// Angle indices stored as `f32` (as pytom-match-pick writes them); rounded,
    /// non-finite values become `-1`.
    F32(ArrayView3<'a, f32>),
    /// Angle indices stored as `i32`.
    I32(ArrayView3<'a, i32>),
}

/// A tomogram mask: voxels where the mask is `<= 0` are never picked. Integer masks
/// are read as they are, so an `int8`/`uint8`/bool mask needs no float copy.
#[derive(Clone, Copy, Debug)]
pub enum Mask<'a> {
    /// `f32` mask (NaN counts as "not `<= 0`", i.e. searched, like numpy's `mask <= 0`).
    F32(ArrayView3<'a, f32>),
    /// `u8` (or bool) mask.
    U8(ArrayView3<'a, u8>),
    /// `i8` mask.
    I8(ArrayView3<'a, i8>),
}

enum MaskSlice<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
    I8(&'a [i8]),
}

impl MaskSlice<'_> {
    #[inline]
    fn keeps(&self, i: usize) -> bool {
        match self {
            MaskSlice::F32(m) => m[i] > 0.0 || m[i].is_nan(),
            MaskSlice::U8(m) => m[i] > 0,
            MaskSlice::I8(m) => m[i] > 0,
        }
    }
}

/// Options of [`find_peaks`].
#[derive(Clone, Copy, Debug)]
pub struct PeakOptions {
    /// Maximum number of picks.
    pub n_peaks: usize,
    /// Exclusion radius in voxels: after a pick, voxels with squared distance
    /// `<= radius²` are removed. Must be finite and `>= 0`.
    pub exclusion_radius_vox: f64,
    /// Stop once the best remaining score is `<= cutoff`.
    pub cutoff: Option<f64>,
    /// Width of the excluded border on all six faces, in voxels.
    pub border_vox: usize,
}

/// Picks returned by [`find_peaks`], in pick order (descending score).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peaks {
    /// `(z, y, x)` voxel indices of the picks.
    pub positions_zyx: Vec<[i64; 3]>,
    /// Score of each pick.
    pub scores: Vec<f32>,
    /// Angle index at each pick (`-1` without an angle map).
    pub angle_indices: Vec<i64>,
}

/// Best candidate of a tile: score and flat index (`NONE` when the tile has none).
#[derive(Clone, Copy, Debug)]
struct Best {
    score: f32,
    flat: u64,
}

impl Best {
    const EMPTY: Best = Best {
        score: f32::NEG_INFINITY,
        flat: NONE,
    };

    /// `true` when `self` beats `other` (larger score, ties to the smaller index).
    #[inline]
    fn beats(self, other: Best) -> bool {
        if self.flat == NONE {
            return false;
        }
        if other.flat == NONE {
            return true;
        }
        self.score > other.score || (self.score == other.score && self.flat < other.flat)
    }
}

/// Bitmask of candidate voxels, one bit per flat index.
struct Bits {
    words: Vec<u64>,
}

impl Bits {
    #[inline]
    fn get(&self, i: usize) -> bool {
        (self.words[i >> 6] >> (i & 63)) & 1 == 1
    }
    #[inline]
    fn clear(&mut self, i: usize) {
        self.words[i >> 6] &= !(1u64 << (i & 63));
    }
}

struct Grid {
    shape: [usize; 3],
    tiles: [usize; 3],
}

impl Grid {
    fn new(shape: [usize; 3]) -> Self {
        Grid {
            shape,
            tiles: [
                shape[0].div_ceil(TZ),
                shape[1].div_ceil(TY),
                shape[2].div_ceil(TX),
            ],
        }
    }
    fn n_tiles(&self) -> usize {
        self.tiles[0] * self.tiles[1] * self.tiles[2]
    }
    fn tile_of(&self, z: usize, y: usize, x: usize) -> usize {
        ((z / TZ) * self.tiles[1] + y / TY) * self.tiles[2] + x / TX
    }
    /// Scan tile `t` for its best candidate.
    fn scan(&self, t: usize, data: &[f32], bits: &Bits) -> Best {
        let [_, ny, nx] = self.shape;
        let tx = t % self.tiles[2];
        let ty = (t / self.tiles[2]) % self.tiles[1];
        let tz = t / (self.tiles[2] * self.tiles[1]);
        let (z0, y0, x0) = (tz * TZ, ty * TY, tx * TX);
        let z1 = (z0 + TZ).min(self.shape[0]);
        let y1 = (y0 + TY).min(ny);
        let x1 = (x0 + TX).min(nx);
        let mut best = Best::EMPTY;
        // Flat indices increase in scan order, so a strict `>` keeps the first maximum.
        for z in z0..z1 {
            for y in y0..y1 {
                let row = (z * ny + y) * nx;
                for x in x0..x1 {
                    let i = row + x;
                    if bits.get(i) {
                        let s = data[i];
                        if best.flat == NONE || s > best.score {
                            best = Best {
                                score: s,
                                flat: i as u64,
                            };
                        }
                    }
                }
            }
        }
        best
    }
}

/// Tournament tree over tile bests; node values are tile ids (`u32::MAX` = empty).
struct Tree {
    size: usize,
    nodes: Vec<u32>,
}

impl Tree {
    fn better(bests: &[Best], a: u32, b: u32) -> u32 {
        if a == u32::MAX {
            return b;
        }
        if b == u32::MAX {
            return a;
        }
        if bests[b as usize].beats(bests[a as usize]) {
            b
        } else {
            a
        }
    }
    fn build(bests: &[Best]) -> Self {
        let size = bests.len().next_power_of_two().max(1);
        let mut nodes = vec![u32::MAX; 2 * size];
        for (t, _) in bests.iter().enumerate() {
            nodes[size + t] = t as u32;
        }
        for k in (1..size).rev() {
            nodes[k] = Self::better(bests, nodes[2 * k], nodes[2 * k + 1]);
        }
        Tree { size, nodes }
    }
    fn update(&mut self, bests: &[Best], t: usize) {
        let mut k = (self.size + t) / 2;
        while k >= 1 {
            self.nodes[k] = Self::better(bests, self.nodes[2 * k], self.nodes[2 * k + 1]);
            k /= 2;
        }
    }
    fn top(&self) -> u32 {
        self.nodes[1]
    }
}

/// Largest `d >= 0` with `base + d² <= r2` (`None` when even `d = 0` fails).
#[inline]
fn half_width(base: i64, r2: f64, limit: i64) -> Option<i64> {
    if base as f64 > r2 {
        return None;
    }
    let mut d = ((r2 - base as f64).max(0.0)).sqrt().floor() as i64;
    d = d.min(limit);
    while d > 0 && (base + d * d) as f64 > r2 {
        d -= 1;
    }
    while d < limit && (base + (d + 1) * (d + 1)) as f64 <= r2 {
        d += 1;
    }
    Some(d)
}

fn check_shape(name: &str, shape: &[usize], expected: &[usize]) -> Result<()> {
    if shape != expected {
        return Err(Error::invalid(format!(
            "{name} has shape {shape:?} but the score map has shape {expected:?}; pass a map of the same shape"
        )));
    }
    Ok(())
}

/// Build the candidate bitmask (not NaN, mask > 0, outside the border).
fn candidates(
    data: &[f32],
    mask: Option<&MaskSlice<'_>>,
    shape: [usize; 3],
    border: usize,
) -> Bits {
    let n = data.len();
    let [nz, ny, nx] = shape;
    let n_words = n.div_ceil(64);
    let mut words = vec![0u64; n_words];
    const CHUNK: usize = 1024; // words per parallel task
    words
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let start = c * CHUNK * 64;
            let end = (start + chunk.len() * 64).min(n);
            let mut x = start % nx;
            let mut y = (start / nx) % ny;
            let mut z = start / (nx * ny);
            for (k, &s) in data[start..end].iter().enumerate() {
                let i = start + k;
                let inside = border == 0
                    || (z >= border
                        && z + border < nz
                        && y >= border
                        && y + border < ny
                        && x >= border
                        && x + border < nx);
                let keep = inside && !s.is_nan() && mask.is_none_or(|m| m.keeps(i));
                if keep {
                    let w = (i - start) >> 6;
                    chunk[w] |= 1u64 << (i & 63);
                }
                x += 1;
                if x == nx {
                    x = 0;
                    y += 1;
                    if y == ny {
                        y = 0;
                        z += 1;
                    }
                }
            }
        });
    Bits { words }
}

/// Greedy peak picking with a spherical exclusion zone (see the module docs).
///
/// `scores` and `mask` (if any) must be in standard (C) layout; `mask` and the angle
/// map must have the shape of `scores`.
///
/// # Errors
/// [`Error::InvalidArgument`] for a non-contiguous input, mismatched shapes, or a
/// negative or non-finite radius.
pub fn find_peaks(
    scores: ArrayView3<'_, f32>,
    mask: Option<Mask<'_>>,
    angles: AngleMap<'_>,
    opts: &PeakOptions,
) -> Result<Peaks> {
    let r = opts.exclusion_radius_vox;
    if !r.is_finite() || r < 0.0 {
        return Err(Error::invalid(format!(
            "exclusion radius {r} voxels is invalid; pass a finite radius >= 0"
        )));
    }
    if let Some(c) = opts.cutoff {
        if c.is_nan() {
            return Err(Error::invalid(
                "cutoff is NaN; pass a number or no cutoff".to_string(),
            ));
        }
    }
    let shape_v = scores.shape().to_vec();
    let shape = [shape_v[0], shape_v[1], shape_v[2]];
    let data = scores
        .as_slice()
        .ok_or_else(|| Error::invalid("score map is not C-contiguous; pass a C-ordered array"))?;
    let not_contig = || Error::invalid("mask is not C-contiguous; pass a C-ordered array");
    let mask_slice = match &mask {
        Some(Mask::F32(m)) => {
            check_shape("mask", m.shape(), &shape)?;
            Some(MaskSlice::F32(m.as_slice().ok_or_else(not_contig)?))
        }
        Some(Mask::U8(m)) => {
            check_shape("mask", m.shape(), &shape)?;
            Some(MaskSlice::U8(m.as_slice().ok_or_else(not_contig)?))
        }
        Some(Mask::I8(m)) => {
            check_shape("mask", m.shape(), &shape)?;
            Some(MaskSlice::I8(m.as_slice().ok_or_else(not_contig)?))
        }
        None => None,
    };
    match &angles {
        AngleMap::None => {}
        AngleMap::F32(a) => check_shape("angle map", a.shape(), &shape)?,
        AngleMap::I32(a) => check_shape("angle map", a.shape(), &shape)?,
    }
    let mut out = Peaks::default();
    if data.is_empty() || opts.n_peaks == 0 {
        return Ok(out);
    }
    if data.len() as u64 >= NONE || Grid::new(shape).n_tiles() >= u32::MAX as usize {
        return Err(Error::invalid("score map is too large"));
    }

    let grid = Grid::new(shape);
    let mut bits = candidates(data, mask_slice.as_ref(), shape, opts.border_vox);
    let mut bests: Vec<Best> = (0..grid.n_tiles())
        .into_par_iter()
        .map(|t| grid.scan(t, data, &bits))
        .collect();
    let mut tree = Tree::build(&bests);

    let [nz, ny, nx] = shape;
    let r2 = r * r;
    // Offsets beyond the map are irrelevant; clamping also keeps d*d far from overflow.
    let rr = (r.floor() as i64).min(nz.max(ny).max(nx) as i64);
    let mut dirty: Vec<usize> = Vec::new();
    while out.scores.len() < opts.n_peaks {
        let t = tree.top();
        if t == u32::MAX {
            break;
        }
        let best = bests[t as usize];
        if best.flat == NONE || best.score == f32::NEG_INFINITY {
            break;
        }
        if let Some(c) = opts.cutoff {
            if f64::from(best.score) <= c {
                break;
            }
        }
        let flat = best.flat as usize;
        let (pz, py, px) = (flat / (ny * nx), (flat / nx) % ny, flat % nx);
        out.positions_zyx.push([pz as i64, py as i64, px as i64]);
        out.scores.push(best.score);
        out.angle_indices.push(match &angles {
            AngleMap::None => -1,
            AngleMap::F32(a) => {
                let v = a[[pz, py, px]];
                if v.is_finite() {
                    v.round_ties_even() as i64
                } else {
                    -1
                }
            }
            AngleMap::I32(a) => i64::from(a[[pz, py, px]]),
        });

        // Remove the sphere; note tiles whose best voxel went away.
        let (pz, py, px) = (pz as i64, py as i64, px as i64);
        for dz in (-rr).max(-pz)..=rr.min(nz as i64 - 1 - pz) {
            let z = pz + dz;
            if z < 0 || z >= nz as i64 {
                continue;
            }
            for dy in (-rr).max(-py)..=rr.min(ny as i64 - 1 - py) {
                let y = py + dy;
                if y < 0 || y >= ny as i64 {
                    continue;
                }
                let Some(h) = half_width(dz * dz + dy * dy, r2, rr) else {
                    continue;
                };
                let x0 = (px - h).max(0) as usize;
                let x1 = (px + h).min(nx as i64 - 1) as usize;
                let row = (z as usize * ny + y as usize) * nx;
                for x in x0..=x1 {
                    bits.clear(row + x);
                }
                // Tiles along this row whose best voxel is now removed.
                let (zu, yu) = (z as usize, y as usize);
                let mut tx0 = x0 / TX;
                let tx1 = x1 / TX;
                while tx0 <= tx1 {
                    let tile = grid.tile_of(zu, yu, tx0 * TX);
                    let b = bests[tile];
                    if b.flat != NONE {
                        let bf = b.flat as usize;
                        if bf >= row + x0 && bf <= row + x1 {
                            dirty.push(tile);
                        }
                    }
                    tx0 += 1;
                }
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for &tile in &dirty {
            bests[tile] = grid.scan(tile, data, &bits);
            tree.update(&bests, tile);
        }
        dirty.clear();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_width_is_exact() {
        for base in 0..50i64 {
            for r2i in 0..60 {
                let r2 = f64::from(r2i) + 0.25;
                let brute = (0..=10i64).filter(|d| (base + d * d) as f64 <= r2).max();
                assert_eq!(half_width(base, r2, 10), brute, "base {base} r2 {r2}");
            }
        }
    }

    #[test]
    fn beats_orders_by_score_then_index() {
        let a = Best {
            score: 1.0,
            flat: 5,
        };
        let b = Best {
            score: 1.0,
            flat: 3,
        };
        let c = Best {
            score: 2.0,
            flat: 9,
        };
        assert!(b.beats(a));
        assert!(!a.beats(b));
        assert!(c.beats(b));
        assert!(a.beats(Best::EMPTY));
        assert!(!Best::EMPTY.beats(a));
    }
}
