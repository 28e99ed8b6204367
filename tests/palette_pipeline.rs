//! The image pipeline against Pillow and transformers (fixtures from
//! `tests/fixtures/make_palette_fixtures.py`), plus properties and bad inputs.
//!
//! Bar: igpt's tokens are identical to `ImageGPTImageProcessorPil`'s, and igpt's resize is
//! identical to Pillow's, byte for byte.

use igpt::io::json::read_json;
use igpt::io::npy::{read_npy, write_npy, NpyArray, NpyData};
use igpt::palette::image_io::decode_image_rgb;
use igpt::palette::{
    dequantize, fit_kmeans, image_to_tokens, load_image_rgb, load_palette, load_pixels_npy,
    pixel_to_unit, quantize_rgb8, read_preprocessor_config, save_palette_npy,
    save_preprocessor_config, tokens_to_png, KMeansOptions, Palette, RgbImage,
};
use igpt::Token;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette")
}

fn image_names() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("tokens_order.txt")).unwrap();
    text.lines().map(str::to_string).collect()
}

/// A fresh scratch directory for this test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igpt-palette-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn u8_rows(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let a = read_npy(path).unwrap();
    match a.data {
        NpyData::U8(v) => (a.shape, v),
        other => panic!("{}: expected uint8, got {}", path.display(), other.dtype_name()),
    }
}

#[test]
fn both_palette_files_hold_the_same_palette() {
    let from_json = load_palette(&fixtures().join("preprocessor_config.json")).unwrap();
    let from_npy = load_palette(&fixtures().join("palette.npy")).unwrap();
    assert_eq!(from_json.len(), 16);
    assert_eq!(from_json, from_npy);
    let cfg = read_preprocessor_config(&fixtures().join("preprocessor_config.json")).unwrap();
    assert_eq!(cfg.size, Some((32, 32)));
}

#[test]
fn resize_matches_pillow_for_every_fixture_image() {
    let (shape, expected) = u8_rows(&fixtures().join("resized.npy"));
    assert_eq!(shape[1..], [32, 32, 3]);
    let jpeg = jpeg_as_pillow_decodes_it();
    for (i, name) in image_names().iter().enumerate() {
        let img = if name.ends_with(".jpg") {
            jpeg.clone()
        } else {
            load_image_rgb(&fixtures().join("images").join(name)).unwrap()
        };
        let small = img.resize_pillow(32, 32).unwrap();
        assert_eq!(small.bytes(), &expected[i * 3072..(i + 1) * 3072], "{name}");
    }
}

#[test]
fn extra_resizes_match_pillow() {
    let spec = read_json(&fixtures().join("resize_extra.json")).unwrap();
    let (_, all) = u8_rows(&fixtures().join("resize_extra.npy"));
    let jpeg = jpeg_as_pillow_decodes_it();
    let resizes = spec.get("resizes").and_then(|r| r.as_array()).unwrap();
    assert_eq!(resizes.len(), 8);
    for r in resizes {
        let source = r.get("source").and_then(|s| s.as_str()).unwrap();
        let dim = |k: &str| r.get("size").and_then(|s| s.get(k)).and_then(|v| v.as_usize());
        let (w, h) = (dim("width").unwrap(), dim("height").unwrap());
        let offset = r.get("offset").and_then(|o| o.as_usize()).unwrap();
        let img = if source.ends_with(".jpg") {
            jpeg.clone()
        } else {
            load_image_rgb(&fixtures().join("images").join(source)).unwrap()
        };
        let out = img.resize_pillow(w, h).unwrap();
        assert_eq!(out.bytes(), &all[offset..offset + w * h * 3], "{source} → {w}×{h}");
    }
}

#[test]
fn pass_order_matches_pillow_13() {
    // tests/fixtures/make_resize_fixtures.py: cases on both sides of Pillow's order rule.
    let dir = fixtures().with_file_name("resize");
    let spec = read_json(&dir.join("cases.json")).unwrap();
    let (_, sources) = u8_rows(&dir.join("sources.npy"));
    let (_, resized) = u8_rows(&dir.join("resized.npy"));
    let cases = spec.get("cases").and_then(|c| c.as_array()).unwrap();
    assert_eq!(cases.len(), 13);
    for case in cases {
        let get = |k: &str| case.get(k).and_then(|v| v.as_usize()).unwrap();
        let (w, h, ow, oh) = (get("in_w"), get("in_h"), get("out_w"), get("out_h"));
        let src = &sources[get("source_offset")..get("source_offset") + w * h * 3];
        let want = &resized[get("resized_offset")..get("resized_offset") + ow * oh * 3];
        let got = RgbImage::from_bytes(w, h, src).unwrap().resize_pillow(ow, oh).unwrap();
        assert_eq!(got.bytes(), want, "{w}×{h} → {ow}×{oh}");
    }
}

/// The JPEG fixture as Pillow (libjpeg) decodes it.
fn jpeg_as_pillow_decodes_it() -> RgbImage {
    let (shape, pixels) = u8_rows(&fixtures().join("jpeg_decoded.npy"));
    RgbImage::from_bytes(shape[1], shape[0], &pixels).unwrap()
}

#[test]
fn tokens_match_transformers() {
    let palette = load_palette(&fixtures().join("preprocessor_config.json")).unwrap();
    let expected = read_npy(&fixtures().join("tokens.npy")).unwrap();
    assert_eq!(expected.shape[1], 1024);
    let expected = expected.data.to_i64().unwrap();
    for (i, name) in image_names().iter().enumerate() {
        let want: Vec<u32> = expected[i * 1024..(i + 1) * 1024].iter().map(|&t| t as u32).collect();
        let got = if name.ends_with(".jpg") {
            // Start from Pillow's decoding: JPEG decoders may round differently.
            let small = jpeg_as_pillow_decodes_it().resize_pillow(32, 32).unwrap();
            quantize_rgb8(small.bytes(), &palette).unwrap()
        } else {
            image_to_tokens(&fixtures().join("images").join(name), &palette, 32, 32).unwrap()
        };
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn ties_follow_the_expanded_form() {
    // rgb_32x32.png holds colours where the direct form Σ(x−c)² and the expanded form disagree
    // (row 0: HF gives 15) or tie exactly (row 1: 11), and a duplicated palette entry (5 = 13).
    let palette = load_palette(&fixtures().join("palette.npy")).unwrap();
    let tokens =
        image_to_tokens(&fixtures().join("images/rgb_32x32.png"), &palette, 32, 32).unwrap();
    assert!(tokens[..8].iter().all(|&t| t == 15));
    assert!(tokens[32..40].iter().all(|&t| t == 11));
    assert!(!tokens.contains(&13));
}

#[test]
fn igpt_jpeg_decoding_is_close_to_pillow() {
    let ours = load_image_rgb(&fixtures().join("images/rgb_97x61.jpg")).unwrap();
    let pillow = jpeg_as_pillow_decodes_it();
    assert_eq!((ours.width, ours.height), (pillow.width, pillow.height));
    let worst = ours.bytes().iter().zip(pillow.bytes()).map(|(a, b)| a.abs_diff(*b)).max();
    assert!(worst.unwrap() <= 2, "JPEG decoders differ by {worst:?} levels");
}

#[test]
fn palette_files_round_trip() {
    let dir = scratch("files");
    let palette = load_palette(&fixtures().join("preprocessor_config.json")).unwrap();
    save_palette_npy(&palette, &dir.join("p.npy")).unwrap();
    assert_eq!(load_palette(&dir.join("p.npy")).unwrap(), palette);
    save_preprocessor_config(&palette, 32, 32, &dir.join("preprocessor_config.json")).unwrap();
    let cfg = read_preprocessor_config(&dir.join("preprocessor_config.json")).unwrap();
    assert_eq!((cfg.palette, cfg.size), (palette, Some((32, 32))));
    // transformers' own file and igpt's agree byte for byte (same keys, order and numbers).
    let theirs = std::fs::read_to_string(fixtures().join("preprocessor_config.json")).unwrap();
    let ours = std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap();
    assert_eq!(ours.trim_end(), theirs.trim_end());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tokens_to_png_shows_the_palette_colours() {
    let dir = scratch("png");
    let palette = load_palette(&fixtures().join("palette.npy")).unwrap();
    let tokens: Vec<Token> = (0..12).map(|i| i % 16).collect();
    tokens_to_png(&tokens, &palette, 4, 3, 2, &dir.join("t.png")).unwrap();
    let img = load_image_rgb(&dir.join("t.png")).unwrap();
    assert_eq!((img.width, img.height), (8, 6));
    let rgb = dequantize(&tokens, &palette).unwrap();
    assert_eq!(img.bytes()[..3], rgb[..3]);
    assert_eq!(img.bytes()[3..6], rgb[..3]); // upscaled: pixel 0 repeated
    assert!(tokens_to_png(&tokens, &palette, 5, 3, 2, &dir.join("bad.png")).is_err());
    assert!(tokens_to_png(&[16], &palette, 1, 1, 1, &dir.join("bad.png")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = scratch("bad");
    std::fs::write(dir.join("empty.png"), b"").unwrap();
    std::fs::write(dir.join("text.png"), b"hello, not an image").unwrap();
    for name in ["empty.png", "text.png"] {
        let e = load_image_rgb(&dir.join(name)).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("not a readable"), "{e}");
    }
    assert!(load_image_rgb(&dir.join("missing.png")).is_err());
    let wide = NpyArray::new(vec![2, 4], NpyData::F32(vec![0.0; 8])).unwrap();
    write_npy(&dir.join("wide.npy"), &wide).unwrap();
    let e = load_palette(&dir.join("wide.npy")).unwrap_err().to_string();
    assert!(e.contains("wide.npy") && e.contains("(K, 3)"), "{e}");
    let e = load_palette(&dir.join("text.png")).unwrap_err().to_string();
    assert!(e.contains("neither"), "{e}");
    let nan = NpyArray::new(vec![2, 3], NpyData::F32(vec![0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0]));
    write_npy(&dir.join("nan.npy"), &nan.unwrap()).unwrap();
    let e = load_pixels_npy(&dir.join("nan.npy")).unwrap_err().to_string();
    assert!(e.contains("pixel 0"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pixel_files_accept_floats_and_bytes() {
    let dir = scratch("pixels");
    let bytes = NpyArray::new(vec![2, 3], NpyData::U8(vec![0, 128, 255, 1, 2, 3])).unwrap();
    write_npy(&dir.join("u8.npy"), &bytes).unwrap();
    let (v, c) = load_pixels_npy(&dir.join("u8.npy")).unwrap();
    assert_eq!(c, 3);
    assert_eq!(v[..3], [-1.0, pixel_to_unit(128), 1.0]);
    let grey = NpyArray::new(vec![3, 1], NpyData::F64(vec![0.5, -0.5, 1.0])).unwrap();
    write_npy(&dir.join("g.npy"), &grey).unwrap();
    assert_eq!(load_pixels_npy(&dir.join("g.npy")).unwrap(), (vec![0.5, -0.5, 1.0], 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Resizing an image to its own size gives it back unchanged.
    #[test]
    fn resize_to_own_size_is_identity(w in 1usize..40, h in 1usize..40, seed in any::<u64>()) {
        let p = igpt::rng::Philox::new(seed);
        let pixels: Vec<u8> = (0..w * h * 3).map(|i| p.u32_at(0, i as u64) as u8).collect();
        let img = RgbImage::from_bytes(w, h, &pixels).unwrap();
        prop_assert_eq!(img.resize_pillow(w, h).unwrap(), img);
    }

    /// A palette made of distinct 8-bit colours maps each colour to its own index, and
    /// dequantizing gives the colour back.
    #[test]
    fn distinct_colours_requantize_to_themselves(colours in prop::collection::btree_set(any::<[u8; 3]>(), 1..300)) {
        let bytes: Vec<u8> = colours.iter().flatten().copied().collect();
        let palette = Palette::new(bytes.iter().map(|&b| f64::from(pixel_to_unit(b))).collect()).unwrap();
        let tokens = quantize_rgb8(&bytes, &palette).unwrap();
        prop_assert_eq!(&tokens, &(0..colours.len() as Token).collect::<Vec<_>>());
        prop_assert_eq!(dequantize(&tokens, &palette).unwrap(), bytes);
    }

    /// PNG encoding then decoding is lossless.
    #[test]
    fn png_round_trip(w in 1usize..20, h in 1usize..20, seed in any::<u64>()) {
        let p = igpt::rng::Philox::new(seed);
        let pixels: Vec<u8> = (0..w * h * 3).map(|i| p.u32_at(1, i as u64) as u8).collect();
        let img = RgbImage::from_bytes(w, h, &pixels).unwrap();
        prop_assert_eq!(decode_image_rgb(&img.encode_png().unwrap(), "mem").unwrap(), img);
    }
}

// ---------------------------------------------------------------------------------------------
// k-means against scikit-learn

#[path = "common/sklearn.rs"]
mod sklearn;

/// SPEC §17's quality target, inertia ≤ 1.005 × scikit-learn's on the same pixels, on the 8192
/// pixels of the 8 resized fixture images, k = 16 and 64 (`sklearn/kmeans.json`:
/// `KMeans(n_init=1, algorithm="lloyd")`, random_state 0..99). One fit's inertia depends on its
/// seed (seed-to-seed spread 1.5 % at k = 16, 1.0 % at k = 64, larger than the target), so the
/// target is read as a statement about the seed average: igpt's mean over seeds 0..99 against
/// scikit-learn's mean over its 100 — the standard error of that ratio is 0.21 % and 0.14 %, so
/// a 0.5 % bound would still catch a worse initialisation or stopping rule. Measured: 0.9991
/// (k = 16) and 1.0011 (k = 64). Also, every igpt fit lies within the range scikit-learn's
/// 100 fits span, widened by the same 0.5 %.
#[test]
fn kmeans_inertia_is_within_half_a_percent_of_scikit_learn() {
    let pixels: Vec<f32> = sklearn::kmeans_pixels().iter().map(|&p| pixel_to_unit(p)).collect();
    let n = pixels.len() / 3;
    let fits = sklearn::kmeans_fits();
    let mut ks: Vec<usize> = fits.iter().map(|f| f.k).collect();
    ks.dedup();
    assert_eq!(ks, [16, 64]);
    for k in ks {
        let theirs: Vec<f64> = fits.iter().filter(|f| f.k == k).map(|f| f.inertia).collect();
        let ours: Vec<f64> = (0..theirs.len() as u64)
            .map(|seed| {
                let opts = KMeansOptions { seed, ..KMeansOptions::default() };
                fit_kmeans(&pixels, n, 3, k, &opts).unwrap().inertia
            })
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let ratio = mean(&ours) / mean(&theirs);
        eprintln!(
            "k {k}: mean inertia igpt {} / scikit-learn {} = {ratio:.4}",
            mean(&ours),
            mean(&theirs)
        );
        assert!(ratio <= 1.005, "k {k}: igpt's mean inertia is {ratio} × scikit-learn's");
        let worst = theirs.iter().cloned().fold(0.0, f64::max);
        let best = theirs.iter().cloned().fold(f64::INFINITY, f64::min);
        for (seed, &inertia) in ours.iter().enumerate() {
            assert!(
                inertia <= 1.005 * worst && inertia >= best / 1.005,
                "k {k} seed {seed}: inertia {inertia} outside scikit-learn's {best}..{worst}"
            );
        }
    }
}
