//! Gzip/DEFLATE decoder: the embedded digits file, round trips through the system `gzip`,
//! committed fixtures covering every block type, hand-made malformed streams, and fuzzing.

use igpt::io::gzip::{crc32, gunzip, gunzip_limited};
use proptest::prelude::*;
use std::io::Write;
use std::process::{Command, Stdio};

const DIGITS_GZ: &[u8] = include_bytes!("../src/data/digits.csv.gz");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gzip/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap()
}

/// 64-bit FNV-1a, an independent fingerprint of the decompressed digits file.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Runs the system `gzip` with `args` on `input`; `None` when there is no `gzip`.
fn system_gzip(args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new("gzip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

/// The error message of decoding `bytes`, which must fail.
fn error(bytes: &[u8]) -> String {
    let msg = gunzip(bytes, "test.gz").expect_err("malformed input accepted").to_string();
    assert!(msg.starts_with("test.gz: "), "{msg}");
    msg
}

#[test]
fn digits_file_decompresses_to_the_uci_csv() {
    let csv = gunzip(DIGITS_GZ, "digits.csv.gz").unwrap();
    assert_eq!(csv.len(), 264_712);
    assert_eq!(fnv1a(&csv), 0x0b6d_b7d4_442b_bc5d);
    let text = std::str::from_utf8(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1797);
    assert!(
        lines[0].starts_with("0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0") && lines[0].ends_with(",0")
    );
    assert!(lines[1796].starts_with("0,0,10,14,8,1,0,0,0,2,16,14") && lines[1796].ends_with(",8"));
    if let Some(reference) = system_gzip(&["-dc"], DIGITS_GZ) {
        assert!(csv == reference, "differs from gzip -dc");
    }
}

#[test]
fn fixtures_cover_stored_fixed_and_dynamic_blocks() {
    let text = fixture("text.txt");
    assert_eq!(gunzip(&fixture("text.1.gz"), "text.1.gz").unwrap(), text);
    assert_eq!(gunzip(&fixture("text.9.gz"), "text.9.gz").unwrap(), text);
    assert_eq!(gunzip(&fixture("noise.gz"), "noise.gz").unwrap(), fixture("noise.bin"));
    assert_eq!(gunzip(&fixture("short.gz"), "short.gz").unwrap(), fixture("short.txt"));
    let both = [fixture("short.gz"), fixture("text.1.gz")].concat();
    assert_eq!(gunzip(&both, "both.gz").unwrap(), [fixture("short.txt"), text].concat());
}

#[test]
fn system_gzip_round_trips() {
    // Text-like data (long matches), incompressible noise (stored blocks), and nothing at all.
    let mut state = 12345u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u8
    };
    let text: Vec<u8> = (0..200_000).map(|_| b"0123456789,\n"[usize::from(next() % 12)]).collect();
    let noise: Vec<u8> = (0..100_000).map(|_| next()).collect();
    for data in [&text[..], &noise[..], &[][..]] {
        for level in ["-1", "-9"] {
            let Some(gz) = system_gzip(&["-c", level], data) else { return };
            assert!(gunzip(&gz, "generated").unwrap() == data, "level {level}");
        }
    }
}

#[test]
fn optional_header_fields_are_skipped_and_checked() {
    let gz = fixture("short.gz");
    let mut head = gz[..10].to_vec();
    head[3] = 0x1f; // FTEXT | FHCRC | FEXTRA | FNAME | FCOMMENT
    head.extend_from_slice(b"\x03\x00abcname\0comment\0");
    let header_crc = (crc32(&head) as u16).to_le_bytes();
    let good = [&head[..], &header_crc, &gz[10..]].concat();
    assert_eq!(gunzip(&good, "flags.gz").unwrap(), fixture("short.txt"));
    let bad = [&head[..], &[header_crc[0] ^ 1, header_crc[1]], &gz[10..]].concat();
    assert!(error(&bad).contains("header CRC-16 mismatch"));
}

#[test]
fn malformed_headers_and_trailers_are_errors() {
    let gz = fixture("short.gz");
    let with = |i: usize, byte: u8| {
        let mut bad = gz.clone();
        bad[i] = byte;
        bad
    };
    assert!(error(b"").contains("truncated"));
    assert!(error(&with(0, b'P')).contains("bad magic"));
    assert!(error(&with(2, 7)).contains("not deflate"));
    assert!(error(&with(3, 0x20)).contains("reserved header flags"));
    assert!(error(&with(gz.len() - 8, gz[gz.len() - 8] ^ 1)).contains("CRC-32 mismatch"));
    assert!(error(&with(gz.len() - 1, 1)).contains("length mismatch"));
    assert!(error(&[&gz[..], &[0u8; 12][..]].concat()).contains("bad magic 00 00 at byte 31"));
    let gz9 = fixture("text.9.gz");
    for end in 0..gz9.len() {
        assert!(error(&gz9[..end]).contains("truncated"), "prefix of {end} bytes");
    }
}

#[test]
fn output_cap_stops_decompression_bombs() {
    let gz = fixture("text.9.gz");
    let msg = gunzip_limited(&gz, "bomb.gz", 1000).unwrap_err().to_string();
    assert!(msg.contains("exceeds the limit of 1000 bytes"), "{msg}");
    assert_eq!(gunzip_limited(&gz, "bomb.gz", 4425).unwrap().len(), 4425);
}

/// DEFLATE bits, least-significant first; Huffman codes go most-significant bit first.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: usize,
}

impl Bits {
    fn put(mut self, value: u32, count: usize) -> Self {
        for i in 0..count {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            *self.bytes.last_mut().unwrap() |= (((value >> i) & 1) as u8) << (self.used % 8);
            self.used += 1;
        }
        self
    }

    fn code(self, code: u32, len: usize) -> Self {
        self.put(code.reverse_bits() >> (32 - len), len)
    }

    /// A final dynamic block's header: HLIT = 257, HDIST = 1, and `lengths` for the code-length
    /// code in storage order (16, 17, 18, 0, …).
    fn dynamic(lengths: &[u32]) -> Self {
        let mut bits = Bits::default().put(1, 1).put(2, 2).put(0, 5).put(0, 5);
        bits = bits.put(lengths.len() as u32 - 4, 4);
        lengths.iter().fold(bits, |bits, &len| bits.put(len, 3))
    }

    /// Wrapped in a gzip header and a (zero) trailer.
    fn gzip(self) -> Vec<u8> {
        [&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3][..], &self.bytes, &[0; 8]].concat()
    }
}

#[test]
fn malformed_deflate_streams_are_errors() {
    let fixed = || Bits::default().put(1, 1).put(1, 2);
    let cases = [
        (Bits::default().put(1, 1).put(3, 2), "invalid deflate block type 3"),
        (
            Bits::default().put(1, 1).put(0, 2).put(0, 5).put(0x0005, 16).put(0x0000, 16),
            "complement",
        ),
        (fixed().code(0b0000001, 7).code(0, 5), "distance 1 too far back (0 bytes decoded)"),
        (fixed().code(0b11000110, 8), "invalid literal/length symbol 286"),
        (
            Bits::default().put(1, 1).put(2, 2).put(31, 5).put(0, 9),
            "288 literal/length or 1 distance",
        ),
        (Bits::dynamic(&[1; 19]), "code-length code is over-subscribed"),
        (Bits::dynamic(&[1, 0, 0, 0]), "code-length code is incomplete"),
        (Bits::dynamic(&[1, 1, 0, 0]).code(0, 1), "repeat (16) with no previous length"),
        // Symbols 0 and 18 get codes 0 and 1: two runs of 138 zeros overrun 257 + 1 lengths.
        (Bits::dynamic(&[0, 0, 1, 1]).code(1, 1).put(127, 7).code(1, 1).put(127, 7), "overrun"),
        (
            Bits::dynamic(&[0, 0, 1, 1]).code(1, 1).put(127, 7).code(1, 1).put(109, 7),
            "end-of-block",
        ),
    ];
    for (bits, expected) in cases {
        let msg = error(&bits.gzip());
        assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
    }
}

proptest! {
    #[test]
    fn mutated_or_truncated_input_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        keep in any::<prop::sample::Index>(),
    ) {
        for name in ["text.1.gz", "short.gz", "noise.gz"] {
            let mut gz = fixture(name);
            for (at, byte) in &edits {
                let i = at.index(gz.len());
                gz[i] = *byte;
            }
            gz.truncate(keep.index(gz.len() + 1));
            igpt::io::fuzzing::fuzz_gzip(&gz);
        }
    }

    #[test]
    fn random_deflate_bits_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = gunzip(&[&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3][..], &body].concat(), "random");
    }
}
