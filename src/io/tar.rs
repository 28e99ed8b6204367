//! Tar archives (POSIX ustar, with pax extended headers), read strictly and without copying.
//!
//! Where it sits: npm publishes packages as gzipped tar archives (`npm pack` writes them with
//! node-tar: entries such as `package/emoji.json` or `package/img/twitter/sheets/32.png`). A
//! loader gunzips the file with [`super::gzip`], hands the bytes to [`read_tar`], and picks the
//! files it needs with [`find`]. The entries borrow their data from those bytes, so reading an
//! archive allocates only the paths.
//!
//! **Layout**: a sequence of 512-byte blocks. Each entry is a header block followed by its data,
//! zero-padded to a whole block; two zero blocks end the archive (writers may then pad it with
//! more zeros to a whole "record", e.g. 10 240 bytes). The header fields igpt reads:
//!
//! | offset | bytes | field | use |
//! |---|---|---|---|
//! | 0 | 100 | name | path, up to the first NUL |
//! | 124 | 12 | size | data length, octal |
//! | 148 | 8 | chksum | sum of the header's bytes, octal |
//! | 156 | 1 | typeflag | `0`/NUL/`7` file, `1`–`6` link, device, directory, FIFO; `x`, `g` pax |
//! | 257 | 8 | magic + version | `ustar\0` `00` (POSIX) or `ustar  \0` (GNU) |
//! | 345 | 155 | prefix | POSIX only: the path is `prefix/name` when it is set |
//!
//! **Pax**: a header of type `x` carries records `LEN key=value\n` (LEN, in decimal, counts the
//! whole record) whose `path` and `size` replace those of the next header: that is how paths
//! longer than ustar's fields and files over 8 GiB are stored. Type `g` (global) headers are
//! checked the same way; their values are ignored.
//!
//! Everything else (mode, owner, times, link targets) is ignored: igpt only wants the files'
//! bytes. Every malformed input is an [`Error::format`] naming the origin, the entry (its index
//! among the headers, and its path when known) and the problem — never a panic. The only
//! allocations are the paths and the list of entries: at most one per 512 bytes of input, and
//! at most [`MAX_HEADERS`].

use crate::error::{Error, Result};
use std::collections::HashMap;

/// Tar's unit: headers occupy one block, data is padded to whole blocks.
const BLOCK: usize = 512;
/// Most header blocks (pax headers included) read from one archive.
pub const MAX_HEADERS: usize = 1 << 20;
/// Largest pax extended header (its data, the records) accepted: 1 MiB.
pub const MAX_PAX_SIZE: usize = 1 << 20;

/// One regular file of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry<'a> {
    /// As the archive spells it: UTF-8, `/`-separated, relative, without `..` components.
    pub path: String,
    /// The file's bytes, a slice of the archive.
    pub data: &'a [u8],
}

/// An internal result whose error is the message; the caller adds the origin and the entry.
type Step<T> = std::result::Result<T, String>;

/// Reads a whole (decompressed) tar archive and returns its regular files in archive order;
/// `origin` names the archive in error messages.
pub fn read_tar<'a>(bytes: &'a [u8], origin: &str) -> Result<Vec<TarEntry<'a>>> {
    read_limited(bytes, origin, MAX_HEADERS)
}

/// [`read_tar`] with another bound on the number of headers (a test needs a small one).
fn read_limited<'a>(bytes: &'a [u8], origin: &str, max: usize) -> Result<Vec<TarEntry<'a>>> {
    let mut reader =
        Reader { bytes, pos: 0, pending: None, entries: Vec::new(), seen: HashMap::new() };
    // One block more than the headers allowed: it may be the end-of-archive marker.
    for index in 0..=max {
        let block = reader.header_block().map_err(|msg| Error::format(origin, msg))?;
        if is_zero(block) {
            reader.end_of_archive().map_err(|msg| Error::format(origin, msg))?;
            return Ok(reader.entries);
        }
        if index < max {
            reader.entry(block, index, origin)?;
        }
    }
    Err(Error::format(origin, format!("more than {max} headers")))
}

/// The data of the file at `path` (spelled exactly as in the archive); an error naming the path
/// and the archive `origin` when there is none.
pub fn find<'a>(entries: &[TarEntry<'a>], path: &str, origin: &str) -> Result<&'a [u8]> {
    match entries.iter().find(|entry| entry.path == path) {
        Some(entry) => Ok(entry.data),
        None => Err(Error::format(
            origin,
            format!("no file {path:?} in the archive ({} files)", entries.len()),
        )),
    }
}

/// The archive, where the next header starts, and what has been read so far.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// What a pax header (`x`) says about the entry that follows it, until that entry is read.
    pending: Option<Pax>,
    entries: Vec<TarEntry<'a>>,
    /// The header index of every file path returned, to refuse a second file of the same path.
    seen: HashMap<String, usize>,
}

/// The pax values that override an entry's header; `None` keeps the header's value.
#[derive(Default)]
struct Pax {
    path: Option<String>,
    size: Option<u64>,
}

impl<'a> Reader<'a> {
    /// The next header block; moves past it.
    fn header_block(&mut self) -> Step<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if left == 0 {
            return Err(format!(
                "ends at byte {} without the end-of-archive marker (two zero blocks): truncated?",
                self.pos
            ));
        }
        if left < BLOCK {
            return Err(format!("truncated header at byte {}: {left} of {BLOCK} bytes", self.pos));
        }
        let block = &self.bytes[self.pos..self.pos + BLOCK];
        self.pos += BLOCK;
        Ok(block)
    }

    /// Checks the end of the archive, whose first zero block has just been read: a second zero
    /// block must follow, then nothing but zeros (the padding to a whole record).
    fn end_of_archive(&self) -> Step<()> {
        let first = self.pos - BLOCK;
        if self.pending.is_some() {
            return Err(format!(
                "a pax header describes no entry: the archive ends at byte {first}"
            ));
        }
        match self.bytes.get(self.pos..self.pos + BLOCK) {
            None => Err(format!(
                "only one zero block at byte {first}; the end-of-archive marker is two: truncated?"
            )),
            Some(second) if !is_zero(second) => {
                Err(format!("a lone zero block at byte {first} is followed by more entries"))
            }
            Some(_) => match self.bytes[self.pos + BLOCK..].iter().position(|&b| b != 0) {
                Some(i) => Err(format!(
                    "non-zero byte at byte {} after the end-of-archive marker",
                    self.pos + BLOCK + i
                )),
                None => Ok(()),
            },
        }
    }

    /// Reads the entry whose header `block` has just been read, and moves past its data.
    fn entry(&mut self, block: &'a [u8], index: usize, origin: &str) -> Result<()> {
        let fail = |label: &str, msg: String| {
            Error::format(origin, format!("entry {index}{label}: {msg}"))
        };
        check_header(block).map_err(|msg| fail("", msg))?;
        let flag = block[156];
        if matches!(flag, b'x' | b'g') {
            return self.pax_header(block, flag).map_err(|msg| fail(" (pax header)", msg));
        }
        let pax = self.pending.take().unwrap_or_default();
        let path = match pax.path {
            Some(path) => path,
            None => header_path(block).map_err(|msg| fail("", msg))?,
        };
        let result = self.member(block, flag, &path, pax.size, index);
        result.map_err(|msg| fail(&format!(" ({})", printable(&path)), msg))
    }

    /// Reads a pax header's records: kept for the next entry (`x`) or only checked (`g`).
    fn pax_header(&mut self, block: &[u8], flag: u8) -> Step<()> {
        if self.pending.is_some() {
            return Err("follows another pax header instead of the entry that one describes".into());
        }
        let size = octal(&block[124..136], "size")?;
        if size > MAX_PAX_SIZE as u64 {
            return Err(format!("size {size} exceeds the limit of {MAX_PAX_SIZE} bytes"));
        }
        let pax = parse_pax(self.data(size)?)?;
        if flag == b'x' {
            self.pending = Some(pax);
        }
        Ok(())
    }

    /// Handles an entry by type: a regular file is kept, other types are skipped.
    fn member(
        &mut self,
        block: &[u8],
        flag: u8,
        path: &str,
        pax_size: Option<u64>,
        index: usize,
    ) -> Step<()> {
        check_path(path)?;
        let size = match pax_size {
            Some(size) => size,
            None => octal(&block[124..136], "size")?,
        };
        match flag {
            b'0' | b'\0' | b'7' => self.file(path, size, index),
            b'1'..=b'6' if size != 0 => {
                Err(format!("a {} must have size 0, not {size}", type_name(flag)))
            }
            b'1'..=b'6' => Ok(()),
            b'L' | b'K' => Err(format!(
                "GNU long-name header (type '{}') not supported: write the archive in pax format",
                char::from(flag)
            )),
            _ => self.data(size).map(drop),
        }
    }

    /// Keeps a regular file, unless its path looks like a directory or repeats another file's.
    fn file(&mut self, path: &str, size: u64, index: usize) -> Step<()> {
        if path.ends_with('/') {
            return Err("a regular file's path must not end in '/'".into());
        }
        let data = self.data(size)?;
        if let Some(first) = self.seen.insert(path.to_string(), index) {
            return Err(format!("a second file with the path of entry {first}"));
        }
        self.entries.push(TarEntry { path: path.to_string(), data });
        Ok(())
    }

    /// The `size` bytes of data after the header just read; moves past them and their padding.
    fn data(&mut self, size: u64) -> Step<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        let padded = size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64);
        if padded > left as u64 {
            return Err(format!(
                "size {size} (padded to {padded}) runs past the end of the archive, \
                 {left} bytes left: truncated?"
            ));
        }
        // Both fit in `left`, a usize, so the casts are exact.
        let data = &self.bytes[self.pos..self.pos + size as usize];
        self.pos += padded as usize;
        Ok(data)
    }
}

fn is_zero(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Checks the magic and the checksum of a header block that is not all zeros.
fn check_header(block: &[u8]) -> Step<()> {
    let magic = &block[257..265];
    if magic != b"ustar\x0000" && magic != b"ustar  \0" {
        return Err(format!("bad magic \"{}\": not a ustar header", magic.escape_ascii()));
    }
    let stored = octal(&block[148..156], "checksum")?;
    let (unsigned, signed) = checksums(block);
    if stored != unsigned && i64::try_from(stored) != Ok(signed) {
        return Err(format!(
            "header checksum {stored} matches neither the unsigned ({unsigned}) nor the signed \
             ({signed}) sum of its bytes"
        ));
    }
    Ok(())
}

/// The sum of a header's bytes, counting the checksum field as eight spaces, with the bytes
/// read as unsigned and as signed numbers: POSIX prescribes the first, but some old writers
/// used the second, and GNU tar accepts both.
fn checksums(block: &[u8]) -> (u64, i64) {
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &byte) in block.iter().enumerate() {
        let byte = if (148..156).contains(&i) { b' ' } else { byte };
        unsigned += u64::from(byte);
        signed += i64::from(byte as i8);
    }
    (unsigned, signed)
}

/// A numeric header field: octal digits, then only NUL or space padding to the end of the
/// field (no digits at all reads as 0). The base-256 form GNU tar uses for values that do not
/// fit (first byte ≥ 0x80) is refused.
fn octal(field: &[u8], name: &str) -> Step<u64> {
    if field[0] & 0x80 != 0 {
        return Err(format!("{name} field uses the base-256 form, which is not supported"));
    }
    let digits = field.iter().take_while(|b| (b'0'..=b'7').contains(b)).count();
    if field[digits..].iter().any(|&b| b != 0 && b != b' ') {
        return Err(format!("{name} field \"{}\" is not an octal number", field.escape_ascii()));
    }
    // At most 12 digits, 36 bits: no overflow.
    Ok(field[..digits].iter().fold(0, |n, &d| n * 8 + u64::from(d - b'0')))
}

/// The path a ustar header gives: `prefix/name` when the prefix field (POSIX headers only; GNU
/// headers keep other fields there) is set.
fn header_path(block: &[u8]) -> Step<String> {
    let name = until_nul(&block[..100]);
    let prefix = if &block[257..263] == b"ustar\0" { until_nul(&block[345..500]) } else { &[] };
    let path = if prefix.is_empty() { name.to_vec() } else { [prefix, b"/", name].concat() };
    String::from_utf8(path)
        .map_err(|e| format!("path \"{}\" is not UTF-8", e.as_bytes().escape_ascii()))
}

/// A string field's bytes up to its first NUL (all of them when it has none).
fn until_nul(field: &[u8]) -> &[u8] {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..len]
}

/// Refuses a path that is empty, contains a NUL (possible in pax), is absolute or climbs out
/// of the folder the archive would be unpacked into.
fn check_path(path: &str) -> Step<()> {
    if path.is_empty() {
        Err("empty path".into())
    } else if path.contains('\0') {
        Err("path contains a NUL byte".into())
    } else if path.starts_with('/') {
        Err("absolute path".into())
    } else if path.split('/').any(|component| component == "..") {
        Err("path has a '..' component".into())
    } else {
        Ok(())
    }
}

/// `path` for a message, its control characters escaped so that a hostile name cannot garble
/// the terminal.
fn printable(path: &str) -> String {
    let mut shown = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

fn type_name(flag: u8) -> &'static str {
    match flag {
        b'1' => "hard link",
        b'2' => "symbolic link",
        b'3' => "character device",
        b'4' => "block device",
        b'5' => "directory",
        _ => "FIFO",
    }
}

/// Parses the records of a pax header: `LEN key=value\n` each, back to back.
fn parse_pax(mut records: &[u8]) -> Step<Pax> {
    let mut pax = Pax::default();
    while !records.is_empty() {
        let (key, value, rest) = pax_record(records)?;
        match key {
            "path" => pax.path = (!value.is_empty()).then(|| value.to_string()),
            "size" => pax.size = pax_size(value)?,
            _ => {}
        }
        records = rest;
    }
    Ok(pax)
}

/// The value of a pax `size` record; an empty value (which cancels the record) gives `None`.
fn pax_size(value: &str) -> Step<Option<u64>> {
    if value.is_empty() {
        return Ok(None);
    }
    match decimal(value) {
        Some(size) => Ok(Some(size)),
        None => Err(format!("pax size {value:?} is not a decimal integer")),
    }
}

/// Splits the first record off `records`: its key, its value, and the records after it.
fn pax_record(records: &[u8]) -> Step<(&str, &str, &[u8])> {
    let (len, digits) = pax_length(records)?;
    if records[len - 1] != b'\n' {
        return Err(format!("pax record of length {len} does not end with a newline"));
    }
    let text = std::str::from_utf8(&records[digits + 1..len - 1])
        .map_err(|_| "pax record is not UTF-8".to_string())?;
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value, &records[len..])),
        _ => Err(format!("pax record {text:?} is not key=value")),
    }
}

/// The length at the start of a record, checked to cover more than its own digits and space and
/// to fit in `records`, and the number of its digits.
fn pax_length(records: &[u8]) -> Step<(usize, usize)> {
    let digits = records.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || records.get(digits) != Some(&b' ') {
        return Err("pax record does not start with a decimal length and a space".into());
    }
    // ASCII digits are UTF-8.
    let text = std::str::from_utf8(&records[..digits]).unwrap_or_default();
    match decimal(text) {
        Some(len) if len > digits as u64 + 1 && len <= records.len() as u64 => {
            Ok((len as usize, digits))
        }
        _ => Err(format!(
            "pax record length {text} is invalid: {} bytes of records left",
            records.len()
        )),
    }
}

/// A non-empty string of ASCII digits as a number; `None` otherwise or when it overflows.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header block for a directory `name`, checksum included.
    fn directory(name: &str) -> Vec<u8> {
        let mut block = vec![0; BLOCK];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[124..136].copy_from_slice(b"00000000000\0");
        block[156] = b'5';
        block[257..265].copy_from_slice(b"ustar\x0000");
        let sum: u64 = checksums(&block).0;
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }

    #[test]
    fn header_count_is_bounded() {
        let two = [directory("a/"), directory("b/"), vec![0; 2 * BLOCK]].concat();
        assert!(read_limited(&two, "t.tar", 2).unwrap().is_empty());
        let msg = read_limited(&two, "t.tar", 1).unwrap_err().to_string();
        assert_eq!(msg, "t.tar: more than 1 headers");
    }
}
