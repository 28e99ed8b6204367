//! numpy's `.npy` array files: token ids, palettes, pixel dumps.
//!
//! Layout (numpy `lib/format.py`, "NEP 1"):
//!
//! ```text
//! offset 0   6 bytes  magic "\x93NUMPY"
//!        6   1 byte   major version (1, 2 or 3)
//!        7   1 byte   minor version (0)
//!        8   u16 LE (v1.0) or u32 LE (v2.0, v3.0): HEADER_LEN
//!    10|12   HEADER_LEN bytes: a Python dict literal, ASCII (v1/v2 latin-1, v3 UTF-8),
//!            e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//!            padded with spaces and ending in '\n' so the data starts at a multiple of 64
//!  then      the elements, C order (row-major), little-endian, no padding
//! ```
//!
//! igpt reads the dtypes `<f4`, `<f8`, `<i4`, `<i8` and `|u1` (the only ones it stores) into
//! [`NpyArray`]. Big-endian data, `fortran_order: True`, other dtypes, more than [`MAX_NDIM`]
//! dimensions and headers over [`MAX_HEADER_LEN`] bytes are rejected with a message saying so.
//! The header is parsed by hand (keys in any order, each exactly once; shape a tuple of
//! non-negative integers; Python 2's `3L` accepted), and the element count implied by the shape
//! must equal the bytes after the header exactly — checked with overflow-checked arithmetic
//! before anything is allocated, so a hostile header cannot trigger a huge allocation.
//!
//! The writer reproduces `np.save` byte for byte: keys sorted, `repr` of the values, 21 − len
//! of the first dimension's digits of spare spaces (numpy's room for growing the first axis),
//! then spaces and a `'\n'` up to the next multiple of 64 bytes (one to 64 padding bytes,
//! counting the newline); version 1.0 unless the header is too long for a u16 length.

use super::decode_le;
use crate::error::{Error, Result};
use std::path::Path;

/// The 6 bytes every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Longest header accepted when reading (numpy itself refuses more than 10 000 characters by
/// default; our parser is linear-time, so a larger but still bounded limit is safe).
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// Most dimensions an array may have (numpy's `NPY_MAXDIMS`).
pub const MAX_NDIM: usize = 64;

/// numpy aligns the start of the data to this many bytes.
const ARRAY_ALIGN: usize = 64;

/// numpy leaves room for this many digits in the first dimension (`GROWTH_AXIS_MAX_DIGITS`).
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// An n-dimensional array in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

/// The elements of an [`NpyArray`], by dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

/// The element types igpt reads and writes, with their numpy descriptors.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    F32,
    F64,
    I32,
    I64,
    U8,
}

impl Kind {
    fn from_descr(descr: &str) -> Option<Kind> {
        match descr {
            "<f4" => Some(Kind::F32),
            "<f8" => Some(Kind::F64),
            "<i4" => Some(Kind::I32),
            "<i8" => Some(Kind::I64),
            "|u1" | "<u1" => Some(Kind::U8),
            _ => None,
        }
    }

    fn descr(self) -> &'static str {
        match self {
            Kind::F32 => "<f4",
            Kind::F64 => "<f8",
            Kind::I32 => "<i4",
            Kind::I64 => "<i8",
            Kind::U8 => "|u1",
        }
    }

    fn size(self) -> usize {
        match self {
            Kind::F32 | Kind::I32 => 4,
            Kind::F64 | Kind::I64 => 8,
            Kind::U8 => 1,
        }
    }

    /// Decodes little-endian bytes whose length is a multiple of `self.size()`.
    fn decode(self, bytes: &[u8]) -> NpyData {
        match self {
            Kind::F32 => NpyData::F32(decode_le(bytes, f32::from_le_bytes)),
            Kind::F64 => NpyData::F64(decode_le(bytes, f64::from_le_bytes)),
            Kind::I32 => NpyData::I32(decode_le(bytes, i32::from_le_bytes)),
            Kind::I64 => NpyData::I64(decode_le(bytes, i64::from_le_bytes)),
            Kind::U8 => NpyData::U8(bytes.to_vec()),
        }
    }
}

impl NpyData {
    pub fn len(&self) -> usize {
        match self {
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// numpy's name of the dtype ("float32", …), for messages.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            NpyData::F32(_) => "float32",
            NpyData::F64(_) => "float64",
            NpyData::I32(_) => "int32",
            NpyData::I64(_) => "int64",
            NpyData::U8(_) => "uint8",
        }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            NpyData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<&[f64]> {
        match self {
            NpyData::F64(v) => Some(v),
            _ => None,
        }
    }

    /// Integer data widened to `i64` (token files may be int32 or int64); `None` for floats.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self {
            NpyData::I32(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            NpyData::I64(v) => Some(v.clone()),
            NpyData::U8(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            NpyData::F32(_) | NpyData::F64(_) => None,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            NpyData::F32(_) => Kind::F32,
            NpyData::F64(_) => Kind::F64,
            NpyData::I32(_) => Kind::I32,
            NpyData::I64(_) => Kind::I64,
            NpyData::U8(_) => Kind::U8,
        }
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            NpyData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            NpyData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            NpyData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            NpyData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            NpyData::U8(v) => v.clone(),
        }
    }
}

impl NpyArray {
    /// An array, checking that `shape` has as many elements as `data`.
    pub fn new(shape: Vec<usize>, data: NpyData) -> Result<NpyArray> {
        let array = NpyArray { shape, data };
        array.check()?;
        Ok(array)
    }

    fn check(&self) -> Result<()> {
        if self.shape.len() > MAX_NDIM {
            let msg = format!("npy: {} dimensions, at most {MAX_NDIM} allowed", self.shape.len());
            return Err(Error::invalid(msg));
        }
        let count = self.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if count != Some(self.data.len()) {
            return Err(Error::invalid(format!(
                "npy: shape {:?} does not match the {} elements of data",
                self.shape,
                self.data.len()
            )));
        }
        Ok(())
    }
}

/// Parses a whole `.npy` file; `origin` names it in error messages.
pub fn parse_npy(bytes: &[u8], origin: &str) -> Result<NpyArray> {
    let (header, data_start) = split_header(bytes, origin)?;
    let Header { kind, fortran_order, shape } = HeaderParser::new(header, origin)?.parse()?;
    if fortran_order {
        let msg = "fortran_order: True is not supported; save a C-ordered array \
                   (np.ascontiguousarray) instead";
        return Err(Error::format(origin, msg));
    }
    let too_big = || Error::format(origin, format!("shape {shape:?} overflows the address space"));
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(too_big)?;
    let expected = count.checked_mul(kind.size()).ok_or_else(too_big)?;
    let data = &bytes[data_start..];
    if data.len() != expected {
        let what = if data.len() < expected { "truncated" } else { "trailing bytes" };
        let msg = format!(
            "{what}: shape {shape:?} of {} needs {expected} data bytes, the file has {}",
            kind.descr(),
            data.len()
        );
        return Err(Error::format(origin, msg));
    }
    Ok(NpyArray { shape, data: kind.decode(data) })
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = super::read_bytes(path)?;
    parse_npy(&bytes, &path.display().to_string())
}

/// The bytes `np.save` writes for `array`; fails if the shape does not match the data.
pub fn to_npy_bytes(array: &NpyArray) -> Result<Vec<u8>> {
    array.check()?;
    let mut out = wrap_header(&header_text(array));
    out.extend_from_slice(&array.data.to_le_bytes());
    Ok(out)
}

/// Writes `array` to `path` atomically.
pub fn write_npy(path: &Path, array: &NpyArray) -> Result<()> {
    super::write_atomic(path, &to_npy_bytes(array)?)
}

/// Checks the magic and version and returns the header text and the offset of the data.
fn split_header<'a>(bytes: &'a [u8], origin: &str) -> Result<(&'a [u8], usize)> {
    if bytes.len() < 10 {
        let msg = format!("file of {} bytes is too short for a .npy preamble", bytes.len());
        return Err(Error::format(origin, msg));
    }
    if &bytes[..6] != MAGIC {
        return Err(Error::format(origin, "not a .npy file: magic string \\x93NUMPY is missing"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match (major, minor) {
        (1, 0) => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        (2, 0) | (3, 0) if bytes.len() >= 12 => {
            let raw = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (usize::try_from(raw).unwrap_or(usize::MAX), 12)
        }
        (2, 0) | (3, 0) => {
            let msg = format!("file of {} bytes is too short for a .npy preamble", bytes.len());
            return Err(Error::format(origin, msg));
        }
        _ => {
            let msg = format!("unsupported .npy format version {major}.{minor}");
            return Err(Error::format(origin, msg));
        }
    };
    if header_len > MAX_HEADER_LEN {
        let msg = format!("header length {header_len} exceeds the {MAX_HEADER_LEN}-byte limit");
        return Err(Error::format(origin, msg));
    }
    let end = start + header_len;
    if end > bytes.len() {
        let msg = format!(
            "header length {header_len} runs past the end of the file ({} bytes)",
            bytes.len()
        );
        return Err(Error::format(origin, msg));
    }
    Ok((&bytes[start..end], end))
}

/// The three facts a `.npy` header records.
struct Header {
    kind: Kind,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A parser for the one Python literal numpy writes: a dict whose values are a string, a bool
/// and a tuple of integers.
struct HeaderParser<'a> {
    text: &'a [u8],
    pos: usize,
    origin: &'a str,
}

impl<'a> HeaderParser<'a> {
    fn new(text: &'a [u8], origin: &'a str) -> Result<Self> {
        let parser = HeaderParser { text, pos: 0, origin };
        match text.iter().position(|&b| !(b.is_ascii_graphic() || b.is_ascii_whitespace())) {
            Some(pos) => Err(HeaderParser { pos, ..parser }.error("non-ASCII or control byte")),
            None => Ok(parser),
        }
    }

    fn error(&self, msg: &str) -> Error {
        // The header was checked to be ASCII, so this is lossless; long headers are cut short.
        let shown = String::from_utf8_lossy(&self.text[..self.text.len().min(200)]);
        let msg =
            format!("npy header at byte {}: {msg} (header: {:?})", self.pos, shown.trim_end());
        Error::format(self.origin, msg)
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek() != Some(byte) {
            return Err(self.error(&format!("expected `{}`", byte as char)));
        }
        self.pos += 1;
        Ok(())
    }

    /// `{ key: value, ... }` with each of the three keys exactly once, then only whitespace.
    fn parse(mut self) -> Result<Header> {
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        self.skip_whitespace();
        self.expect(b'{')?;
        loop {
            self.skip_whitespace();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key_pos = self.pos;
            let key = self.parse_str()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let duplicate = match key {
                "descr" => descr.replace(self.parse_kind()?).is_some(),
                "fortran_order" => fortran_order.replace(self.parse_bool()?).is_some(),
                "shape" => shape.replace(self.parse_shape()?).is_some(),
                _ => {
                    self.pos = key_pos;
                    return Err(self.error(&format!("unexpected key '{key}'")));
                }
            };
            if duplicate {
                self.pos = key_pos;
                return Err(self.error(&format!("duplicate key '{key}'")));
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
        self.skip_whitespace();
        if self.pos != self.text.len() {
            return Err(self.error("unexpected text after the header dict"));
        }
        match (descr, fortran_order, shape) {
            (Some(kind), Some(fortran_order), Some(shape)) => {
                Ok(Header { kind, fortran_order, shape })
            }
            _ => Err(self.error("the keys 'descr', 'fortran_order' and 'shape' are required")),
        }
    }

    /// A quoted string without escapes ('…' or "…").
    fn parse_str(&mut self) -> Result<&'a str> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.error("expected a quoted string")),
        };
        let text: &'a [u8] = self.text;
        let start = self.pos + 1;
        let Some(len) = text[start..].iter().position(|&b| b == quote || b == b'\\') else {
            return Err(self.error("unterminated string"));
        };
        if text[start + len] == b'\\' {
            self.pos = start + len;
            return Err(self.error("escape sequences are not supported in strings"));
        }
        self.pos = start + len + 1;
        // The header was checked to be ASCII, so this cannot fail.
        std::str::from_utf8(&text[start..start + len]).map_err(|_| self.error("invalid string"))
    }

    fn parse_kind(&mut self) -> Result<Kind> {
        let start = self.pos;
        let descr = self.parse_str()?;
        Kind::from_descr(descr).ok_or_else(|| {
            self.pos = start;
            if descr.starts_with('>') {
                self.error(&format!(
                    "big-endian dtype '{descr}' is not supported; save with a little-endian \
                     dtype (arr.astype(arr.dtype.newbyteorder('<')))"
                ))
            } else {
                self.error(&format!(
                    "unsupported dtype '{descr}' (igpt reads <f4, <f8, <i4, <i8 and |u1)"
                ))
            }
        })
    }

    fn parse_bool(&mut self) -> Result<bool> {
        let rest = &self.text[self.pos..];
        let (value, len) = if rest.starts_with(b"True") {
            (true, 4)
        } else if rest.starts_with(b"False") {
            (false, 5)
        } else {
            return Err(self.error("expected True or False"));
        };
        self.pos += len;
        Ok(value)
    }

    /// `()`, `(n,)`, `(n, m)`, `(n, m,)`, …; `(n)` is an integer in Python, not a tuple.
    fn parse_shape(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(dims);
        }
        loop {
            if dims.len() == MAX_NDIM {
                return Err(self.error(&format!("more than {MAX_NDIM} dimensions")));
            }
            dims.push(self.parse_int()?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b')') {
                        self.pos += 1;
                        return Ok(dims);
                    }
                }
                Some(b')') if dims.len() > 1 => {
                    self.pos += 1;
                    return Ok(dims);
                }
                Some(b')') => return Err(self.error("a one-element shape must be written (n,)")),
                _ => return Err(self.error("expected `,` or `)` in shape")),
            }
        }
    }

    /// A non-negative decimal integer without leading zeros, optionally with Python 2's `L`.
    fn parse_int(&mut self) -> Result<usize> {
        let start = self.pos;
        let digits = self.text[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(self.error("expected a non-negative integer"));
        }
        if digits > 1 && self.text[start] == b'0' {
            return Err(self.error("leading zeros are not allowed"));
        }
        let value = self.text[start..start + digits]
            .iter()
            .try_fold(0usize, |acc, &b| acc.checked_mul(10)?.checked_add(usize::from(b - b'0')));
        let value = value.ok_or_else(|| self.error("dimension does not fit in usize"))?;
        self.pos = start + digits;
        if self.peek() == Some(b'L') {
            self.pos += 1;
        }
        Ok(value)
    }
}

/// The dict literal numpy writes, including its spare spaces for growing the first axis.
fn header_text(array: &NpyArray) -> String {
    let shape = match array.shape.as_slice() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => {
            let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut text = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        array.data.kind().descr()
    );
    if let Some(first) = array.shape.first() {
        let digits = first.to_string().len();
        text.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    text
}

/// Magic, version, length and `header` padded with spaces and a final `'\n'` so the data starts
/// at a multiple of [`ARRAY_ALIGN`]; numpy always adds at least the newline, and a whole
/// [`ARRAY_ALIGN`] block when the unpadded header already ends on a boundary.
fn wrap_header(header: &str) -> Vec<u8> {
    let padded_len = |preamble: usize| {
        let hlen = header.len() + 1; // with the newline
        hlen + ARRAY_ALIGN - (preamble + hlen) % ARRAY_ALIGN
    };
    let v1_len = padded_len(10);
    let mut out = Vec::with_capacity(12 + v1_len);
    out.extend_from_slice(MAGIC);
    let total = match u16::try_from(v1_len) {
        Ok(len) => {
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&len.to_le_bytes());
            v1_len
        }
        Err(_) => {
            // Beyond u16 only with absurd headers; version 2.0 has a u32 length.
            let v2_len = padded_len(12);
            out.extend_from_slice(&[2, 0]);
            out.extend_from_slice(&(v2_len as u32).to_le_bytes());
            v2_len
        }
    };
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + total - header.len() - 1, b' ');
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `np.save(f, np.arange(6, dtype='<f4').reshape(2, 3))` writes (numpy 2.x).
    fn numpy_arange_2x3() -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
        bytes.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
        bytes.resize(127, b' ');
        bytes.push(b'\n');
        for x in 0..6 {
            bytes.extend_from_slice(&(x as f32).to_le_bytes());
        }
        bytes
    }

    fn parse_err(bytes: &[u8]) -> String {
        parse_npy(bytes, "t.npy").unwrap_err().to_string()
    }

    /// A version-1.0 file with the given header text and data bytes (no alignment).
    fn v1_file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn writes_numpy_bytes_exactly() {
        let array = NpyArray::new(vec![2, 3], NpyData::F32((0..6).map(|x| x as f32).collect()));
        let bytes = to_npy_bytes(&array.unwrap()).unwrap();
        assert_eq!(bytes, numpy_arange_2x3());
    }

    #[test]
    fn reads_numpy_bytes() {
        let array = parse_npy(&numpy_arange_2x3(), "a.npy").unwrap();
        assert_eq!(array.shape, [2, 3]);
        assert_eq!(array.data, NpyData::F32(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    }

    #[test]
    fn scalar_and_empty_shapes() {
        let scalar = NpyArray::new(vec![], NpyData::F64(vec![3.5])).unwrap();
        let bytes = to_npy_bytes(&scalar).unwrap();
        assert_eq!(bytes.len(), 128 + 8);
        assert_eq!(&bytes[10..60], b"{'descr': '<f8', 'fortran_order': False, 'shape': ");
        assert_eq!(parse_npy(&bytes, "s.npy").unwrap(), scalar);
        let empty = NpyArray::new(vec![0, 3], NpyData::I64(vec![])).unwrap();
        assert_eq!(parse_npy(&to_npy_bytes(&empty).unwrap(), "e.npy").unwrap(), empty);
    }

    #[test]
    fn header_padding_adds_a_full_block_when_already_aligned() {
        // numpy pads with 1..=64 bytes: an exactly aligned header still gets 64 more.
        let header = "x".repeat(64 - 10 - 1);
        let wrapped = wrap_header(&header);
        assert_eq!(wrapped.len(), 128);
        assert_eq!(wrapped[wrapped.len() - 1], b'\n');
    }

    #[test]
    fn long_headers_switch_to_version_2() {
        let header = "x".repeat(70_000);
        let wrapped = wrap_header(&header);
        assert_eq!(&wrapped[6..8], &[2, 0]);
        assert_eq!(wrapped.len() % ARRAY_ALIGN, 0);
        let len = u32::from_le_bytes([wrapped[8], wrapped[9], wrapped[10], wrapped[11]]);
        assert_eq!(len as usize + 12, wrapped.len());
    }

    #[test]
    fn reads_versions_2_and_3_and_free_form_headers() {
        let header = b"{ \"shape\" : (3L,) ,'fortran_order':False,'descr':'|u1'}\n";
        for major in [2u8, 3] {
            let mut bytes = vec![0x93, b'N', b'U', b'M', b'P', b'Y', major, 0];
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
            bytes.extend_from_slice(header);
            bytes.extend_from_slice(&[7, 8, 9]);
            let array = parse_npy(&bytes, "v.npy").unwrap();
            assert_eq!(array, NpyArray { shape: vec![3], data: NpyData::U8(vec![7, 8, 9]) });
        }
    }

    #[test]
    fn malformed_files_give_clear_errors() {
        let ok = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
        let data = [1, 0, 0, 0, 2, 0, 0, 0];
        assert!(parse_npy(&v1_file(ok, &data), "t.npy").is_ok());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\x93NUMPY".to_vec(), "too short"),
            (b"\x89PNG\r\n\x1a\n\0\0\0\0".to_vec(), "magic string"),
            (b"\x93NUMPY\x04\x00\0\0".to_vec(), "unsupported .npy format version 4.0"),
            (b"\x93NUMPY\x01\x00\xff\x00{}".to_vec(), "runs past the end of the file"),
            (b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec(), "exceeds the 1048576-byte limit"),
            (v1_file(ok, &data[..7]), "truncated: shape [2] of <i4 needs 8 data bytes"),
            (v1_file(ok, &[0; 9]), "trailing bytes"),
            (v1_file(&ok.replace("<i4", ">i4"), &data), "big-endian dtype '>i4'"),
            (v1_file(&ok.replace("<i4", "<c8"), &data), "unsupported dtype '<c8'"),
            (v1_file(&ok.replace("False", "True"), &data), "fortran_order: True"),
            (v1_file(&ok.replace("(2,)", "(2)"), &data), "must be written (n,)"),
            (v1_file(&ok.replace("(2,)", "[2]"), &data), "expected `(`"),
            (v1_file(&ok.replace("(2,)", "(-2,)"), &data), "non-negative integer"),
            (v1_file(&ok.replace("(2,)", "(02,)"), &data), "leading zeros"),
            (v1_file(&ok.replace("False", "0"), &data), "expected True or False"),
            (v1_file(&ok.replace("'shape'", "'shap'"), &data), "unexpected key 'shap'"),
            (v1_file(&ok.replace("'shape': (2,), ", ""), &data), "are required"),
            (v1_file(&ok.replace("}", "'descr': '<i4'}"), &data), "duplicate key 'descr'"),
            (v1_file(&ok.replace("<i4", "<\\x69"), &data), "escape sequences"),
            (v1_file(&format!("{ok} x"), &data), "unexpected text after"),
            (v1_file(&ok.replace("'<i4'", "'\u{e9}'"), &data), "non-ASCII"),
            (v1_file(&ok.replace("(2,)", "(99999999999999999999999,)"), &data), "fit in usize"),
            (
                v1_file(&ok.replace("(2,)", "(4294967296, 4294967296, 4294967296)"), &data),
                "overflows the address space",
            ),
            (v1_file(&ok.replace("(2,)", "(4611686018427387904,)"), &data), "overflows"),
            (v1_file(&ok.replace("(2,)", &format!("({})", "1, ".repeat(65))), &[]), "more than 64"),
        ];
        for (bytes, expected) in cases {
            let msg = parse_err(&bytes);
            assert!(msg.starts_with("t.npy: "), "{msg}");
            assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
        }
    }

    #[test]
    fn writer_rejects_inconsistent_arrays() {
        let bad = NpyArray { shape: vec![2, 2], data: NpyData::U8(vec![1, 2, 3]) };
        assert!(to_npy_bytes(&bad).unwrap_err().to_string().contains("does not match"));
        assert!(NpyArray::new(vec![1; 65], NpyData::U8(vec![1])).is_err());
    }

    #[test]
    fn integer_data_widens_to_i64() {
        assert_eq!(NpyData::I32(vec![-1, 5]).to_i64(), Some(vec![-1, 5]));
        assert_eq!(NpyData::U8(vec![255]).to_i64(), Some(vec![255]));
        assert_eq!(NpyData::F32(vec![1.0]).to_i64(), None);
    }
}
