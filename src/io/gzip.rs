//! Gzip (RFC 1952) and DEFLATE (RFC 1951) decompression, written to be read.
//!
//! igpt ships the UCI handwritten-digits data set gzipped inside the binary (`include_bytes!` of
//! `src/data/digits.csv.gz`, 57 KB → 265 KB of CSV); this module turns those bytes back into text
//! before the data loaders (`data::digits`) parse them, and it unpacks gzipped tar archives
//! (`.tgz`, npm tarballs) before [`super::tar`] reads them. It sits in `io` with the other file
//! formats because it only turns bytes into bytes. The dependency set has no compression crate,
//! so the decoder lives here, in the style of Mark Adler's `puff.c`: clarity over speed.
//!
//! **Gzip member**: `1f 8b`, CM = 8 (deflate), FLG, MTIME (4 bytes), XFL, OS; then the optional
//! fields FLG announces, in this order: FEXTRA (2-byte length, data), FNAME and FCOMMENT
//! (zero-terminated), FHCRC (low 16 bits of the CRC-32 of the header so far). Then a DEFLATE
//! stream, then CRC-32 and ISIZE (length mod 2^32) of the data. All integers are little-endian.
//! Concatenated members decode to the concatenation of their data.
//!
//! **DEFLATE**: blocks, each opening with BFINAL (1 bit) and BTYPE (2 bits). Bits are read
//! least-significant first; Huffman codes are packed most-significant bit first.
//! * BTYPE 0, stored: skip to a byte boundary; LEN, NLEN = !LEN (16 bits each); LEN raw bytes.
//! * BTYPE 1, fixed Huffman: the 7–9-bit literal/length and 5-bit distance codes of the RFC.
//! * BTYPE 2, dynamic Huffman: both codes' lengths, run-length coded (symbols 16, 17, 18 repeat)
//!   and Huffman coded with a third, "code-length" code whose 3-bit lengths come first.
//!
//! Literal/length symbols 0–255 are bytes, 256 ends the block, 257–285 give a match length 3–258
//! (a base plus extra bits); a distance symbol 0–29 likewise gives 1–32768 bytes back. A match
//! is copied byte by byte, so it may overlap the bytes it produces (that is how runs are coded).
//!
//! **Canonical Huffman codes** are determined by each symbol's code length alone: codes of one
//! length are consecutive integers in symbol order, and the first code of length `len + 1` is
//! `(first + count[len]) << 1`. The decoder therefore keeps only `count[len]` and the symbols
//! sorted by (length, symbol), and reads one bit at a time until the code read so far falls in
//! `first .. first + count[len]`.
//!
//! Every malformed input — truncated, bad magic, bad block type, invalid code lengths,
//! over-subscribed or incomplete codes, a distance reaching before the data, a CRC or length
//! mismatch — is an [`Error::format`] naming the origin. Output is capped ([`MAX_OUTPUT`]) so a
//! decompression bomb is refused rather than allocated.

use crate::error::{Error, Result};

/// Largest output [`gunzip`] produces: 256 MiB. [`gunzip_limited`] takes another cap.
pub const MAX_OUTPUT: usize = 256 << 20;

/// Longest code length DEFLATE allows.
const MAX_BITS: usize = 15;
/// Match length of literal/length symbols 257..=285: base, and how many extra bits to add.
const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] =
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
/// Distance of distance symbols 0..=29: base, and how many extra bits to add.
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// Order in which a dynamic block stores the code-length code's lengths (rare ones last).
const CODE_LENGTH_ORDER: [usize; 19] =
    [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
/// Gzip header flags (FTEXT, bit 0, is only a hint that the data is text: nothing to do).
const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

/// An internal result whose error is the message; [`gunzip_limited`] adds the origin.
type Step<T> = std::result::Result<T, String>;

/// Decompresses a gzip file (one or more members); `origin` names it in error messages.
pub fn gunzip(bytes: &[u8], origin: &str) -> Result<Vec<u8>> {
    gunzip_limited(bytes, origin, MAX_OUTPUT)
}

/// [`gunzip`] that refuses to produce more than `max_output` bytes.
pub fn gunzip_limited(bytes: &[u8], origin: &str, max_output: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut input = Input { bytes, pos: 0, bit_buf: 0, bit_count: 0 };
    loop {
        member(&mut input, &mut out, max_output).map_err(|msg| Error::format(origin, msg))?;
        if input.pos == bytes.len() {
            return Ok(out);
        }
    }
}

/// CRC-32 as in gzip (ISO-HDLC: reflected polynomial 0xEDB88320, pre- and post-inverted).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// `CRC_TABLE[n]`: the CRC register after shifting byte `n` through it, so that the loop above
/// handles eight bits per step.
const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

/// Decodes the gzip member at `input.pos`, appending its data to `out`.
fn member(input: &mut Input, out: &mut Vec<u8>, max_output: usize) -> Step<()> {
    header(input)?;
    let start = out.len();
    inflate(input, &mut Output { data: out, start, max: max_output })?;
    let (crc, size) = (input.u32_le()?, input.u32_le()?);
    let data = &out[start..];
    if crc32(data) != crc {
        return Err(format!("CRC-32 mismatch: trailer {crc:08x}, data {:08x}", crc32(data)));
    }
    // ISIZE is the length modulo 2^32, hence the truncating cast.
    if data.len() as u32 != size {
        return Err(format!("length mismatch: trailer {size} bytes, data {} bytes", data.len()));
    }
    Ok(())
}

fn header(input: &mut Input) -> Step<()> {
    let start = input.pos;
    let fixed = input.take(10)?;
    if fixed[..2] != [0x1f, 0x8b] {
        return Err(format!(
            "bad magic {:02x} {:02x} at byte {start}: not gzip",
            fixed[0], fixed[1]
        ));
    }
    if fixed[2] != 8 {
        return Err(format!("compression method {} is not deflate (8)", fixed[2]));
    }
    let flags = fixed[3];
    if flags & 0xe0 != 0 {
        return Err(format!("reserved header flags set ({flags:#04x})"));
    }
    if flags & FEXTRA != 0 {
        let len = input.u16_le()?;
        input.take(usize::from(len))?;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            input.zero_terminated()?;
        }
    }
    if flags & FHCRC != 0 {
        let expected = crc32(&input.bytes[start..input.pos]) as u16; // low 16 bits
        if input.u16_le()? != expected {
            return Err("header CRC-16 mismatch".into());
        }
    }
    Ok(())
}

/// Decodes one DEFLATE stream; afterwards `input` is on the byte after its last bits.
fn inflate(input: &mut Input, out: &mut Output) -> Step<()> {
    loop {
        let last = input.bits(1)? == 1;
        match input.bits(2)? {
            0 => stored(input, out)?,
            1 => {
                let (lit, dist) = fixed_codes();
                codes(input, out, &lit, &dist)?;
            }
            2 => {
                let (lit, dist) = dynamic_codes(input)?;
                codes(input, out, &lit, &dist)?;
            }
            _ => return Err("invalid deflate block type 3".into()),
        }
        if last {
            input.align();
            return Ok(());
        }
    }
}

fn stored(input: &mut Input, out: &mut Output) -> Step<()> {
    input.align();
    let (len, nlen) = (input.u16_le()?, input.u16_le()?);
    if len != !nlen {
        return Err(format!("stored block length {len} does not match its complement {nlen}"));
    }
    out.extend(input.take(usize::from(len))?)
}

/// Decodes literals and matches of a Huffman-coded block up to its end-of-block symbol.
fn codes(input: &mut Input, out: &mut Output, lit: &Huffman, dist: &Huffman) -> Step<()> {
    loop {
        match lit.decode(input)? {
            byte @ 0..=255 => out.push(byte as u8)?,
            256 => return Ok(()),
            symbol => {
                let i = usize::from(symbol - 257);
                if i >= LENGTH_BASE.len() {
                    return Err(format!("invalid literal/length symbol {symbol}"));
                }
                let length = usize::from(LENGTH_BASE[i]) + input.bits(LENGTH_EXTRA[i])?;
                let d = usize::from(dist.decode(input)?);
                if d >= DIST_BASE.len() {
                    return Err(format!("invalid distance symbol {d}"));
                }
                out.copy(usize::from(DIST_BASE[d]) + input.bits(DIST_EXTRA[d])?, length)?;
            }
        }
    }
}

fn fixed_codes() -> (Huffman, Huffman) {
    let mut lengths = [8u8; 288];
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    (Huffman::new(&lengths), Huffman::new(&[5; 30]))
}

/// Reads a dynamic block's code lengths and builds its literal/length and distance codes.
fn dynamic_codes(input: &mut Input) -> Step<(Huffman, Huffman)> {
    let nlen = input.bits(5)? + 257;
    let ndist = input.bits(5)? + 1;
    let ncode = input.bits(4)? + 4;
    if nlen > 286 || ndist > 30 {
        return Err(format!("{nlen} literal/length or {ndist} distance codes (max 286, 30)"));
    }
    let mut lengths = [0u8; 19];
    for &symbol in &CODE_LENGTH_ORDER[..ncode] {
        lengths[symbol] = input.bits(3)? as u8;
    }
    let length_code = Huffman::new(&lengths);
    length_code.check("code-length", false)?;

    let mut lengths = vec![0u8; nlen + ndist];
    let mut i = 0;
    while i < lengths.len() {
        let (value, repeat) = match length_code.decode(input)? {
            len @ 0..=15 => (len as u8, 1),
            16 if i == 0 => return Err("code length repeat (16) with no previous length".into()),
            16 => (lengths[i - 1], 3 + input.bits(2)?),
            17 => (0, 3 + input.bits(3)?),
            _ => (0, 11 + input.bits(7)?),
        };
        if i + repeat > lengths.len() {
            return Err(format!("code lengths overrun the {} announced", lengths.len()));
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return Err("literal/length code has no end-of-block symbol".into());
    }
    let (lit, dist) = (Huffman::new(&lengths[..nlen]), Huffman::new(&lengths[nlen..]));
    lit.check("literal/length", true)?;
    dist.check("distance", true)?;
    Ok((lit, dist))
}

/// A canonical Huffman code: how many codes have each length, and the symbols in code order.
struct Huffman {
    count: [u16; MAX_BITS + 1],
    symbol: Vec<u16>,
}

impl Huffman {
    /// Builds the code from each symbol's code length (0: symbol unused; all ≤ [`MAX_BITS`]).
    fn new(lengths: &[u8]) -> Self {
        let mut count = [0u16; MAX_BITS + 1];
        for &len in lengths {
            count[usize::from(len)] += 1;
        }
        // offset[len]: where the symbols of code length `len` start in `symbol`.
        let mut offset = [0usize; MAX_BITS + 2];
        for len in 1..=MAX_BITS {
            offset[len + 1] = offset[len] + usize::from(count[len]);
        }
        let mut symbol = vec![0; offset[MAX_BITS + 1]];
        for (sym, &len) in lengths.iter().enumerate().filter(|&(_, &len)| len != 0) {
            symbol[offset[usize::from(len)]] = sym as u16;
            offset[usize::from(len)] += 1;
        }
        Huffman { count, symbol }
    }

    /// Rejects an over-subscribed code (more codes than bit patterns) and an incomplete one
    /// (unused patterns), except that `allow_single` permits a code of zero or one symbol, which
    /// DEFLATE codes with a single bit.
    fn check(&self, name: &str, allow_single: bool) -> Step<()> {
        // Bit patterns of the current length not yet taken by shorter codes.
        let mut left = 1i32;
        for len in 1..=MAX_BITS {
            left = 2 * left - i32::from(self.count[len]);
        }
        let single = self.symbol.len() == usize::from(self.count[1]) && self.symbol.len() <= 1;
        if left < 0 {
            Err(format!("{name} code is over-subscribed"))
        } else if left > 0 && !(allow_single && single) {
            Err(format!("{name} code is incomplete"))
        } else {
            Ok(())
        }
    }

    /// Reads one symbol, a bit at a time (codes are packed most-significant bit first).
    fn decode(&self, input: &mut Input) -> Step<u16> {
        let mut code = 0; // the bits read so far
        let mut first = 0; // the first code of length `len`
        let mut index = 0; // where that code's symbol sits in `symbol`
        for len in 1..=MAX_BITS {
            code |= input.bits(1)?;
            let count = usize::from(self.count[len]);
            if (first..first + count).contains(&code) {
                return Ok(self.symbol[index + code - first]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("invalid Huffman code (matches no symbol)".into())
    }
}

/// The compressed bytes with a read position, read as bytes (gzip fields, stored blocks) or as
/// least-significant-first bits (DEFLATE). Bits come from whole bytes fetched on demand, so
/// dropping the unread bits of the current byte ([`Input::align`]) leaves `pos` on the next one.
struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
    bit_buf: u32,
    bit_count: u32,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let Some(slice) = self.bytes.get(self.pos..self.pos.saturating_add(n)) else {
            return Err(format!("truncated: {n} bytes needed at byte {}", self.pos));
        };
        self.pos += n;
        Ok(slice)
    }

    fn u16_le(&mut self) -> Step<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32_le(&mut self) -> Step<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn zero_terminated(&mut self) -> Step<()> {
        let rest = &self.bytes[self.pos..];
        let len = rest.iter().position(|&b| b == 0).ok_or("unterminated header name or comment")?;
        self.pos += len + 1;
        Ok(())
    }

    /// The next `n` ≤ 16 bits as a number, the first bit read being the least significant.
    fn bits(&mut self, n: u8) -> Step<usize> {
        let n = u32::from(n);
        while self.bit_count < n {
            self.bit_buf |= u32::from(self.take(1)?[0]) << self.bit_count;
            self.bit_count += 8;
        }
        let value = self.bit_buf & ((1 << n) - 1);
        self.bit_buf >>= n;
        self.bit_count -= n;
        Ok(value as usize)
    }

    fn align(&mut self) {
        self.bit_buf = 0;
        self.bit_count = 0;
    }
}

/// The output so far, where the current member's data starts, and the output cap.
struct Output<'a> {
    data: &'a mut Vec<u8>,
    start: usize,
    max: usize,
}

impl Output<'_> {
    fn room_for(&self, n: usize) -> Step<()> {
        if n > self.max - self.data.len() {
            return Err(format!("output exceeds the limit of {} bytes", self.max));
        }
        Ok(())
    }

    fn push(&mut self, byte: u8) -> Step<()> {
        self.room_for(1)?;
        self.data.push(byte);
        Ok(())
    }

    fn extend(&mut self, bytes: &[u8]) -> Step<()> {
        self.room_for(bytes.len())?;
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Appends `length` bytes copied from `distance` back, one by one: the source may overlap
    /// the bytes being appended.
    fn copy(&mut self, distance: usize, length: usize) -> Step<()> {
        let available = self.data.len() - self.start;
        if distance > available {
            return Err(format!("distance {distance} too far back ({available} bytes decoded)"));
        }
        self.room_for(length)?;
        let from = self.data.len() - distance;
        for i in from..from + length {
            self.data.push(self.data[i]);
        }
        Ok(())
    }
}
