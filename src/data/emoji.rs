//! The emoji data set: colour Image GPT on real pictures, read straight from the npm package
//! `emoji-datasource@16.0.0` (`npm pack emoji-datasource@16.0.0` writes the `.tgz`).
//!
//! The package holds `package/emoji.json` — one entry per emoji with its code points
//! (`unified`), `category`, position on the sprite sheets (`sheet_x`, `sheet_y`) and which
//! vendors drew it (`has_img_<vendor>`) — and one RGBA sprite sheet per vendor,
//! `package/img/<vendor>/sheets/32.png`, whose cells are 34 px: a 1 px border around each
//! 32×32 emoji. The protocol (SPEC §14, "The emoji data set"):
//!
//! 1. vendors `twitter` and `google` by default (their images are CC-BY 4.0 and Apache 2.0;
//!    Apple's and Facebook's are not licensed for reuse and must be asked for);
//! 2. an entry is used for a vendor iff `has_img_<vendor>` is true and its `category` is not
//!    `Component` (skin-tone and hair swatches, not pictures); its class is the index of its
//!    category among the sorted category names of the entries used;
//! 3. its tile is the 32×32 RGBA block at `(34·sheet_x + 1, 34·sheet_y + 1)`, composited over
//!    white exactly as transformers' `ImageGPTImageProcessor` does with `do_convert_rgb`
//!    ([`RgbaImage::over_white`]), then resized to the model's size with Pillow's bilinear filter
//!    (16×16 by default; 32×32 keeps the tile as it is);
//! 4. it is a test image iff `crc32(unified) % 5 == 0`, so one emoji never sits in both splits,
//!    whichever vendor drew it;
//! 5. images are listed vendor by vendor (in the order the vendors are given), each vendor's in
//!    `emoji.json` order.
//!
//! `PATH` in `--data emoji:PATH` is the `.tgz` exactly as npm writes it (gunzipped and read as a
//! tar archive in memory, see `io::gzip` and `io::tar`) or the folder it unpacks to.

use super::sources::RgbSet;
use crate::error::{Error, Result};
use crate::io::gzip::{crc32, gunzip};
use crate::io::json::{parse_json, Json};
use crate::io::tar::{find, read_tar};
use crate::palette::{decode_image_rgba, RgbImage, RgbaImage};
use std::path::{Path, PathBuf};

/// The vendors used unless `--vendors` says otherwise: the two with open image licences.
pub const DEFAULT_VENDORS: [&str; 2] = ["twitter", "google"];
/// Every vendor the package draws.
pub const VENDORS: [&str; 4] = ["twitter", "google", "apple", "facebook"];
/// Vendors whose images are not licensed for reuse: using them prints a warning.
const UNLICENSED: [&str; 2] = ["apple", "facebook"];
/// Side of an emoji on the `32.png` sheets, and of its cell (1 px of padding on every side).
const TILE: usize = 32;
const CELL: usize = TILE + 2;
/// The category that holds colour swatches rather than pictures.
const COMPONENT: &str = "Component";

/// How to read the emoji package.
#[derive(Clone, Debug, PartialEq)]
pub struct EmojiOptions {
    /// Vendors, in the order their images are listed (each one of [`VENDORS`]).
    pub vendors: Vec<String>,
    /// Side of the square images the tiles are resized to.
    pub size: usize,
}

impl EmojiOptions {
    /// Parses a `--vendors` list (`twitter,google`), checking every name.
    pub fn parse_vendors(list: &str) -> Result<Vec<String>> {
        let vendors: Vec<String> = list.split(',').map(|v| v.trim().to_string()).collect();
        for (i, v) in vendors.iter().enumerate() {
            if !VENDORS.contains(&v.as_str()) {
                return Err(Error::invalid(format!(
                    "--vendors: unknown vendor '{v}' (known: {})",
                    VENDORS.join(", ")
                )));
            }
            if vendors[..i].contains(v) {
                return Err(Error::invalid(format!("--vendors: '{v}' is listed twice")));
            }
        }
        Ok(vendors)
    }

    /// The vendors that need a licence warning.
    pub fn unlicensed(&self) -> Vec<&str> {
        self.vendors.iter().map(String::as_str).filter(|v| UNLICENSED.contains(v)).collect()
    }
}

/// One entry of `emoji.json`, as far as the protocol reads it.
pub(crate) struct Entry {
    pub(crate) unified: String,
    pub(crate) category: String,
    sheet_x: usize,
    sheet_y: usize,
    /// `has_img_<vendor>` for each vendor of the options, in their order.
    pub(crate) drawn_by: Vec<bool>,
}

/// One emoji image of the data set.
#[derive(Clone, Debug, PartialEq)]
pub struct EmojiImage {
    pub vendor: String,
    /// The code points, as in `emoji.json` (e.g. `1F600`).
    pub unified: String,
    /// Index of its category in [`EmojiSet::classes`].
    pub label: u16,
    /// Whether the split rule puts it in the test set.
    pub test: bool,
    /// The tile over white, resized to the requested size.
    pub image: RgbImage,
}

/// The images of the emoji package, in the protocol's order, and the class names.
#[derive(Clone, Debug, PartialEq)]
pub struct EmojiSet {
    pub images: Vec<EmojiImage>,
    pub classes: Vec<String>,
}

/// Reads the emoji package at `path` (see the module doc); `progress` hears of each phase.
pub fn read_emoji(path: &Path, opts: &EmojiOptions, progress: &dyn Fn(&str)) -> Result<EmojiSet> {
    if opts.vendors.is_empty() || opts.size == 0 {
        return Err(Error::invalid("emoji: need at least one vendor and a positive image size"));
    }
    for vendor in opts.unlicensed() {
        progress(&format!(
            "warning: {vendor}'s emoji images are not licensed for reuse; do not publish what you train on them"
        ));
    }
    progress(&format!("reading the emoji package {}", path.display()));
    let package = Package::open(path)?;
    let entries = parse_entries(&package.read("emoji.json")?, &package.name("emoji.json"), opts)?;
    let classes = class_names(&entries);
    let mut images = Vec::new();
    for (v, vendor) in opts.vendors.iter().enumerate() {
        let sheet_file = format!("img/{vendor}/sheets/32.png");
        let sheet_name = package.name(&sheet_file);
        let sheet = decode_image_rgba(&package.read(&sheet_file)?, &sheet_name)?;
        for (i, e) in entries.iter().enumerate().filter(|(_, e)| e.drawn_by[v]) {
            let tile = sheet.crop(CELL * e.sheet_x + 1, CELL * e.sheet_y + 1, TILE, TILE);
            let tile = tile.ok_or_else(|| outside_sheet(&package, i, e, &sheet_name, &sheet))?;
            images.push(EmojiImage {
                vendor: vendor.clone(),
                unified: e.unified.clone(),
                label: classes.iter().position(|c| *c == e.category).unwrap_or_default() as u16,
                test: is_test(&e.unified),
                image: tile.over_white().resize_pillow(opts.size, opts.size)?,
            });
        }
    }
    let tests = images.iter().filter(|i| i.test).count();
    progress(&format!(
        "{} train / {tests} test emoji of {} ({} classes), {s}×{s} pixels",
        images.len() - tests,
        opts.vendors.join(", "),
        classes.len(),
        s = opts.size
    ));
    Ok(EmojiSet { images, classes })
}

/// The emoji package as the train and test RGB sets of a data source.
pub(super) fn emoji_splits(
    path: &Path,
    opts: &EmojiOptions,
    progress: &dyn Fn(&str),
) -> Result<(RgbSet, RgbSet)> {
    let set = read_emoji(path, opts, progress)?;
    let blank = || RgbSet::new(opts.size, set.classes.clone());
    let (mut train, mut test) = (blank(), blank());
    for e in &set.images {
        let split = if e.test { &mut test } else { &mut train };
        split.push(e.image.bytes(), e.label);
    }
    Ok((train, test))
}

/// The split rule: an emoji is a test image iff the CRC-32 of its `unified` string is 0 mod 5.
pub fn is_test(unified: &str) -> bool {
    crc32(unified.as_bytes()).is_multiple_of(5)
}

/// The error for a tile that does not lie inside its sheet.
fn outside_sheet(package: &Package, i: usize, e: &Entry, sheet: &str, img: &RgbaImage) -> Error {
    Error::format(
        package.name("emoji.json"),
        format!(
            "entry {i} ({}): sheet_x {}, sheet_y {} puts its tile outside {sheet} ({}×{} pixels)",
            e.unified, e.sheet_x, e.sheet_y, img.width, img.height
        ),
    )
}

/// The entries of `emoji.json` that at least one vendor of `opts` drew, `Component` excluded.
pub(crate) fn parse_entries(bytes: &[u8], origin: &str, opts: &EmojiOptions) -> Result<Vec<Entry>> {
    let json = parse_json(bytes, origin)?;
    let list = json
        .as_array()
        .ok_or_else(|| Error::format(origin, "expected a JSON array of emoji entries"))?;
    let mut entries = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let e = parse_entry(item, i, origin, opts)?;
        if e.category != COMPONENT && e.drawn_by.iter().any(|&d| d) {
            entries.push(e);
        }
    }
    if entries.is_empty() {
        return Err(Error::format(
            origin,
            format!("no entry is drawn by {} outside '{COMPONENT}'", opts.vendors.join(", ")),
        ));
    }
    Ok(entries)
}

/// One entry; errors name the entry by index and, once known, by its `unified` code.
fn parse_entry(item: &Json, i: usize, origin: &str, opts: &EmojiOptions) -> Result<Entry> {
    let unified = item.get("unified").and_then(Json::as_str);
    let who = match unified {
        Some(u) => format!("entry {i} ({u})"),
        None => format!("entry {i}"),
    };
    let bad = |what: &str| Error::format(origin, format!("{who}: {what}"));
    let text = |key: &str| {
        item.get(key).and_then(Json::as_str).ok_or_else(|| bad(&format!("'{key}' is not a string")))
    };
    let index = |key: &str| {
        item.get(key)
            .and_then(Json::as_usize)
            .ok_or_else(|| bad(&format!("'{key}' is not a whole number")))
    };
    // A missing has_img_<vendor> means "not drawn"; anything but a boolean is an error.
    let drawn = |vendor: &String| match item.get(&format!("has_img_{vendor}")) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| bad(&format!("'has_img_{vendor}' is not a boolean"))),
    };
    Ok(Entry {
        unified: text("unified")?.to_string(),
        category: text("category")?.to_string(),
        sheet_x: index("sheet_x")?,
        sheet_y: index("sheet_y")?,
        drawn_by: opts.vendors.iter().map(drawn).collect::<Result<_>>()?,
    })
}

/// The class names: the distinct categories of the entries, sorted.
pub(crate) fn class_names(entries: &[Entry]) -> Vec<String> {
    let mut names: Vec<String> = entries.iter().map(|e| e.category.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// The emoji package: the gunzipped `.tgz` held in memory, or the folder it unpacks to.
enum Package {
    Archive { origin: String, tar: Vec<u8> },
    Folder(PathBuf),
}

impl Package {
    /// Opens `path`: a folder (holding `package/` or the package files themselves) or a `.tgz`.
    fn open(path: &Path) -> Result<Package> {
        if path.is_dir() {
            let inner = path.join("package");
            return Ok(Package::Folder(if inner.is_dir() { inner } else { path.to_path_buf() }));
        }
        let origin = path.display().to_string();
        let tar = gunzip(&crate::io::read_bytes(path)?, &origin)?;
        Ok(Package::Archive { origin, tar })
    }

    /// The bytes of the package file `rel` (e.g. `emoji.json`).
    fn read(&self, rel: &str) -> Result<Vec<u8>> {
        match self {
            Package::Archive { origin, tar } => {
                let entries = read_tar(tar, origin)?;
                Ok(find(&entries, &format!("package/{rel}"), origin)?.to_vec())
            }
            Package::Folder(dir) => crate::io::read_bytes(&dir.join(rel)),
        }
    }

    /// How errors name the package file `rel`: `x.tgz:package/emoji.json` or its path.
    fn name(&self, rel: &str) -> String {
        match self {
            Package::Archive { origin, .. } => format!("{origin}:package/{rel}"),
            Package::Folder(dir) => dir.join(rel).display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_lists_are_checked() {
        assert_eq!(EmojiOptions::parse_vendors("google, apple").unwrap(), ["google", "apple"]);
        assert!(EmojiOptions::parse_vendors("twitter,twitter").is_err());
        assert!(EmojiOptions::parse_vendors("samsung").is_err());
        let opts = EmojiOptions { vendors: vec!["apple".into(), "google".into()], size: 16 };
        assert_eq!(opts.unlicensed(), ["apple"]);
    }

    #[test]
    fn entries_name_themselves_in_errors() {
        let opts = EmojiOptions { vendors: vec!["twitter".into()], size: 16 };
        let json = br#"[{"unified":"1F600","category":"Smileys","sheet_x":1,"sheet_y":"2"}]"#;
        let e = parse_entries(json, "emoji.json", &opts).err().unwrap().to_string();
        assert!(e.contains("entry 0 (1F600)") && e.contains("sheet_y"), "{e}");
        let json = br#"[{"unified":"1F600","category":"Component","sheet_x":1,"sheet_y":2,"has_img_twitter":true}]"#;
        assert!(parse_entries(json, "emoji.json", &opts).is_err(), "only components left");
    }
}
