//! Tar reader: archives written by `npm pack` (node-tar), Python's `tarfile` and GNU tar, then
//! hand-built headers for every rule of SPEC §19 — the fields, the checksum, pax records, the
//! end-of-archive marker and the paths refused — and fuzzing.

use igpt::io::gzip::gunzip;
use igpt::io::tar::{find, read_tar, TarEntry};
use proptest::prelude::*;
use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tar/");

/// The files of the fixture package (see `make_fixtures.py`), under `package/`.
fn package_files() -> Vec<(String, Vec<u8>)> {
    let long_dir = format!("img/{}/{}", "d".repeat(60), "e".repeat(60));
    let huge_path = format!("long/{}/{}.txt", "x".repeat(120), "y".repeat(140));
    let files: Vec<(String, Vec<u8>)> = vec![
        ("package.json".into(), b"{\"name\":\"igpt-tar-fixture\",\"version\":\"1.0.0\"}\n".into()),
        ("emoji.json".into(), b"[{\"unified\":\"1F600\",\"short_name\":\"grinning\"}]\n".into()),
        ("img/twitter/sheets/32.png".into(), (0..1000).map(|i| (i * 7 % 256) as u8).collect()),
        (format!("{long_dir}/deep.txt"), b"deep\n".into()),
        (huge_path, b"long\n".into()),
        ("na\u{ef}ve.txt".into(), b"non-ASCII name\n".into()),
        ("empty.txt".into(), Vec::new()),
    ];
    files.into_iter().map(|(path, data)| (format!("package/{path}"), data)).collect()
}

fn fixture_entries(name: &str) -> Vec<(String, Vec<u8>)> {
    let tgz = std::fs::read(format!("{FIXTURES}{name}")).unwrap();
    let tar = gunzip(&tgz, name).unwrap();
    let entries = read_tar(&tar, name).unwrap();
    assert_inside(&entries, &tar);
    let mut owned: Vec<_> = entries.into_iter().map(|e| (e.path, e.data.to_vec())).collect();
    owned.sort();
    owned
}

fn sorted(mut files: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    files.sort();
    files
}

/// Every entry's data is a slice of the archive itself (zero-copy).
fn assert_inside(entries: &[TarEntry], archive: &[u8]) {
    let whole = archive.as_ptr_range();
    for entry in entries {
        let data = entry.data.as_ptr_range();
        assert!(whole.start <= data.start && data.end <= whole.end, "{} copied", entry.path);
    }
}

#[test]
fn npm_pack_tarball_round_trips() {
    let entries = fixture_entries("npm-pack.tgz");
    assert_eq!(entries, sorted(package_files()));
}

#[test]
fn python_tarfile_archives_round_trip() {
    // Pax: every file (the 270-byte path and the non-ASCII one need pax records); directories
    // and a symbolic link are skipped.
    assert_eq!(fixture_entries("python-pax.tgz"), sorted(package_files()));
    // Ustar: the long directory goes into the prefix field.
    let ustar: Vec<_> =
        package_files().into_iter().filter(|(p, _)| p.is_ascii() && p.len() < 255).collect();
    assert_eq!(fixture_entries("python-ustar.tgz"), sorted(ustar));
}

#[test]
fn gnu_long_names_are_refused() {
    let tgz = std::fs::read(format!("{FIXTURES}python-gnu-longname.tgz")).unwrap();
    let tar = gunzip(&tgz, "gnu.tgz").unwrap();
    let msg = read_tar(&tar, "gnu.tgz").unwrap_err().to_string();
    assert!(msg.starts_with("gnu.tgz: entry 0 (././@LongLink): GNU long-name header"), "{msg}");
}

/// Runs the system `tar` in `dir` with `args`; `None` when there is no `tar` or it fails.
fn system_tar(dir: &std::path::Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("tar").current_dir(dir).args(args).output().ok()?;
    out.status.success().then_some(out.stdout)
}

#[test]
fn system_tar_archives_round_trip() {
    let dir = std::env::temp_dir().join(format!("igpt-tar-{}", std::process::id()));
    let files = package_files();
    for (path, data) in &files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    for format in ["--format=pax", "--format=ustar", "--format=gnu"] {
        // Ustar cannot store the 270-byte path; gnu stores paths over 100 bytes in 'L' entries.
        let limit = match format {
            "--format=pax" => usize::MAX,
            "--format=ustar" => 255,
            _ => 100,
        };
        let short: Vec<&(String, Vec<u8>)> =
            files.iter().filter(|(p, _)| p.len() < limit).collect();
        let mut args = vec![format, "--owner=0", "--group=0", "--numeric-owner", "-cf", "-"];
        args.extend(short.iter().map(|(p, _)| p.as_str()));
        let Some(tar) = system_tar(&dir, &args) else { break };
        let entries = read_tar(&tar, format).unwrap();
        assert_inside(&entries, &tar);
        let got: Vec<(String, Vec<u8>)> =
            entries.into_iter().map(|e| (e.path, e.data.to_vec())).collect();
        assert_eq!(sorted(got), sorted(short.into_iter().cloned().collect()), "{format}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A test-only tar writer: one header block, every field settable, then sealed.
struct Header([u8; 512]);

impl Header {
    /// A POSIX ustar header: `name`, mode 644, `size` in octal, typeflag `flag`.
    fn new(name: &str, size: usize, flag: u8) -> Self {
        let mut header = Header([0; 512]);
        header.set(0, name.as_bytes());
        header.set(100, b"0000644\0");
        header.set(124, format!("{size:011o}\0").as_bytes());
        header.0[156] = flag;
        header.set(257, b"ustar\x0000");
        header
    }

    fn set(&mut self, offset: usize, bytes: &[u8]) {
        self.0[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// The block, with the checksum (unsigned sum) written the way GNU tar writes it.
    fn seal(mut self) -> Vec<u8> {
        self.0[148..156].fill(b' ');
        let sum: u32 = self.0.iter().map(|&b| u32::from(b)).sum();
        self.set(148, format!("{sum:06o}\0 ").as_bytes());
        self.0.to_vec()
    }
}

/// `data` zero-padded to whole blocks.
fn padded(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(data.len().div_ceil(512) * 512, 0);
    out
}

/// A regular file: header and padded data.
fn file(name: &str, data: &[u8]) -> Vec<u8> {
    [Header::new(name, data.len(), b'0').seal(), padded(data)].concat()
}

/// A pax record `LEN key=value\n`, LEN counting its own digits.
fn record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len != body.len() + len.to_string().len() {
        len = body.len() + len.to_string().len();
    }
    format!("{len}{body}")
}

/// A pax header of type `flag` (`x` or `g`) holding `records`.
fn pax(flag: u8, records: &str) -> Vec<u8> {
    [Header::new("PaxHeader/x", records.len(), flag).seal(), padded(records.as_bytes())].concat()
}

/// `parts` followed by the end-of-archive marker.
fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
    [parts.concat(), vec![0; 1024]].concat()
}

/// Paths and data of `bytes`' files, which must be a valid archive.
fn files(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let entries = read_tar(bytes, "test.tar").unwrap();
    assert_inside(&entries, bytes);
    entries.into_iter().map(|e| (e.path, e.data.to_vec())).collect()
}

/// The error message of reading `bytes`, which must fail.
fn error(bytes: &[u8]) -> String {
    let msg = read_tar(bytes, "test.tar").expect_err("malformed archive accepted").to_string();
    assert!(msg.starts_with("test.tar: "), "{msg}");
    msg
}

fn owned(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    pairs.iter().map(|(p, d)| (p.to_string(), d.to_vec())).collect()
}

#[test]
fn files_in_archive_order_other_types_skipped() {
    let mut link = Header::new("package/link", 0, b'2');
    link.set(157, b"a.txt");
    let bytes = archive(&[
        Header::new("package/", 0, b'5').seal(),
        file("package/b.bin", &[7; 512]),
        file("package/a.txt", b"hello"),
        link.seal(),
        Header::new("package/fifo", 0, b'6').seal(),
        file("package/empty", b""),
        [Header::new("package/vendor", 3, b'V').seal(), padded(b"abc")].concat(),
        [Header::new("package/old", 3, b'\0').seal(), padded(b"old")].concat(),
        [Header::new("package/contiguous", 4, b'7').seal(), padded(b"cont")].concat(),
    ]);
    let expected = owned(&[
        ("package/b.bin", &[7; 512]),
        ("package/a.txt", b"hello"),
        ("package/empty", b""),
        ("package/old", b"old"),
        ("package/contiguous", b"cont"),
    ]);
    assert_eq!(files(&bytes), expected);
}

#[test]
fn prefix_field_and_gnu_magic() {
    let mut posix = Header::new("sheets/32.png", 2, b'0');
    posix.set(345, b"package/img/twitter");
    let mut gnu = Header::new("package/gnu.txt", 2, b'0');
    gnu.set(257, b"ustar  \0");
    gnu.set(345, b"14567012345\0"); // GNU's atime lives where POSIX keeps the prefix
    let bytes =
        archive(&[[posix.seal(), padded(b"px")].concat(), [gnu.seal(), padded(b"gn")].concat()]);
    let expected =
        owned(&[("package/img/twitter/sheets/32.png", b"px"), ("package/gnu.txt", b"gn")]);
    assert_eq!(files(&bytes), expected);
}

#[test]
fn pax_records_override_path_and_size() {
    let long = format!("package/{}/{}.png", "a".repeat(150), "b".repeat(150));
    let records = record("mtime", "499162500.5") + &record("path", &long) + &record("size", "5");
    // The header's own size field says 0 and its name is truncated: pax wins.
    let header = Header::new("package/aaaa", 0, b'0').seal();
    let global = pax(b'g', &(record("path", "ignored/") + &record("comment", "a=b\nc")));
    let emptied = record("path", "") + &record("size", "");
    let bytes = archive(&[
        global,
        pax(b'x', &records),
        [header, padded(b"12345")].concat(),
        pax(b'x', &emptied),
        file("package/kept.txt", b"kept"),
    ]);
    assert_eq!(files(&bytes), owned(&[(&long, b"12345"), ("package/kept.txt", b"kept")]));
}

#[test]
fn checksum_unsigned_and_signed_sums() {
    // "é" has bytes ≥ 0x80, where the signed and unsigned sums differ.
    let block = Header::new("package/caf\u{e9}", 0, b'0').seal();
    let stored = std::str::from_utf8(&block[148..154]).unwrap();
    let unsigned = i64::from_str_radix(stored, 8).unwrap();
    let signed = unsigned - 2 * 256; // two bytes ≥ 0x80, each 256 less when read as i8
    let mut signed_block = block.clone();
    signed_block[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
    let mut bad = block.clone();
    assert_eq!(files(&archive(&[block])), owned(&[("package/caf\u{e9}", b"")]));
    assert_eq!(files(&archive(&[signed_block])), owned(&[("package/caf\u{e9}", b"")]));
    bad[0] ^= 1; // 'p' becomes 'q': both sums grow by one
    let expected = format!(
        "test.tar: entry 0: header checksum {unsigned} matches neither the unsigned ({}) nor the \
         signed ({}) sum of its bytes",
        unsigned + 1,
        signed + 1
    );
    assert_eq!(error(&archive(&[bad])), expected);
}

#[test]
fn numeric_fields_must_be_octal() {
    let with_size = |field: &[u8]| {
        let mut header = Header::new("package/x", 0, b'0');
        header.set(124, field);
        archive(&[header.seal()])
    };
    assert_eq!(files(&with_size(b"00000000000 ")), owned(&[("package/x", b"")]));
    assert_eq!(files(&with_size(b"\0\0\0\0\0\0\0\0\0\0\0\0")), owned(&[("package/x", b"")]));
    let cases: [(&[u8], &str); 4] = [
        (b"0000000008\0\0", "size field \"0000000008\\x00\\x00\" is not an octal number"),
        (b"  000000001\0", "size field \"  000000001\\x00\" is not an octal number"),
        (b"0000 000001\0", "size field \"0000 000001\\x00\" is not an octal number"),
        (b"\x80\0\0\0\0\0\0\0\0\0\x01\0", "size field uses the base-256 form"),
    ];
    for (field, expected) in cases {
        let msg = error(&with_size(field));
        assert!(msg.contains(&format!("entry 0 (package/x): {expected}")), "{msg}");
    }
    let mut header = Header::new("package/x", 0, b'0').seal();
    header[148..156].copy_from_slice(b"12x45\0 \0");
    assert!(error(&archive(&[header])).contains("checksum field \"12x45"));
}

#[test]
fn bad_magic_is_not_a_tar() {
    let mut header = Header::new("package/x", 0, b'0');
    header.set(257, b"ustar\x0001");
    assert!(error(&archive(&[header.seal()])).contains("entry 0: bad magic \"ustar\\x0001\""));
    assert!(error(&[b'P'; 2048]).contains("not a ustar header"));
}

#[test]
fn size_past_the_end_is_truncation() {
    let mut bytes =
        [file("package/a", b"a"), Header::new("package/img/x.png", 99999, b'0').seal()].concat();
    bytes.extend_from_slice(&[0; 1024]);
    let msg = error(&bytes);
    assert!(
        msg.starts_with("test.tar: entry 1 (package/img/x.png): size 99999 (padded to 100352)"),
        "{msg}"
    );
    assert!(
        msg.ends_with("runs past the end of the archive, 1024 bytes left: truncated?"),
        "{msg}"
    );
    // The padding counts: 513 bytes of data need two blocks.
    let short = [Header::new("package/y", 513, b'0').seal(), vec![1; 1023]].concat();
    assert!(error(&short).contains("size 513 (padded to 1024) runs past"));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = archive(&[
        pax(b'x', &record("path", "package/long")),
        file("package/a", &[1; 700]),
        Header::new("package/", 0, b'5').seal(),
    ]);
    assert_eq!(files(&bytes).len(), 1);
    for end in 0..bytes.len() {
        error(&bytes[..end]);
    }
}

#[test]
fn end_of_archive_marker() {
    let one = file("package/a", b"a");
    let ended = [one.clone(), vec![0; 1024]].concat();
    let files_of = |bytes: &[u8]| files(bytes).len();
    assert_eq!(files_of(&ended), 1);
    // Record padding: zeros after the marker, even not to a whole block.
    assert_eq!(files_of(&[ended.clone(), vec![0; 9216 + 100]].concat()), 1);
    let cases = [
        (one.clone(), "test.tar: ends at byte 1024 without the end-of-archive marker"),
        ([one.clone(), vec![0; 512]].concat(), "only one zero block at byte 1024"),
        ([one.clone(), vec![0; 1000]].concat(), "only one zero block at byte 1024"),
        ([vec![0; 512], one.clone(), vec![0; 1024]].concat(), "lone zero block at byte 0"),
        ([ended.clone(), vec![0, 0, 1]].concat(), "non-zero byte at byte 2050"),
        ([ended, one].concat(), "non-zero byte at byte 2048"),
    ];
    for (bytes, expected) in cases {
        let msg = error(&bytes);
        assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
    }
}

#[test]
fn empty_archives() {
    assert!(files(&[0; 1024]).is_empty());
    assert!(files(&[0; 10240]).is_empty());
    assert!(error(b"").contains("ends at byte 0 without the end-of-archive marker"));
    assert!(error(&[0; 100]).contains("truncated header at byte 0: 100 of 512 bytes"));
}

#[test]
fn unsafe_paths_are_refused() {
    let cases = [
        ("/etc/passwd", "absolute path"),
        ("../x", "path has a '..' component"),
        ("package/../../x", "path has a '..' component"),
        ("package/..", "path has a '..' component"),
    ];
    for (path, expected) in cases {
        for (index, bytes) in [
            (0, archive(&[file(path, b"x")])),
            (1, archive(&[pax(b'x', &record("path", path)), file("package/ok", b"x")])),
            (0, archive(&[Header::new(path, 0, b'5').seal()])),
        ] {
            let msg = error(&bytes);
            let expected = format!("entry {index} ({path}): {expected}");
            assert!(msg.contains(&expected), "{msg:?} lacks {expected:?}");
        }
    }
    assert!(error(&archive(&[file("", b"x")])).contains("entry 0 (): empty path"));
    // An empty pax path cancels the record: the header's path stands.
    let cancelled = archive(&[pax(b'x', &record("path", "")), file("package/ok", b"x")]);
    assert_eq!(files(&cancelled), owned(&[("package/ok", b"x")]));
    // "..." and "..x" are ordinary names.
    let ok = archive(&[file("package/.../..x", b"x")]);
    assert_eq!(files(&ok), owned(&[("package/.../..x", b"x")]));
    let msg = error(&archive(&[pax(b'x', &record("path", "a\0b")), file("ok", b"")]));
    assert!(msg.contains("entry 1 (a\\u{0}b): path contains a NUL byte"), "{msg}");
    let msg = error(&archive(&[file("package/", b"x")]));
    assert!(msg.contains("a regular file's path must not end in '/'"), "{msg}");
    let mut latin1 = Header::new("caf", 0, b'0');
    latin1.set(3, b"\xe9");
    assert!(error(&archive(&[latin1.seal()])).contains("entry 0: path \"caf\\xe9\" is not UTF-8"));
}

#[test]
fn malformed_pax_records() {
    let cases = [
        ("x path=a\n".to_string(), "pax record does not start with a decimal length"),
        ("9path=abc\n".to_string(), "pax record does not start with a decimal length"),
        ("99 path=a\n".to_string(), "pax record length 99 is invalid: 10 bytes of records left"),
        ("2 path=abc\n".to_string(), "pax record length 2 is invalid"),
        ("11 path=abcX".to_string(), "pax record of length 11 does not end with a newline"),
        ("7 path\n".to_string(), "pax record \"path\" is not key=value"),
        ("6 =ab\n".to_string(), "pax record \"=ab\" is not key=value"),
        (record("size", "12a"), "pax size \"12a\" is not a decimal integer"),
        (record("size", "-1"), "pax size \"-1\" is not a decimal integer"),
        (record("size", "99999999999999999999"), "pax size \"99999999999999999999\" is not"),
    ];
    for (records, expected) in cases {
        let msg = error(&archive(&[pax(b'x', &records), file("package/a", b"")]));
        assert!(
            msg.contains(&format!("entry 0 (pax header): {expected}")),
            "{msg:?} lacks {expected:?}"
        );
    }
    let not_utf8 = [pax(b'x', "11 path=\u{e9}\n"), file("a", b"")].concat();
    let mut bytes = archive(&[not_utf8]);
    bytes[512 + 8] = 0xff; // the é's first byte
    assert!(error(&bytes).contains("pax record is not UTF-8"));
    // A pax size past the archive, a huge pax header, pax headers without their entry.
    let size = archive(&[pax(b'x', &record("size", "1048576")), file("package/big", b"")]);
    assert!(
        error(&size).contains("entry 1 (package/big): size 1048576 (padded to 1048576) runs past")
    );
    let huge = Header::new("PaxHeader/x", (1 << 20) + 1, b'x');
    assert!(error(&archive(&[huge.seal()])).contains("size 1048577 exceeds the limit of 1048576"));
    let twice = archive(&[pax(b'x', ""), pax(b'g', ""), file("a", b"")]);
    assert!(error(&twice).contains("entry 1 (pax header): follows another pax header"));
    let dangling = archive(&[file("a", b""), pax(b'x', &record("path", "b"))]);
    assert!(error(&dangling).contains("a pax header describes no entry"));
}

#[test]
fn other_refusals() {
    let twice =
        archive(&[file("package/a", b"1"), file("package/b", b""), file("package/a", b"2")]);
    assert!(error(&twice).contains("entry 2 (package/a): a second file with the path of entry 0"));
    let dir = archive(&[[Header::new("package/", 3, b'5').seal(), padded(b"abc")].concat()]);
    assert!(error(&dir).contains("entry 0 (package/): a directory must have size 0, not 3"));
    let long_name =
        archive(&[[Header::new("././@LongLink", 4, b'L').seal(), padded(b"abc\0")].concat()]);
    assert!(error(&long_name).contains("GNU long-name header (type 'L') not supported"));
}

#[test]
fn find_names_the_missing_path() {
    let bytes = archive(&[file("package/emoji.json", b"[]"), file("package/a", b"a")]);
    let entries = read_tar(&bytes, "emoji.tgz").unwrap();
    assert_eq!(find(&entries, "package/emoji.json", "emoji.tgz").unwrap(), b"[]");
    let msg = find(&entries, "package/missing.png", "emoji.tgz").unwrap_err().to_string();
    assert_eq!(msg, "emoji.tgz: no file \"package/missing.png\" in the archive (2 files)");
}

proptest! {
    #[test]
    fn mutated_or_truncated_archives_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        keep in any::<prop::sample::Index>(),
    ) {
        let bytes = archive(&[
            pax(b'x', &(record("path", "package/long") + &record("size", "3"))),
            file("package/a", b"abc"),
            Header::new("package/", 0, b'5').seal(),
        ]);
        let mut bytes = bytes;
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        bytes.truncate(keep.index(bytes.len() + 1));
        igpt::io::fuzzing::fuzz_tar(&bytes);
    }
}
