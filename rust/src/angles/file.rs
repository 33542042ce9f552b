//! Custom rotation lists from text files.
//!
//! One rotation per line: three ZXZ Euler angles `phi theta psi` in radians, separated by
//! whitespace and/or commas. Blank lines and lines starting with `#` are ignored. The
//! list is returned sorted by `(phi, theta, psi)`, as pytom-match-pick sorts custom lists,
//! so angle indices refer to the sorted order.

use std::path::Path;

use super::{sort_zxz, Zxz};
use crate::{Error, Result};

const FIX: &str = "each line must hold 3 ZXZ Euler angles in radians (phi theta psi)";

/// Parse the text of an angle file; `path` names it in error messages.
///
/// # Errors
/// [`Error::Parse`] naming the 1-based line of the first malformed line (not 3 numbers,
/// or a non-finite value), or line 0 if the file holds no rotation at all.
pub fn parse_angle_text(text: &str, path: &str) -> Result<Vec<Zxz>> {
    let mut out = Vec::new();
    // a UTF-8 byte-order mark (files saved by some Windows editors) is not data
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parse_err = |message: String| Error::Parse {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let fields: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|f| !f.is_empty())
            .collect();
        if fields.len() != 3 {
            return Err(parse_err(format!(
                "found {} values in {line:?}; {FIX}",
                fields.len()
            )));
        }
        let mut zxz = [0.0; 3];
        for (slot, field) in zxz.iter_mut().zip(&fields) {
            *slot = field
                .parse::<f64>()
                .map_err(|_| parse_err(format!("{field:?} is not a number; {FIX}")))?;
            if !slot.is_finite() {
                return Err(parse_err(format!("{field:?} is not finite; {FIX}")));
            }
        }
        out.push(zxz);
    }
    if out.is_empty() {
        return Err(Error::Parse {
            path: path.to_owned(),
            line: 0,
            message: format!("no rotations found; {FIX}"),
        });
    }
    sort_zxz(&mut out);
    Ok(out)
}

/// Read and parse an angle file (see the module docs), sorted by `(phi, theta, psi)`.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read, [`Error::Parse`] if it is malformed.
pub fn read_angle_file(path: &Path) -> Result<Vec<Zxz>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    parse_angle_text(&text, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mixed_separators_and_sorts() {
        let text = "# header\n\n0.3, 0.1 0.2\n0.1\t0.5,0.6\n  \n0.1 0.4 0.9\n";
        let a = parse_angle_text(text, "x.txt").unwrap();
        assert_eq!(a, vec![[0.1, 0.4, 0.9], [0.1, 0.5, 0.6], [0.3, 0.1, 0.2]]);
    }

    #[test]
    fn a_byte_order_mark_is_not_data() {
        let a = parse_angle_text("\u{feff}0.1 0.2 0.3\r\n0 0 0\r\n", "bom.txt").unwrap();
        assert_eq!(a, vec![[0.0, 0.0, 0.0], [0.1, 0.2, 0.3]]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, line) in [
            ("0 0 0\n1 2\n", 2),
            ("0 0 0\n\n# c\n1 2 x\n", 4),
            ("1 2 3 4\n", 1),
            ("1 nan 3\n", 1),
            ("", 0),
        ] {
            match parse_angle_text(text, "a.txt") {
                Err(Error::Parse { path, line: l, .. }) => {
                    assert_eq!(path, "a.txt");
                    assert_eq!(l, line, "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
