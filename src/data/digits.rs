//! The embedded default data set: the UCI optical handwritten digits.
//!
//! 1797 images of 8×8 pixels with 17 grey levels (0 = no ink … 16 = full ink) and a label
//! 0–9 (the size of UCI's `optdigits.tes` and of scikit-learn's `load_digits`; CSV CRC-32
//! `2ebe3bb7`), shipped gzipped inside the crate (`src/data/digits.csv.gz`, 57 KB; CC BY 4.0, Alpaydin &
//! Kaynak, UCI Machine Learning Repository, doi:10.24432/C50P49). Each CSV row holds the 64
//! levels in raster order, then the label.
//!
//! The grey levels are the tokens directly: the palette is the 17 greys `level·255/16` on every
//! channel (in [-1, 1]: `level/8 − 1`), so the vocabulary is 18 (17 levels + SOS = 17). The
//! split is deterministic: the first 1437 rows train, the last 360 test.

use super::dataset::{ImageSet, Splits};
use crate::error::{Error, Result};
use crate::io::gzip::gunzip;
use crate::palette::Palette;
use crate::token::Token;

/// The gzipped CSV, embedded in the binary.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("digits.csv.gz");

/// Grey levels 0..=16.
pub const DIGIT_LEVELS: usize = 17;
/// Rows of the training split; the rest (360) are the test split.
pub const DIGITS_TRAIN_ROWS: usize = 1437;

/// The 17-grey palette in [-1, 1]: level `l` is `l·255/16` of 255, i.e. `l/8 − 1`.
pub fn digits_palette() -> Palette {
    let greys = (0..DIGIT_LEVELS).flat_map(|l| [l as f64 / 8.0 - 1.0; 3]).collect();
    Palette::new(greys).expect("17 greys in [-1, 1] form a valid palette")
}

/// Parses the digits CSV (64 levels then a label per row).
pub fn parse_digits_csv(text: &str, origin: &str) -> Result<ImageSet> {
    let mut set = ImageSet {
        width: 8,
        height: 8,
        tokens: Vec::new(),
        labels: Vec::new(),
        classes: (0..10).map(|d| d.to_string()).collect(),
        palette: digits_palette(),
    };
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.trim().split(',').collect();
        if fields.len() != 65 {
            return Err(Error::format(
                origin,
                format!("line {}: {} fields, expected 65", line_no + 1, fields.len()),
            ));
        }
        for (i, f) in fields.iter().enumerate() {
            let v: u16 = f.trim().parse().map_err(|_| {
                Error::format(origin, format!("line {}: '{f}' is not an integer", line_no + 1))
            })?;
            let bound = if i < 64 { DIGIT_LEVELS } else { 10 };
            if usize::from(v) >= bound {
                return Err(Error::format(
                    origin,
                    format!("line {}: value {v} out of range 0..{bound}", line_no + 1),
                ));
            }
            if i < 64 {
                set.tokens.push(Token::from(v));
            } else {
                set.labels.push(v);
            }
        }
    }
    set.validate(origin)?;
    Ok(set)
}

/// The embedded digits, split into the first 1437 (train) and last 360 (test) rows.
pub fn digits() -> Result<Splits> {
    let origin = "embedded digits.csv.gz";
    let csv = gunzip(DIGITS_CSV_GZ, origin)?;
    let text = String::from_utf8(csv).map_err(|_| Error::format(origin, "not UTF-8"))?;
    let all = parse_digits_csv(&text, origin)?;
    let n = all.len();
    Ok(Splits {
        train: all.slice(0..DIGITS_TRAIN_ROWS.min(n)),
        test: all.slice(DIGITS_TRAIN_ROWS.min(n)..n),
        name: format!(
            "digits (UCI, {} train / {} test)",
            DIGITS_TRAIN_ROWS.min(n),
            n - DIGITS_TRAIN_ROWS.min(n)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits_split_1437_360() {
        let s = digits().unwrap();
        assert_eq!((s.train.len(), s.test.len()), (1437, 360));
        assert_eq!(s.train.image(0)[..8], [0, 0, 5, 13, 9, 1, 0, 0]);
        assert_eq!(s.train.labels[..3], [0, 1, 2]);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line() {
        let err = parse_digits_csv("1,2,3\n", "d.csv").unwrap_err().to_string();
        assert!(err.contains("d.csv: line 1: 3 fields"), "{err}");
        let row = format!("{}17", "0,".repeat(64));
        assert!(parse_digits_csv(&row, "d.csv")
            .unwrap_err()
            .to_string()
            .contains("out of range 0..10"));
    }
}
