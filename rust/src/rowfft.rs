//! The last, real stage of a 3-D inverse real FFT, one row at a time, for the folds
//! of [`crate::kernels`] to run it on each row just before folding it.
//!
//! The CPU backend's inverse transform of a correlation spectrum ends with a
//! complex-to-real transform along x. Done by FFTW over the whole volume it writes the
//! real correlation (the volume's size in bytes) for the fold to read back: two
//! passes over memory that the transform of one row in cache, folded at once, does
//! not make (256x256x128 on 2 cores: FFTW's x stage 5.0 ms plus the fold's read of
//! its output; measured in `docs/benchmarks.md`).
//!
//! The transform is `rustfft`'s complex FFT of half the length (AVX when the CPU has
//! it, chosen at run time and deterministic on a machine) after a pre-pass that folds
//! the half spectrum into it; `realfft` for odd lengths. Unnormalised, as FFTW's.
//! The imaginary parts of the zero and (for even lengths) Nyquist frequencies are
//! taken as zero, as FFTW's complex-to-real transforms do: a half spectrum of a real
//! signal has them zero, so they are rounding residue of the earlier stages.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner};
use rustfft::{Fft, FftPlanner};

use crate::{Error, Result};

/// The rows a fold reads: real values, or half spectra to transform first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowForm {
    /// Rows of `row_stride` values whose first `row_len` are the correlation.
    Real,
    /// Rows of `row_stride = 2 * (row_len / 2 + 1)` values: the `row_len / 2 + 1`
    /// complex values (real, imaginary interleaved) of a half spectrum along x whose
    /// unnormalised inverse real transform is the correlation row.
    HalfSpectrum,
}

/// A planned inverse real transform of rows of one length.
pub struct RowInverse {
    len: usize,
    kind: Kind,
}

enum Kind {
    /// Even lengths `2m`: one complex transform of length `m` after a vectorised
    /// pre-pass (`realfft`'s own pre-pass took as long as its FFT: 31.7% against 22.6%
    /// of the fused fold's profile).
    Even {
        fft: Arc<dyn Fft<f32>>,
        /// `exp(+2 pi i k / len)`, `k = 0 .. m`, real and imaginary parts
        w_re: Vec<f32>,
        w_im: Vec<f32>,
    },
    /// Odd lengths, through `realfft`.
    Odd(Arc<dyn ComplexToReal<f32>>),
}

/// Per-thread work space of [`RowInverse::inverse`].
pub struct RowScratch {
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
}

fn real_planner() -> &'static Mutex<RealFftPlanner<f32>> {
    static PLANNER: OnceLock<Mutex<RealFftPlanner<f32>>> = OnceLock::new();
    PLANNER.get_or_init(|| Mutex::new(RealFftPlanner::new()))
}

fn complex_planner() -> &'static Mutex<FftPlanner<f32>> {
    static PLANNER: OnceLock<Mutex<FftPlanner<f32>>> = OnceLock::new();
    PLANNER.get_or_init(|| Mutex::new(FftPlanner::new()))
}

impl RowInverse {
    /// The transform of rows of `len` real values (plans are cached per length).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero length.
    pub fn new(len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::invalid("a row transform needs a positive length"));
        }
        let kind = if len % 2 == 0 {
            let m = len / 2;
            let fft = complex_planner()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .plan_fft_inverse(m);
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let angle = |k: usize| 2.0 * std::f64::consts::PI * k as f64 / len as f64;
            #[allow(clippy::cast_possible_truncation)]
            Kind::Even {
                fft,
                w_re: (0..m).map(|k| angle(k).cos() as f32).collect(),
                w_im: (0..m).map(|k| angle(k).sin() as f32).collect(),
            }
        } else {
            Kind::Odd(
                real_planner()
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .plan_fft_inverse(len),
            )
        };
        Ok(Self { len, kind })
    }

    /// Values (`f32`) per half-spectrum row: `2 * (len / 2 + 1)`.
    pub fn spectrum_floats(&self) -> usize {
        2 * (self.len / 2 + 1)
    }

    /// Work space for one thread.
    pub fn scratch(&self) -> RowScratch {
        match &self.kind {
            Kind::Even { fft, .. } => RowScratch {
                spectrum: vec![Complex32::default(); self.len / 2],
                scratch: vec![Complex32::default(); fft.get_outofplace_scratch_len()],
            },
            Kind::Odd(plan) => RowScratch {
                spectrum: plan.make_input_vec(),
                scratch: plan.make_scratch_vec(),
            },
        }
    }

    /// `out[..len]` = the unnormalised inverse real transform of the half spectrum
    /// `spectrum` ([`Self::spectrum_floats`] values, real and imaginary parts
    /// interleaved); `spectrum` is not changed.
    ///
    /// Even lengths `N = 2m`: with `X` the half spectrum and `w_k = exp(2 pi i k / N)`,
    /// `Z_k = E_k + i O_k`, `E_k = X_k + conj(X_{m-k})`, `O_k = (X_k - conj(X_{m-k}))
    /// w_k` (`k < m`) are the spectra of the even and odd samples, so the length-`m`
    /// inverse of `Z` is `x_{2j} + i x_{2j+1}`: the row itself, read as complex.
    ///
    /// # Panics
    /// When `spectrum` or `out` is shorter than that, or `work` is another length's.
    #[inline(always)]
    pub fn inverse(&self, spectrum: &[f32], work: &mut RowScratch, out: &mut [f32]) {
        match &self.kind {
            Kind::Even { fft, w_re, w_im } => {
                let m = self.len / 2;
                let x = &spectrum[..2 * m + 2];
                let z = &mut work.spectrum[..m];
                // blocks of L frequencies: X_k read forwards, X_{m-k} backwards into
                // lane arrays, the arithmetic on whole lanes (vectorises)
                const L: usize = 8;
                let blocks = m / L;
                let (zb, zr) = z.split_at_mut(blocks * L);
                for (j, zc) in zb.chunks_exact_mut(L).enumerate() {
                    let k0 = j * L;
                    let fwd: &[f32; 2 * L] = x[2 * k0..2 * k0 + 2 * L].try_into().expect("block");
                    // X_{m-k0-L+1} .. X_{m-k0}, to be read in reverse
                    let back: &[f32; 2 * L] = x[2 * (m - k0 - L + 1)..2 * (m - k0 + 1)]
                        .try_into()
                        .expect("block");
                    let wr: &[f32; L] = w_re[k0..k0 + L].try_into().expect("block");
                    let wi: &[f32; L] = w_im[k0..k0 + L].try_into().expect("block");
                    let mut zre = [0f32; L];
                    let mut zim = [0f32; L];
                    for l in 0..L {
                        let a = (fwd[2 * l], fwd[2 * l + 1]);
                        let b = (back[2 * (L - 1 - l)], back[2 * (L - 1 - l) + 1]);
                        (zre[l], zim[l]) = even_odd(a, b, (wr[l], wi[l]));
                    }
                    for l in 0..L {
                        zc[l] = Complex32::new(zre[l], zim[l]);
                    }
                }
                for (i, zk) in zr.iter_mut().enumerate() {
                    let k = blocks * L + i;
                    let a = (x[2 * k], x[2 * k + 1]);
                    let b = (x[2 * (m - k)], x[2 * (m - k) + 1]);
                    let (re, im) = even_odd(a, b, (w_re[k], w_im[k]));
                    *zk = Complex32::new(re, im);
                }
                // the imaginary parts of X_0 and X_m taken as zero (as FFTW does)
                let (x0, xm) = (x[0], x[2 * m]);
                z[0] = Complex32::new(x0 + xm, x0 - xm);
                let out: &mut [Complex32] = as_complex(&mut out[..self.len]);
                fft.process_outofplace_with_scratch(z, out, &mut work.scratch);
            }
            Kind::Odd(plan) => {
                let k = self.len / 2 + 1;
                for (c, v) in work
                    .spectrum
                    .iter_mut()
                    .zip(spectrum[..2 * k].chunks_exact(2))
                {
                    *c = Complex32::new(v[0], v[1]);
                }
                work.spectrum[0].im = 0.0;
                plan.process_with_scratch(
                    &mut work.spectrum,
                    &mut out[..self.len],
                    &mut work.scratch,
                )
                .expect("row transform sizes are fixed by the plan");
            }
        }
    }
}

/// `Z_k = E_k + i O_k` of [`RowInverse::inverse`] from `a = X_k`, `b = X_{m-k}` and
/// `w = w_k`, each as (real, imaginary).
#[inline(always)]
fn even_odd(a: (f32, f32), b: (f32, f32), w: (f32, f32)) -> (f32, f32) {
    let (ar, ai) = a;
    let (br, bi) = (b.0, -b.1); // conj(X_{m-k})
    let (er, ei) = (ar + br, ai + bi);
    let (dr, di) = (ar - br, ai - bi);
    let (or, oi) = (dr * w.0 - di * w.1, dr * w.1 + di * w.0);
    (er - oi, ei + or)
}

/// `a` (an even number of `f32`) as complex values, real and imaginary parts
/// interleaved.
fn as_complex(a: &mut [f32]) -> &mut [Complex32] {
    let n = a.len() / 2;
    // SAFETY: `Complex<f32>` is `repr(C)` `{re: f32, im: f32}` (size 8, alignment 4),
    // so `n` of them occupy exactly the first `2n` floats of `a`, which is borrowed
    // mutably for the result's lifetime.
    unsafe { std::slice::from_raw_parts_mut(a.as_mut_ptr().cast::<Complex32>(), n) }
}
