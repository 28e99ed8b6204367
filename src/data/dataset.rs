//! Token datasets: images already quantised to palette ids, with labels and the palette.
//!
//! Every data source (the embedded digits, CIFAR-10 binaries, image folders) ends up as an
//! [`ImageSet`]: `N` images of `height × width` tokens in raster order (`y·W + x`), one class
//! label per image, and the palette (colour `k` in [-1, 1] RGB) that maps tokens back to pixels.

use crate::error::{Error, Result};
use crate::palette::Palette;
use crate::token::Token;

/// Quantised images with labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub width: usize,
    pub height: usize,
    /// `N · height · width` palette ids, image after image, each in raster order.
    pub tokens: Vec<Token>,
    /// One class per image.
    pub labels: Vec<u16>,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// The palette: colour `k` as RGB in [-1, 1].
    pub palette: Palette,
}

impl ImageSet {
    /// Tokens per image.
    pub fn seq_len(&self) -> usize {
        self.width * self.height
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The tokens of image `i`.
    pub fn image(&self, i: usize) -> &[Token] {
        let n = self.seq_len();
        &self.tokens[i * n..(i + 1) * n]
    }

    /// The images `range` as a new set (same palette and classes).
    pub fn slice(&self, range: std::ops::Range<usize>) -> ImageSet {
        let n = self.seq_len();
        ImageSet {
            width: self.width,
            height: self.height,
            tokens: self.tokens[range.start * n..range.end * n].to_vec(),
            labels: self.labels[range].to_vec(),
            classes: self.classes.clone(),
            palette: self.palette.clone(),
        }
    }

    /// Checks the invariants: sizes agree, every token is a palette id, every label a class.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |msg: String| Err(Error::format(origin, msg));
        if self.seq_len() == 0 {
            return err("empty image size".into());
        }
        if self.tokens.len() != self.labels.len() * self.seq_len() {
            return err(format!(
                "{} tokens for {} images of {} pixels",
                self.tokens.len(),
                self.labels.len(),
                self.seq_len()
            ));
        }
        if let Some(&t) = self.tokens.iter().find(|&&t| t as usize >= self.palette.len()) {
            return err(format!(
                "token {t} is outside the palette of {} colours",
                self.palette.len()
            ));
        }
        if let Some(&l) = self.labels.iter().find(|&&l| usize::from(l) >= self.classes.len().max(1))
        {
            return err(format!("label {l} is outside the {} classes", self.classes.len()));
        }
        Ok(())
    }

    /// A horizontally mirrored copy of image `i`'s tokens.
    pub fn flipped(&self, i: usize) -> Vec<Token> {
        self.image(i).chunks(self.width).flat_map(|row| row.iter().rev().copied()).collect()
    }
}

/// A train/test split of one data source.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: ImageSet,
    pub test: ImageSet,
    /// A short description for logs, e.g. "digits (UCI, 1437 train / 360 test)".
    pub name: String,
}
