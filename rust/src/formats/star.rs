//! RELION STAR files: a writer over `impl Write` and a reader into typed columns.
//!
//! # Writing
//! A file is a list of [`Block`]s: loop tables (`data_<name>`, `loop_`, `_label #n`,
//! one row per line) or key-value blocks (`_label value` lines). Column sets such as
//! RELION5 particles or pytom's defaults are just columns the caller builds.
//!
//! Number formatting (round trip guaranteed): floats are written as the *shortest*
//! decimal string that parses back to the same `f32` (or `f64`) value, always with a
//! `.` or an exponent so they stay floats (`1.0`, `0.1`, `-1758.2`, `1e-7`); plain
//! notation for `1e-5 <= |v| < 1e16`, exponent notation outside; `nan`, `inf`, `-inf`.
//! Integers are written in full. Strings that are empty, contain whitespace, or start
//! with a quote, `#`, `_`, `$`, `;`, or a reserved word (`data_`, `loop_`, `save_`,
//! `global_`, `stop_`) are quoted with `"` (or `'` if they contain `"`); a string
//! holding both quote characters followed by whitespace cannot be written (error).
//! Rows are formatted in parallel chunks (rayon) and written in order.
//!
//! # Reading
//! [`read_star`] parses multi-block files with comments, quoted values, `data_` with an
//! empty name, key-value and loop blocks, and `;` text fields. Each column becomes
//! `i64` if every value parses as an integer, else `f64` if every value parses as a
//! float, else strings.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// One column of a loop table.
#[derive(Clone, Copy, Debug)]
pub enum Column<'a> {
    /// 32-bit floats (shortest `f32` round-trip formatting).
    F32(&'a [f32]),
    /// 64-bit floats (shortest `f64` round-trip formatting).
    F64(&'a [f64]),
    /// Integers.
    I64(&'a [i64]),
    /// Strings (quoted when needed).
    Str(&'a [String]),
    /// Fixed-width UTF-32 strings as numpy stores `<U{width}` arrays: row `r` is
    /// `data[r * width..(r + 1) * width]`, padded with NUL.
    Utf32 {
        /// Code points, `rows * width` of them.
        data: &'a [u32],
        /// Code points per row (`>= 1`).
        width: usize,
    },
}

impl Column<'_> {
    fn len(&self) -> usize {
        match self {
            Column::F32(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::Utf32 { data, width } => data.len() / (*width).max(1),
        }
    }
}

/// One value of a key-value block.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A float.
    Float(f64),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

/// A data block to write.
#[derive(Clone, Debug)]
pub enum Block<'a> {
    /// `data_<name>` + `loop_` table; all columns must have the same length.
    Loop {
        /// Block name without `data_`.
        name: String,
        /// `(label, column)` pairs; labels with or without the leading `_`.
        columns: Vec<(String, Column<'a>)>,
    },
    /// `data_<name>` + `_label value` lines.
    Pairs {
        /// Block name without `data_`.
        name: String,
        /// `(label, value)` pairs.
        items: Vec<(String, Value)>,
    },
}

/// A column read from a file.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    /// Every value parsed as an integer.
    I64(Vec<i64>),
    /// Every value parsed as a float (and not all as integers).
    F64(Vec<f64>),
    /// Anything else.
    Str(Vec<String>),
}

/// A block read from a file; a key-value block is a one-row table.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadBlock {
    /// Block name without `data_` (may be empty).
    pub name: String,
    /// `true` for a `loop_` table, `false` for a key-value block.
    pub is_loop: bool,
    /// `(label without the leading _, values)` in file order.
    pub columns: Vec<(String, ColumnData)>,
}

fn float_str(
    out: &mut String,
    v: f64,
    text: std::fmt::Arguments<'_>,
    exp: std::fmt::Arguments<'_>,
) {
    if v.is_nan() {
        out.push_str("nan");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
    } else {
        let a = v.abs();
        let start = out.len();
        if a != 0.0 && !(1e-5..1e16).contains(&a) {
            let _ = out.write_fmt(exp);
        } else {
            let _ = out.write_fmt(text);
            if !out[start..].contains('.') {
                out.push_str(".0");
            }
        }
    }
}

const POW10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Shortest round-trip digits of a normal `f32` with `1e-5 <= |v| < 2^25`, exactly
/// (integer arithmetic on the rounding interval, no float error); `None` outside that
/// range. Returns `(digits, k)` meaning `digits * 10^k`, with `k < 0`.
fn shortest_f32(v: f32) -> Option<(u64, i32)> {
    let a = v.abs();
    if !(1e-5..33_554_432.0).contains(&a) {
        return None;
    }
    let bits = a.to_bits();
    let exp_field = (bits >> 23) & 0xff;
    let frac = bits & 0x7f_ffff;
    let m = u128::from(frac | (1 << 23));
    let e = exp_field as i32 - 150; // a = m * 2^e
    let p = (2 - e) as u32; // unit 2^(e-2) = 2^-p, p in [1, 42]
    let closed = m % 2 == 0; // ties round to even: interval ends included
    let (n_v, n_hi) = (4 * m, 4 * m + 2);
    let n_lo = if frac == 0 && exp_field > 1 {
        4 * m - 1
    } else {
        4 * m - 2
    };
    // Start with at least 10 significant digits: k0 = e10 - 9 where e10 <= log10(a)
    // (floor(e2 * log10(2)) is floor(log10 a) or one less).
    let e2 = exp_field as i32 - 127;
    let e10 = (e2 * 1233) >> 12;
    let k0 = e10 - 9;
    let scale = u128::from(POW10[usize::try_from(-k0).ok()?]); // -k0 in [5, 16]
    let floor_q = |n: u128| ((n * scale) >> p) as u64;
    let ceil_q = |n: u128| ((n * scale + (1u128 << p) - 1) >> p) as u64;
    // Level j (k = k0 + j): the admissible digit strings are lo(j)..=hi(j). Keep
    // floor/ceil of the bounds at each level; nested floor/ceil by 10 is exact.
    // closed: lo = ceil(L), hi = floor(H); open: lo = floor(L) + 1, hi = ceil(H) - 1.
    let (mut lb, mut hb) = if closed {
        (ceil_q(n_lo), floor_q(n_hi))
    } else {
        (floor_q(n_lo), ceil_q(n_hi))
    };
    let bounds = |lb: u64, hb: u64| {
        if closed {
            (lb, hb)
        } else {
            (lb + 1, hb.saturating_sub(1))
        }
    };
    let next = |lb: u64, hb: u64| {
        if closed {
            (lb.div_ceil(10), hb / 10)
        } else {
            (lb / 10, hb.div_ceil(10))
        }
    };
    let (lo0, hi0) = bounds(lb, hb);
    if lo0 > hi0 {
        return None; // cannot happen with 10+ digits; stay safe
    }
    let mut j = 0usize;
    loop {
        let (nl, nh) = next(lb, hb);
        let (lo, hi) = bounds(nl, nh);
        if lo > hi || lo == 0 {
            break;
        }
        lb = nl;
        hb = nh;
        j += 1;
    }
    let (lo, hi) = bounds(lb, hb);
    let twice = floor_q(2 * n_v) / POW10[j]; // floor(2 a / 10^(k0 + j))
    let nearest = twice.div_ceil(2); // round half up
    Some((nearest.clamp(lo, hi), k0 + j as i32))
}

fn push_f32(out: &mut String, v: f32) {
    let Some((digits, k)) = shortest_f32(v) else {
        float_str(
            out,
            f64::from(v),
            format_args!("{v}"),
            format_args!("{v:e}"),
        );
        return;
    };
    if v < 0.0 {
        out.push('-');
    }
    let mut buf = [0u8; 20];
    let mut n = 0;
    let mut d = digits;
    while d > 0 || n == 0 {
        buf[19 - n] = b'0' + (d % 10) as u8;
        d /= 10;
        n += 1;
    }
    let text = &buf[20 - n..];
    let frac_len = (-k) as usize;
    fn as_str(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or("0") // always ASCII digits
    }
    if k >= 0 {
        out.push_str(as_str(text));
        for _ in 0..k {
            out.push('0');
        }
        out.push_str(".0");
    } else if n > frac_len {
        out.push_str(as_str(&text[..n - frac_len]));
        out.push('.');
        out.push_str(as_str(&text[n - frac_len..]));
    } else {
        out.push_str("0.");
        for _ in 0..frac_len - n {
            out.push('0');
        }
        out.push_str(as_str(text));
    }
}

fn push_f64(out: &mut String, v: f64) {
    float_str(out, v, format_args!("{v}"), format_args!("{v:e}"));
}

fn push_value_str(out: &mut String, s: &str) -> Result<()> {
    const RESERVED: [&str; 5] = ["data_", "loop_", "save_", "global_", "stop_"];
    let needs_quote = s.is_empty()
        || s.chars().any(char::is_whitespace)
        || s.starts_with(['"', '\'', '#', '_', '$', ';'])
        || RESERVED
            .iter()
            .any(|r| s.get(..r.len()).is_some_and(|h| h.eq_ignore_ascii_case(r)));
    if !needs_quote {
        out.push_str(s);
        return Ok(());
    }
    if s.contains(['\n', '\r']) {
        return Err(Error::invalid(format!(
            "STAR value {s:?} contains a line break; remove it"
        )));
    }
    // A quote closes a quoted value only when followed by whitespace.
    let closes = |q: char| {
        let b = s.as_bytes();
        b.iter()
            .enumerate()
            .any(|(i, &c)| c as char == q && b.get(i + 1).is_none_or(|n| n.is_ascii_whitespace()))
    };
    let q = if !closes('"') {
        '"'
    } else if !closes('\'') {
        '\''
    } else {
        return Err(Error::invalid(format!(
            "STAR value {s:?} cannot be quoted (holds both quote characters before spaces)"
        )));
    };
    out.push(q);
    out.push_str(s);
    out.push(q);
    Ok(())
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.chars().any(char::is_whitespace) || name.contains(['"', '\'']) {
        return Err(Error::invalid(format!(
            "STAR {kind} {name:?} contains whitespace or quotes; use a plain name"
        )));
    }
    Ok(())
}

fn label(name: &str) -> Result<String> {
    let bare = name.strip_prefix('_').unwrap_or(name);
    if bare.is_empty() {
        return Err(Error::invalid("empty STAR column label; name every column"));
    }
    check_name("label", bare)?;
    Ok(format!("_{bare}"))
}

const ROWS_PER_TASK: usize = 8192;
const TASKS_PER_ROUND: usize = 32;

fn write_loop<W: Write>(w: &mut W, columns: &[(String, Column<'_>)]) -> Result<()> {
    let n_rows = columns.first().map_or(0, |(_, c)| c.len());
    for (name, c) in columns {
        if c.len() != n_rows {
            return Err(Error::invalid(format!(
                "STAR column {name} has {} rows but the first column has {n_rows}; pass equal lengths",
                c.len()
            )));
        }
    }
    let mut head = String::from("loop_\n");
    for (i, (name, _)) in columns.iter().enumerate() {
        let _ = writeln!(head, "{} #{}", label(name)?, i + 1);
    }
    w.write_all(head.as_bytes()).map_err(io_err)?;
    let format_rows = |start: usize| -> Result<String> {
        let end = (start + ROWS_PER_TASK).min(n_rows);
        let mut s = String::with_capacity((end - start) * 16 * columns.len());
        let mut scratch = String::new();
        for r in start..end {
            for (j, (_, c)) in columns.iter().enumerate() {
                if j > 0 {
                    s.push(' ');
                }
                match c {
                    Column::F32(v) => push_f32(&mut s, v[r]),
                    Column::F64(v) => push_f64(&mut s, v[r]),
                    Column::I64(v) => {
                        let _ = write!(s, "{}", v[r]);
                    }
                    Column::Str(v) => push_value_str(&mut s, &v[r])?,
                    Column::Utf32 { data, width } => {
                        scratch.clear();
                        for &cp in &data[r * width..(r + 1) * width] {
                            if cp == 0 {
                                break;
                            }
                            scratch.push(char::from_u32(cp).ok_or_else(|| {
                                Error::invalid(format!("invalid code point {cp:#x} in a string"))
                            })?);
                        }
                        push_value_str(&mut s, &scratch)?;
                    }
                }
            }
            s.push('\n');
        }
        Ok(s)
    };
    let starts: Vec<usize> = (0..n_rows).step_by(ROWS_PER_TASK).collect();
    for round in starts.chunks(TASKS_PER_ROUND) {
        let parts: Vec<Result<String>> = round.par_iter().map(|&s| format_rows(s)).collect();
        for part in parts {
            w.write_all(part?.as_bytes()).map_err(io_err)?;
        }
    }
    Ok(())
}

fn io_err(source: std::io::Error) -> Error {
    Error::Io {
        path: "<STAR output>".to_string(),
        source,
    }
}

/// Write `blocks` as a STAR file to `w`.
///
/// # Errors
/// [`Error::InvalidArgument`] for unequal column lengths, bad labels or unquotable
/// strings; [`Error::Io`] when writing fails.
pub fn write_star<W: Write>(w: &mut W, blocks: &[Block<'_>]) -> Result<()> {
    for (k, block) in blocks.iter().enumerate() {
        let name = match block {
            Block::Loop { name, .. } | Block::Pairs { name, .. } => name,
        };
        check_name("block name", name)?;
        let sep = if k == 0 { "" } else { "\n" };
        write!(w, "{sep}# version 50001\n\ndata_{name}\n\n").map_err(io_err)?;
        match block {
            Block::Loop { columns, .. } => write_loop(w, columns)?,
            Block::Pairs { items, .. } => {
                let mut s = String::new();
                for (key, v) in items {
                    s.push_str(&label(key)?);
                    s.push(' ');
                    match v {
                        Value::Float(f) => push_f64(&mut s, *f),
                        Value::Int(i) => {
                            let _ = write!(s, "{i}");
                        }
                        Value::Str(t) => push_value_str(&mut s, t)?,
                    }
                    s.push('\n');
                }
                w.write_all(s.as_bytes()).map_err(io_err)?;
            }
        }
    }
    w.flush().map_err(io_err)
}

/// Write `blocks` to `path` atomically (see [`super::write_atomic`]).
///
/// # Errors
/// As [`write_star`], plus [`Error::Io`] if `path` exists and `overwrite` is false.
pub fn write_star_file(
    path: &std::path::Path,
    blocks: &[Block<'_>],
    overwrite: bool,
) -> Result<()> {
    super::write_atomic(path, overwrite, |w| write_star(w, blocks))
}

// ---------------------------------------------------------------------------------
// Reading

/// Split one line into tokens; `#` outside quotes starts a comment.
fn tokenize<'a>(line: &'a str, out: &mut Vec<(Cow<'a, str>, bool)>) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] == b'#' {
            return;
        }
        if b[i] == b'"' || b[i] == b'\'' {
            let q = b[i];
            let mut j = i + 1;
            // Closing quote: a quote followed by whitespace or end of line.
            while j < b.len()
                && !(b[j] == q && (j + 1 == b.len() || b[j + 1].is_ascii_whitespace()))
            {
                j += 1;
            }
            out.push((Cow::Borrowed(&line[i + 1..j.min(b.len())]), true));
            i = j + 1;
        } else {
            let mut j = i;
            while j < b.len() && !b[j].is_ascii_whitespace() {
                j += 1;
            }
            out.push((Cow::Borrowed(&line[i..j]), false));
            i = j;
        }
    }
}

/// Type column `c` of a row-major table with `n_cols` columns (as text when
/// `as_text`).
fn typed(values: &[Cow<'_, str>], c: usize, n_cols: usize, as_text: bool) -> ColumnData {
    let col = || values.iter().skip(c).step_by(n_cols);
    if as_text {
        return ColumnData::Str(col().map(|s| s.to_string()).collect());
    }
    let n = values.len() / n_cols;
    if n > 0 {
        if let Ok(v) = col()
            .map(|s| s.parse::<i64>())
            .collect::<std::result::Result<Vec<_>, _>>()
        {
            return ColumnData::I64(v);
        }
    }
    if let Ok(v) = col()
        .map(|s| s.parse::<f64>())
        .collect::<std::result::Result<Vec<_>, _>>()
    {
        return ColumnData::F64(v);
    }
    ColumnData::Str(col().map(|s| s.to_string()).collect())
}

enum State {
    Outside,
    Pairs,
    LoopLabels,
    LoopRows,
}

struct Building<'a> {
    name: String,
    is_loop: bool,
    labels: Vec<String>,
    values: Vec<Cow<'a, str>>,
    first_line: usize,
}

fn finish(b: Building<'_>, path: &str, as_text: bool, out: &mut Vec<ReadBlock>) -> Result<()> {
    let n_cols = b.labels.len();
    if b.is_loop {
        if n_cols == 0 {
            return Err(Error::Parse {
                path: path.to_string(),
                line: b.first_line,
                message: format!("loop_ in block data_{} has no labels", b.name),
            });
        }
        if b.values.len() % n_cols != 0 {
            return Err(Error::Parse {
                path: path.to_string(),
                line: b.first_line,
                message: format!(
                    "block data_{}: {} values do not fill rows of {n_cols} columns",
                    b.name,
                    b.values.len()
                ),
            });
        }
        let typed_cols: Vec<ColumnData> = (0..n_cols)
            .into_par_iter()
            .map(|c| typed(&b.values, c, n_cols, as_text))
            .collect();
        let columns = b.labels.into_iter().zip(typed_cols).collect();
        out.push(ReadBlock {
            name: b.name,
            is_loop: true,
            columns,
        });
    } else {
        let columns = b
            .labels
            .into_iter()
            .zip(b.values)
            .map(|(l, v)| (l, typed(std::slice::from_ref(&v), 0, 1, as_text)))
            .collect();
        out.push(ReadBlock {
            name: b.name,
            is_loop: false,
            columns,
        });
    }
    Ok(())
}

/// Parse STAR text. `path` names the source in error messages.
///
/// # Errors
/// [`Error::Parse`] for content outside a data block, a loop without labels, rows that
/// do not fill the columns, a key without a value, or an unterminated `;` text field.
pub fn read_star(text: &str, path: &str) -> Result<Vec<ReadBlock>> {
    read_star_as(text, path, false)
}

/// As [`read_star`]; with `as_text` every column is [`ColumnData::Str`] holding the
/// values as written (unquoted), so identifiers such as `007` keep their digits.
///
/// # Errors
/// As [`read_star`].
pub fn read_star_as(text: &str, path: &str, as_text: bool) -> Result<Vec<ReadBlock>> {
    let mut out = Vec::new();
    let mut state = State::Outside;
    let mut cur: Option<Building> = None;
    let mut toks: Vec<(Cow<'_, str>, bool)> = Vec::new();
    let mut pending_key: Option<String> = None;
    let err = |line: usize, message: String| Error::Parse {
        path: path.to_string(),
        line,
        message,
    };
    // a UTF-8 byte-order mark (files saved by some Windows editors) is not data
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate();
    while let Some((ln, line)) = lines.next() {
        let lineno = ln + 1;
        // `;` text field: lines up to the next line starting with `;` form one value.
        if let Some(rest) = line.strip_prefix(';') {
            let mut value = rest.to_string();
            let mut closed = false;
            for (_, l) in lines.by_ref() {
                if l.starts_with(';') {
                    closed = true;
                    break;
                }
                value.push('\n');
                value.push_str(l);
            }
            if !closed {
                return Err(err(lineno, "unterminated ';' text field".to_string()));
            }
            toks.clear();
            toks.push((Cow::Owned(value), true));
        } else {
            toks.clear();
            tokenize(line, &mut toks);
        }
        for (tok, quoted) in toks.drain(..) {
            let lower_starts = |p: &str| {
                !quoted
                    && tok
                        .get(..p.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(p))
            };
            if lower_starts("data_") {
                if let Some(k) = pending_key.take() {
                    return Err(err(lineno, format!("key _{k} has no value")));
                }
                if let Some(b) = cur.take() {
                    finish(b, path, as_text, &mut out)?;
                }
                cur = Some(Building {
                    name: tok[5..].to_string(),
                    is_loop: false,
                    labels: Vec::new(),
                    values: Vec::new(),
                    first_line: lineno,
                });
                state = State::Pairs;
                continue;
            }
            let Some(b) = cur.as_mut() else {
                if !quoted && tok.eq_ignore_ascii_case("global_") {
                    continue;
                }
                return Err(err(
                    lineno,
                    format!("{tok:?} appears before any data_ block"),
                ));
            };
            if lower_starts("loop_") {
                if let Some(k) = pending_key.take() {
                    return Err(err(lineno, format!("key _{k} has no value")));
                }
                if b.is_loop || !b.labels.is_empty() {
                    // A second table in the same block: start a new block of the same name.
                    let name = b.name.clone();
                    if let Some(done) = cur.take() {
                        finish(done, path, as_text, &mut out)?;
                    }
                    cur = Some(Building {
                        name,
                        is_loop: true,
                        labels: Vec::new(),
                        values: Vec::new(),
                        first_line: lineno,
                    });
                } else {
                    b.is_loop = true;
                    b.first_line = lineno;
                }
                state = State::LoopLabels;
                continue;
            }
            if lower_starts("stop_") || lower_starts("save_") || lower_starts("global_") {
                continue;
            }
            let is_label = !quoted && tok.starts_with('_');
            match state {
                State::Outside => unreachable!("a block is open"),
                State::Pairs => {
                    if let Some(k) = pending_key.take() {
                        b.labels.push(k);
                        b.values.push(tok);
                    } else if is_label {
                        pending_key = Some(tok[1..].to_string());
                    } else {
                        return Err(err(
                            lineno,
                            format!("value {tok:?} in block data_{} has no key", b.name),
                        ));
                    }
                }
                State::LoopLabels if is_label => b.labels.push(tok[1..].to_string()),
                State::LoopLabels | State::LoopRows => {
                    if is_label {
                        // A key-value line after a table: continue as pairs of a new block.
                        let name = b.name.clone();
                        if let Some(done) = cur.take() {
                            finish(done, path, as_text, &mut out)?;
                        }
                        cur = Some(Building {
                            name,
                            is_loop: false,
                            labels: Vec::new(),
                            values: Vec::new(),
                            first_line: lineno,
                        });
                        pending_key = Some(tok[1..].to_string());
                        state = State::Pairs;
                    } else {
                        b.values.push(tok);
                        state = State::LoopRows;
                    }
                }
            }
        }
    }
    if let Some(k) = pending_key {
        return Err(err(text.lines().count(), format!("key _{k} has no value")));
    }
    if let Some(b) = cur.take() {
        finish(b, path, as_text, &mut out)?;
    }
    Ok(out)
}

/// Read and parse the STAR file at `path`.
///
/// # Errors
/// [`Error::Io`] if it cannot be read, else as [`read_star`].
pub fn read_star_file(path: &std::path::Path) -> Result<Vec<ReadBlock>> {
    read_star_file_as(path, false)
}

/// As [`read_star_file`], with [`read_star_as`]'s `as_text`.
///
/// # Errors
/// As [`read_star_file`].
pub fn read_star_file_as(path: &std::path::Path, as_text: bool) -> Result<Vec<ReadBlock>> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: shown.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    read_star_as(&text, &shown, as_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_not_data() {
        let blocks = read_star("\u{feff}data_p\nloop_\n_rlnX #1\n1.5\n", "bom.star").unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].name, "p");
    }

    fn f32s(v: f32) -> String {
        let mut s = String::new();
        push_f32(&mut s, v);
        s
    }

    #[test]
    fn float_formatting_round_trips() {
        assert_eq!(f32s(1.0), "1.0");
        assert_eq!(f32s(-1758.2), "-1758.2");
        assert_eq!(f32s(0.1), "0.1");
        assert_eq!(f32s(1e-7), "1e-7");
        assert_eq!(f32s(f32::NAN), "nan");
        assert_eq!(f32s(f32::NEG_INFINITY), "-inf");
        for v in [3.402_823_5e38_f32, 1.0e-45, 123_456.79, 0.333_333_34, -0.0] {
            assert_eq!(f32s(v).parse::<f32>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn fast_f32_path_is_shortest_and_exact() {
        let mut x = 0x2545_F491_u32;
        let mut checked = 0;
        for i in 0..400_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = if i % 4 == 0 {
                f32::from_bits(x)
            } else {
                // decimal-looking values (the common case: 11.8, 0.148684, ...)
                ((x % 2_000_000) as f32 - 1_000_000.0) / [1.0, 10.0, 1000.0, 1e6][i as usize % 4]
            };
            if !v.is_finite() {
                continue;
            }
            let ours = f32s(v);
            assert_eq!(
                ours.parse::<f32>().unwrap().to_bits(),
                v.to_bits(),
                "{v:e} -> {ours}"
            );
            if shortest_f32(v).is_some() {
                checked += 1;
                let sig = |s: &str| {
                    s.trim_start_matches('-')
                        .replace('.', "")
                        .trim_start_matches('0')
                        .trim_end_matches('0')
                        .len()
                };
                assert_eq!(sig(&ours), sig(&format!("{v}")), "{v} -> {ours}");
            }
        }
        assert!(checked > 100_000);
    }

    #[test]
    fn quoting() {
        let q = |s: &str| {
            let mut o = String::new();
            push_value_str(&mut o, s).map(|()| o)
        };
        assert_eq!(q("abc").unwrap(), "abc");
        assert_eq!(q("a b").unwrap(), "\"a b\"");
        assert_eq!(q("").unwrap(), "\"\"");
        assert_eq!(q("_x").unwrap(), "\"_x\"");
        assert_eq!(q("data_x").unwrap(), "\"data_x\"");
        assert_eq!(q("say \"hi\" now").unwrap(), "'say \"hi\" now'");
        assert!(q("a\nb").is_err());
    }
}
