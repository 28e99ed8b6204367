//! Runs every fuzz target of `igpt::fuzzing::TARGETS` on stable Rust, so CI exercises the
//! readers without cargo-fuzz: each seed file in `fuzz/corpus/<target>/`, then thousands of
//! deterministic mutations of the seeds (bit flips, byte insertions and deletions,
//! truncations, length-field tweaks, token insertions, splices of two seeds), half of them with
//! their tar header checksums repaired afterwards.
//!
//! A target panics on a bug (a parser panic, or a round trip that changes the value); the test
//! then reports the target, the seed, the mutation number and the input in hex. Adding a target
//! to `TARGETS` (plus its corpus folder) is all it takes to have it run here.

use igpt::fuzzing::{FuzzFn, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Mutated inputs per target, spread evenly over its seeds.
const MUTATIONS_PER_TARGET: usize = 20_000;

/// xorshift64*: a tiny deterministic generator for mutation choices (the quality of the
/// stream barely matters here; reproducibility does).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n`; `n` must be positive.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that matter to the formats' syntax (`x`, `g`, `5`, `0`, `L`: tar type flags; `7`, `8`:
/// the edge of octal).
const INTERESTING_BYTES: &[u8] = b"\0\x7f\x80\xff\"\\{}[](),:'-./015789eELxg \n";

/// Fragments that hit parser corner cases: huge and odd numbers, escapes, dtypes, literals.
const TOKENS: &[&[u8]] = &[
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"4294967296",
    b"9007199254740993",
    b"0.5",
    b"\\u",
    b"\\ud800",
    b"\\udc00\\u",
    b"[[[[[[[[",
    b"null",
    b"true",
    b"False",
    b"True",
    b"(0,)",
    b"'<f4'",
    b"'>f8'",
    b"\"BF16\"",
    b"\"F16\"",
    b"\"I64\"",
    b"\"__metadata__\"",
    b"\"data_offsets\":[0,0]",
    b"\xc3\xa9",
    b"\xed\xa0\x80",
    b"ustar\x0000",
    b"ustar  \0",
    b"0000644 \0",
    b"30 path=package/../x\n",
    b"9 size=9\n",
    b"/",
];

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus folder {} for target {target}: {e}", dir.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "corpus folder {} is empty", dir.display());
    seeds
}

/// Applies one edit (half the time, so that many mutants stay close to valid) or two to four
/// edits to `seed`; `other` is another seed for splicing.
fn mutate(seed: &[u8], other: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut data = seed.to_vec();
    let edits = if rng.below(2) == 0 { 1 } else { 2 + rng.below(3) };
    for _ in 0..edits {
        match rng.below(9) {
            0 => flip_bit(&mut data, rng),
            1 => set_byte(&mut data, rng),
            2 => {
                let at = rng.below(data.len() + 1);
                data.insert(at, INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]);
            }
            3 => delete_range(&mut data, rng),
            4 => data.truncate(rng.below(data.len() + 1)),
            5 => tweak_length_field(&mut data, rng),
            6 => {
                let at = rng.below(data.len() + 1);
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            7 => tweak_tar_size(&mut data, rng),
            _ => {
                // Head of this input, tail of another seed.
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
    if rng.below(2) == 0 {
        repair_tar_checksums(&mut data);
    }
    data
}

fn flip_bit(data: &mut [u8], rng: &mut XorShift) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        data[at] ^= 1 << rng.below(8);
    }
}

fn set_byte(data: &mut [u8], rng: &mut XorShift) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        data[at] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
    }
}

fn delete_range(data: &mut Vec<u8>, rng: &mut XorShift) {
    if !data.is_empty() {
        let start = rng.below(data.len());
        let len = 1 + rng.below((data.len() - start).min(16));
        data.drain(start..start + len);
    }
}

/// Rewrites a little-endian integer where the formats keep lengths (offset 0: safetensors'
/// u64 header length; offset 8: npy's u16/u32 header length) or at a random early offset:
/// off by a little, zero, a power of two, or all ones.
fn tweak_length_field(data: &mut [u8], rng: &mut XorShift) {
    let offset = [0, 8, rng.below(16)][rng.below(3)];
    let width = [2, 4, 8][rng.below(3)];
    if offset + width > data.len() {
        return;
    }
    let field = &mut data[offset..offset + width];
    let mut raw = [0u8; 8];
    raw[..width].copy_from_slice(field);
    let value = u64::from_le_bytes(raw);
    let new = match rng.below(4) {
        0 => value.wrapping_add(rng.below(17) as u64).wrapping_sub(8),
        1 => 0,
        2 => 1u64 << rng.below(64),
        _ => u64::MAX,
    };
    field.copy_from_slice(&new.to_le_bytes()[..width]);
}

/// Rewrites the octal size field (bytes 124..136) of a random 512-byte block, as tar headers
/// have it: off by a little, zero, a power of two, or the largest 11-digit value.
fn tweak_tar_size(data: &mut [u8], rng: &mut XorShift) {
    let blocks = data.len() / 512;
    if blocks == 0 {
        return;
    }
    let field = &mut data[rng.below(blocks) * 512 + 124..][..12];
    let text = std::str::from_utf8(&field[..11]).unwrap_or("0");
    let value = u64::from_str_radix(text, 8).unwrap_or(0);
    let new = match rng.below(4) {
        0 => value.wrapping_add(rng.below(1025) as u64).saturating_sub(512),
        1 => 0,
        2 => 1u64 << rng.below(33),
        _ => 0o777_7777_7777,
    };
    field.copy_from_slice(format!("{:011o}\0", new.min(0o777_7777_7777)).as_bytes());
}

/// Rewrites the checksum of every 512-byte block that carries the ustar magic, so that
/// mutations of tar header fields reach the checks behind the checksum (without this, almost
/// every such mutant stops there). Inputs of the other formats have no such blocks.
fn repair_tar_checksums(data: &mut [u8]) {
    for block in data.chunks_exact_mut(512) {
        if &block[257..262] == b"ustar" {
            block[148..156].fill(b' ');
            let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
            block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        }
    }
}

/// Runs `target` on `input`, turning a panic into a report naming the input.
fn run(target_name: &str, target: FuzzFn, what: &str, input: &[u8]) -> bool {
    match catch_unwind(AssertUnwindSafe(|| target(input))) {
        Ok(accepted) => accepted,
        Err(_) => {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!(
                "fuzz target {target_name} failed on {what}; input ({} bytes): {hex}",
                input.len()
            );
        }
    }
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    for &(name, target) in TARGETS {
        let seeds = seeds(name);
        let accepted_seeds =
            seeds.iter().filter(|(file, bytes)| run(name, target, file, bytes)).count();
        assert!(accepted_seeds > 0, "no seed of target {name} is valid: round trips untested");

        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let per_seed = MUTATIONS_PER_TARGET.div_ceil(seeds.len());
        let mut accepted_mutants = 0;
        for (i, (file, seed)) in seeds.iter().enumerate() {
            let other = &seeds[(i + 1) % seeds.len()].1;
            for m in 0..per_seed {
                let input = mutate(seed, other, &mut rng);
                accepted_mutants +=
                    usize::from(run(name, target, &format!("{file} mutation {m}"), &input));
            }
        }
        eprintln!(
            "fuzz target {name}: {} seeds ({accepted_seeds} valid), {} mutants ({accepted_mutants} valid)",
            seeds.len(),
            per_seed * seeds.len()
        );
        assert!(
            accepted_mutants > 0,
            "no mutant of target {name} parsed: mutations too destructive"
        );
    }
}
