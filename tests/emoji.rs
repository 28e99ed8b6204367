//! The emoji data set (`--data emoji:PATH`) against fixtures made by transformers and Pillow
//! (`tests/fixtures/emoji/make_emoji_fixtures.py`):
//! - a small synthetic npm package (two vendors, a `Component` entry, an emoji one vendor did not
//!   draw, transparent and half-transparent pixels, both sides of the split), read from its
//!   `.tgz` and from the folder it unpacks to;
//! - the real `emoji-datasource-16.0.0.tgz` when it is present (`.ci/run` fetches it with
//!   `npm pack` into a cache folder and names it in `IGPT_EMOJI_TGZ`): counts, classes and the
//!   exact tokens of a few tiles;
//! - broken packages: clear errors naming the file and the entry, never a panic.

use igpt::data::emoji::{read_emoji, EmojiOptions, EmojiSet};
use igpt::data::{load_data, DataOptions};
use igpt::io::gzip::gunzip;
use igpt::io::json::{read_json, Json};
use igpt::io::tar::read_tar;
use igpt::palette::{quantize_rgb8, read_preprocessor_config};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/emoji")
}

fn mini_tgz() -> PathBuf {
    fixtures().join("mini/emoji-datasource-mini.tgz")
}

/// A fresh scratch directory for this test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igpt-emoji-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Unpacks the mini package into `dir` with igpt's own readers (as `tar xzf` would).
fn unpack(tgz: &Path, dir: &Path) {
    let tar = gunzip(&std::fs::read(tgz).unwrap(), "mini").unwrap();
    for entry in read_tar(&tar, "mini").unwrap() {
        let path = dir.join(&entry.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, entry.data).unwrap();
    }
}

fn options(size: usize) -> EmojiOptions {
    EmojiOptions { vendors: vec!["twitter".into(), "google".into()], size }
}

fn ints(json: &Json, key: &str) -> Vec<usize> {
    let list = json.get(key).and_then(Json::as_array).unwrap_or_else(|| panic!("no {key}"));
    list.iter().map(|v| v.as_usize().unwrap()).collect()
}

fn text<'a>(json: &'a Json, key: &str) -> &'a str {
    json.get(key).and_then(Json::as_str).unwrap_or_else(|| panic!("no {key}"))
}

fn strings(json: &Json, key: &str) -> Vec<String> {
    let list = json.get(key).and_then(Json::as_array).unwrap();
    list.iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// Tokens of an image with the palette of a fixture's `preprocessor_config.json`.
fn tokens(set: &EmojiSet, i: usize, config: &Path) -> Vec<usize> {
    let palette = read_preprocessor_config(config).unwrap().palette;
    let t = quantize_rgb8(set.images[i].image.bytes(), &palette).unwrap();
    t.into_iter().map(|t| t as usize).collect()
}

/// Every image of the mini package: vendor, code, class, split, composited pixels and the
/// tokens of transformers' processor at 16×16 and 32×32.
fn check_mini(path: &Path) {
    let expected = read_json(&fixtures().join("mini/expected.json")).unwrap();
    let config = fixtures().join("mini/preprocessor_config.json");
    let images = expected.get("images").and_then(Json::as_array).unwrap();
    for size in [16, 32] {
        let set = read_emoji(path, &options(size), &|_| {}).unwrap();
        assert_eq!(set.classes, strings(&expected, "classes"));
        assert_eq!(set.images.len(), images.len());
        for (i, (got, want)) in set.images.iter().zip(images).enumerate() {
            let what = format!("image {i} ({} {})", got.vendor, got.unified);
            assert_eq!(got.vendor, text(want, "vendor"), "{what}");
            assert_eq!(got.unified, text(want, "unified"), "{what}");
            assert_eq!(usize::from(got.label), want.get("class").unwrap().as_usize().unwrap());
            assert_eq!(got.test, text(want, "split") == "test", "{what}");
            assert_eq!(tokens(&set, i, &config), ints(want, &format!("tokens{size}")), "{what}");
            if size == 32 {
                let rgb: Vec<usize> = got.image.bytes().iter().map(|&b| usize::from(b)).collect();
                assert_eq!(rgb, ints(want, "rgb32"), "{what}: pixels over white");
            }
        }
    }
}

#[test]
fn the_mini_package_matches_transformers_from_the_tgz_and_the_folder() {
    check_mini(&mini_tgz());
    let dir = scratch("unpacked");
    unpack(&mini_tgz(), &dir);
    check_mini(&dir);
    check_mini(&dir.join("package"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_mini_package_has_both_splits_and_skips_components() {
    let set = read_emoji(&mini_tgz(), &options(16), &|_| {}).unwrap();
    assert!(set.images.iter().any(|i| i.test) && set.images.iter().any(|i| !i.test));
    assert!(!set.classes.iter().any(|c| c == "Component"));
    // One emoji, in whichever vendor's drawing, sits in one split only.
    for a in &set.images {
        for b in set.images.iter().filter(|b| b.unified == a.unified) {
            assert_eq!(a.test, b.test, "{}", a.unified);
        }
    }
    let twitter = set.images.iter().filter(|i| i.vendor == "twitter").count();
    assert!(twitter > set.images.len() - twitter, "one emoji has no google drawing");
    let google = read_emoji(
        &mini_tgz(),
        &EmojiOptions { vendors: vec!["google".into()], size: 16 },
        &|_| {},
    );
    assert_eq!(google.unwrap().images.len(), set.images.len() - twitter);
}

#[test]
fn a_data_set_from_the_mini_package_trains_on_its_palette() {
    let config = fixtures().join("mini/preprocessor_config.json");
    let opts = DataOptions { palette: Some(&config), ..DataOptions::default() };
    let data = load_data(&format!("emoji:{}", mini_tgz().display()), &opts).unwrap();
    assert_eq!((data.train.width, data.train.height), (16, 16));
    let expected = read_json(&fixtures().join("mini/expected.json")).unwrap();
    let images = expected.get("images").and_then(Json::as_array).unwrap();
    let test: Vec<&Json> = images.iter().filter(|i| text(i, "split") == "test").collect();
    assert_eq!(data.test.len(), test.len());
    assert_eq!(data.train.len() + data.test.len(), images.len());
    let first: Vec<usize> = data.test.image(0).iter().map(|&t| t as usize).collect();
    assert_eq!(first, ints(test[0], "tokens16"));
    // Without a palette file one is fitted: at most 512 colours, every token inside it.
    let fitted = load_data(&format!("emoji:{}", mini_tgz().display()), &DataOptions::default());
    let fitted = fitted.unwrap();
    assert!(fitted.train.palette.len() <= 512);
    assert!(fitted.train.tokens.iter().all(|&t| (t as usize) < fitted.train.palette.len()));
}

fn error_of(path: &Path) -> String {
    read_emoji(path, &options(16), &|_| {}).unwrap_err().to_string()
}

#[test]
fn a_truncated_or_corrupted_tgz_is_an_error_naming_it() {
    let bytes = std::fs::read(mini_tgz()).unwrap();
    let dir = scratch("broken");
    for (name, broken) in [
        ("truncated.tgz", bytes[..bytes.len() / 2].to_vec()),
        ("flipped.tgz", {
            let mut b = bytes.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x55;
            b
        }),
        ("empty.tgz", Vec::new()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, broken).unwrap();
        let e = error_of(&path);
        assert!(e.contains(name), "{name}: {e}");
    }
    let e = error_of(&dir.join("missing.tgz"));
    assert!(e.contains("missing.tgz"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_sheet_or_a_tile_outside_its_sheet_names_the_culprit() {
    let dir = scratch("bad-package");
    unpack(&mini_tgz(), &dir);
    let package = dir.join("package");
    std::fs::remove_file(package.join("img/google/sheets/32.png")).unwrap();
    let e = error_of(&dir);
    assert!(e.contains("img/google/sheets/32.png"), "{e}");

    unpack(&mini_tgz(), &dir);
    let json_path = package.join("emoji.json");
    let text = std::fs::read_to_string(&json_path).unwrap();
    let moved = text.replacen("\"sheet_x\":2", "\"sheet_x\":99", 1);
    assert_ne!(moved, text, "the fixture's emoji.json spells sheet_x as expected");
    std::fs::write(&json_path, moved).unwrap();
    let e = error_of(&dir);
    assert!(e.contains("emoji.json") && e.contains("entry") && e.contains("sheet_x 99"), "{e}");

    std::fs::write(&json_path, "[{\"unified\": \"1F600\", \"category\": 7}]").unwrap();
    let e = error_of(&dir);
    assert!(e.contains("entry 0 (1F600)") && e.contains("category"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The real package, where `.ci/run` put it (or `$HOME/.cache/igpt`). Without it the test says
/// so and passes, except under CI, which must have fetched it.
fn real_tgz() -> Option<PathBuf> {
    let path = std::env::var_os("IGPT_EMOJI_TGZ").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("HOME")?;
        Some(Path::new(&home).join(".cache/igpt/emoji-datasource-16.0.0.tgz"))
    })?;
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "CI must fetch {} (see .ci/run)", path.display());
    eprintln!("skipped: {} is absent (npm pack emoji-datasource@16.0.0)", path.display());
    None
}

#[test]
fn the_real_package_gives_the_fixture_counts_classes_and_tokens() {
    let Some(tgz) = real_tgz() else { return };
    let expected = read_json(&fixtures().join("real/expected.json")).unwrap();
    let config = fixtures().join("real/preprocessor_config.json");
    for size in [16, 32] {
        let set = read_emoji(&tgz, &options(size), &|_| {}).unwrap();
        assert_eq!(set.classes, strings(&expected, "classes"));
        let counts = expected.get("counts").unwrap();
        for vendor in ["twitter", "google"] {
            let of =
                |test| set.images.iter().filter(|i| i.vendor == vendor && i.test == test).count();
            let want = counts.get(vendor).unwrap();
            assert_eq!(of(false), want.get("train").unwrap().as_usize().unwrap(), "{vendor}");
            assert_eq!(of(true), want.get("test").unwrap().as_usize().unwrap(), "{vendor}");
        }
        let class_counts = expected.get("class_counts").unwrap();
        for (split, test) in [("train", false), ("test", true)] {
            let mut got = vec![0usize; set.classes.len()];
            for i in set.images.iter().filter(|i| i.test == test) {
                got[usize::from(i.label)] += 1;
            }
            assert_eq!(got, ints(class_counts, split), "{split} class counts");
        }
        for tile in expected.get("tiles").and_then(Json::as_array).unwrap() {
            let test = text(tile, "split") == "test";
            let index = tile.get("index").unwrap().as_usize().unwrap();
            let i = (0..set.images.len()).filter(|&i| set.images[i].test == test).nth(index);
            let i = i.unwrap();
            assert_eq!(set.images[i].unified, text(tile, "unified"));
            assert_eq!(set.images[i].vendor, text(tile, "vendor"));
            let what = format!("{} {} at {size}", text(tile, "vendor"), text(tile, "unified"));
            assert_eq!(tokens(&set, i, &config), ints(tile, &format!("tokens{size}")), "{what}");
        }
    }
}
