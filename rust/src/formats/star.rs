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
}

impl Column<'_> {
    fn len(&self) -> usize {
        match self {
            Column::F32(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::Str(v) => v.len(),
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

fn push_f32(out: &mut String, v: f32) {
    float_str(
        out,
        f64::from(v),
        format_args!("{v}"),
        format_args!("{v:e}"),
    );
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
fn tokenize(line: &str, out: &mut Vec<(String, bool)>) {
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
            out.push((line[i + 1..j.min(b.len())].to_string(), true));
            i = j + 1;
        } else {
            let mut j = i;
            while j < b.len() && !b[j].is_ascii_whitespace() {
                j += 1;
            }
            out.push((line[i..j].to_string(), false));
            i = j;
        }
    }
}

fn typed(values: Vec<String>) -> ColumnData {
    if let Ok(v) = values
        .iter()
        .map(|s| s.parse::<i64>())
        .collect::<std::result::Result<Vec<_>, _>>()
    {
        if !values.is_empty() {
            return ColumnData::I64(v);
        }
    }
    if let Ok(v) = values
        .iter()
        .map(|s| s.parse::<f64>())
        .collect::<std::result::Result<Vec<_>, _>>()
    {
        return ColumnData::F64(v);
    }
    ColumnData::Str(values)
}

enum State {
    Outside,
    Pairs,
    LoopLabels,
    LoopRows,
}

struct Building {
    name: String,
    is_loop: bool,
    labels: Vec<String>,
    values: Vec<String>,
    first_line: usize,
}

fn finish(b: Building, path: &str, out: &mut Vec<ReadBlock>) -> Result<()> {
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
        let n_rows = b.values.len() / n_cols;
        let mut cols: Vec<Vec<String>> = (0..n_cols).map(|_| Vec::with_capacity(n_rows)).collect();
        for (i, v) in b.values.into_iter().enumerate() {
            cols[i % n_cols].push(v);
        }
        let columns = b
            .labels
            .into_iter()
            .zip(cols.into_par_iter().map(typed).collect::<Vec<_>>())
            .collect();
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
            .map(|(l, v)| (l, typed(vec![v])))
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
    let mut out = Vec::new();
    let mut state = State::Outside;
    let mut cur: Option<Building> = None;
    let mut toks: Vec<(String, bool)> = Vec::new();
    let mut pending_key: Option<String> = None;
    let err = |line: usize, message: String| Error::Parse {
        path: path.to_string(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    while let Some((ln, line)) = lines.next() {
        let lineno = ln + 1;
        // `;` text field: lines up to the next line starting with `;` form one value.
        if line.starts_with(';') {
            let mut value = line[1..].to_string();
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
            toks.push((value, true));
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
                    finish(b, path, &mut out)?;
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
                        finish(done, path, &mut out)?;
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
                            finish(done, path, &mut out)?;
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
        finish(b, path, &mut out)?;
    }
    Ok(out)
}

/// Read and parse the STAR file at `path`.
///
/// # Errors
/// [`Error::Io`] if it cannot be read, else as [`read_star`].
pub fn read_star_file(path: &std::path::Path) -> Result<Vec<ReadBlock>> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: shown.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    read_star(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

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
