//! HuggingFace safetensors files: model weights (`model.safetensors`) and golden outputs.
//!
//! Layout (the reference `safetensors` library, `safetensors/src/tensor.rs`):
//!
//! ```text
//! offset 0      u64 LE  N = header length in bytes (at most 100 000 000)
//!        8      N bytes JSON object, UTF-8, padded at the end with spaces:
//!               {"__metadata__": {"key": "value", …},            (optional, string → string)
//!                "NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, …}
//!        8 + N  the data section: each tensor's elements, C order, little-endian,
//!               at data[BEGIN..END]
//! ```
//!
//! **Reading** validates like the reference library, plus a few stricter checks (marked ⁺):
//! the header length fits in the file; the header is JSON (see [`super::json`]: duplicate
//! keys⁺ are rejected, so tensor names are unique) and an object; each tensor entry has exactly⁺
//! the fields `dtype`, `shape`, `data_offsets` with a known dtype, integer dims and two integer
//! offsets; sorted by offsets, the tensors must tile the data section exactly — each begins where
//! the previous one ended (no overlap, no gap), `END ≥ BEGIN`, `END − BEGIN = product(shape) ×
//! dtype size` (overflow-checked), and the last one ends at the end of the file. Shapes `[]`
//! are scalars (one element). Only then is any tensor data copied, so allocation never exceeds
//! the file size.
//!
//! **Writing** reproduces the reference library's bytes: `__metadata__` first (only if there is
//! metadata; its keys in the order given — the reference library uses hash-map order, so files
//! with more than one metadata key can differ there), then the tensors sorted by dtype in the
//! reference library's order (declared order of [`Dtype`], descending — so 8-byte types come
//! first and every tensor stays aligned to its element size), ties broken by name (byte-wise);
//! offsets assigned consecutively from 0; the compact header padded with spaces to a multiple of
//! 8 bytes so that the data section starts 8-byte aligned.
//!
//! igpt stores every whole-byte dtype of the reference library except the 8-bit floats and
//! complex numbers (those, and the sub-byte types, give a clear "not supported" error). Typed
//! accessors convert losslessly: `F16`/`BF16` widen to `f32`, integer types to `i64`.

use super::decode_le;
use super::json::{parse_json, Json};
use crate::error::{Error, Result};
use std::path::Path;

/// Largest header the reference library (and so igpt) accepts.
pub const MAX_HEADER_SIZE: usize = 100_000_000;

/// Results of the validation helpers: a message that [`SafeTensors::parse`] prefixes with the
/// file name.
type Checked<T> = std::result::Result<T, String>;

/// Reserved header key for the free-form string → string metadata.
const METADATA_KEY: &str = "__metadata__";

/// Element types, declared in the reference library's order (increasing alignment); the derived
/// `Ord` is what the writer sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    I16,
    U16,
    F16,
    Bf16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

/// Dtype names of the format that igpt does not store.
const UNSUPPORTED_DTYPES: [&str; 9] = [
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "F8_E5M2",
    "F8_E4M3",
    "F8_E8M0",
    "F8_E4M3FNUZ",
    "F8_E5M2FNUZ",
    "C64",
];

impl Dtype {
    const ALL: [Dtype; 13] = [
        Dtype::Bool,
        Dtype::U8,
        Dtype::I8,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::Bf16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::F64,
        Dtype::I64,
        Dtype::U64,
    ];

    /// The name used in the header (`"F32"`, `"BF16"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::Bf16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    pub fn from_name(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }
}

/// One tensor: its dtype, shape and raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorView {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Bytes of a tensor of `dtype` and `shape`, or `None` on overflow.
fn byte_len(dtype: Dtype, shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?.checked_mul(dtype.size())
}

impl TensorView {
    /// A tensor, checking that `data` holds exactly `product(shape)` elements of `dtype`.
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> Result<TensorView> {
        let view = TensorView { dtype, shape, data };
        view.check()?;
        Ok(view)
    }

    fn check(&self) -> Result<()> {
        if let Some(&dim) = self.shape.iter().find(|&&d| d as f64 > super::json::MAX_SAFE_INTEGER) {
            return Err(Error::invalid(format!("tensor dimension {dim} exceeds 2^53 - 1")));
        }
        if byte_len(self.dtype, &self.shape) != Some(self.data.len()) {
            return Err(Error::invalid(format!(
                "a {} tensor of shape {:?} cannot hold {} bytes",
                self.dtype.name(),
                self.shape,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// The elements as `f32` if the dtype converts exactly (F32, F16, BF16).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match self.dtype {
            Dtype::F32 => Some(decode_le(&self.data, f32::from_le_bytes)),
            Dtype::F16 => Some(decode_le(&self.data, |b| f16_to_f32(u16::from_le_bytes(b)))),
            Dtype::Bf16 => Some(decode_le(&self.data, |b| bf16_to_f32(u16::from_le_bytes(b)))),
            _ => None,
        }
    }

    /// The elements as `f64` if the dtype converts exactly (F64, F32, F16, BF16).
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match self.dtype {
            Dtype::F64 => Some(decode_le(&self.data, f64::from_le_bytes)),
            _ => Some(self.to_f32()?.into_iter().map(f64::from).collect()),
        }
    }

    /// The elements as `i64` if the dtype is a signed 32/64-bit integer (token ids).
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self.dtype {
            Dtype::I64 => Some(decode_le(&self.data, i64::from_le_bytes)),
            Dtype::I32 => Some(decode_le(&self.data, |b| i64::from(i32::from_le_bytes(b)))),
            _ => None,
        }
    }
}

/// IEEE half precision to single: exact (every f16 is an f32), NaN payloads kept.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match exponent {
        // Zero and subnormals: mantissa · 2^-24, exact in f32.
        0 => mantissa as f32 * f32::from_bits(0x3380_0000),
        // Infinity and NaN.
        0x1f => f32::from_bits(0x7f80_0000 | (mantissa << 13)),
        // Normal: rebias the exponent from 15 to 127.
        _ => f32::from_bits(((exponent + 127 - 15) << 23) | (mantissa << 13)),
    };
    f32::from_bits(magnitude.to_bits() | sign)
}

/// bfloat16 is the top half of an f32: widening one is exact (bf16 tensors here, bf16 KV
/// caches and weight panels in `kernels`).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// A safetensors file in memory: tensors in file order (by offset) and the metadata.
#[derive(Debug, Clone)]
pub struct SafeTensors {
    pub tensors: Vec<(String, TensorView)>,
    pub metadata: Vec<(String, String)>,
    /// Where the tensors came from, for error messages.
    origin: String,
}

impl Default for SafeTensors {
    fn default() -> Self {
        SafeTensors { tensors: Vec::new(), metadata: Vec::new(), origin: "<in memory>".into() }
    }
}

/// What the JSON header declares.
struct Header {
    metadata: Vec<(String, String)>,
    entries: Vec<Entry>,
}

/// A tensor's header entry before its data is copied.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

impl SafeTensors {
    /// An empty collection, to be filled with the `push_*` builders.
    pub fn new() -> SafeTensors {
        SafeTensors::default()
    }

    /// Parses and validates a whole file; `origin` names it in error messages.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<SafeTensors> {
        let fail = |msg: String| Error::format(origin, msg);
        let (header, data) = split_header(bytes).map_err(fail)?;
        let header = parse_json(header, &format!("{origin} (header)"))?;
        let Header { metadata, mut entries } = parse_header(header).map_err(fail)?;
        check_layout(&mut entries, data.len()).map_err(fail)?;
        let tensors = entries
            .into_iter()
            .map(|e| {
                let data = data[e.begin..e.end].to_vec();
                (e.name, TensorView { dtype: e.dtype, shape: e.shape, data })
            })
            .collect();
        Ok(SafeTensors { tensors, metadata, origin: origin.to_string() })
    }

    /// Reads and validates a file.
    pub fn read(path: &Path) -> Result<SafeTensors> {
        let bytes = super::read_bytes(path)?;
        SafeTensors::parse(&bytes, &path.display().to_string())
    }

    /// The file's bytes, laid out exactly as the reference library writes them.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.check()?;
        let mut order: Vec<&(String, TensorView)> = self.tensors.iter().collect();
        order.sort_by(|(l_name, l), (r_name, r)| r.dtype.cmp(&l.dtype).then(l_name.cmp(r_name)));
        let mut members = Vec::with_capacity(order.len() + 1);
        if !self.metadata.is_empty() {
            let map = self.metadata.iter().map(|(k, v)| (k.clone(), Json::from(v.as_str())));
            members.push((METADATA_KEY.to_string(), Json::Object(map.collect())));
        }
        let mut offset = 0;
        for (name, view) in &order {
            let end = offset + view.data.len();
            let entry = Json::Object(vec![
                ("dtype".into(), Json::from(view.dtype.name())),
                ("shape".into(), Json::Array(view.shape.iter().map(|&d| Json::from(d)).collect())),
                ("data_offsets".into(), Json::Array(vec![Json::from(offset), Json::from(end)])),
            ]);
            members.push((name.clone(), entry));
            offset = end;
        }
        let mut header = Json::Object(members).to_compact()?.into_bytes();
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for (_, view) in order {
            out.extend_from_slice(&view.data);
        }
        Ok(out)
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        super::write_atomic(path, &self.to_bytes()?)
    }

    /// Everything the writer relies on: unique, non-reserved names; sizes that match; unique
    /// metadata keys.
    fn check(&self) -> Result<()> {
        for (name, view) in &self.tensors {
            view.check().map_err(|e| Error::invalid(format!("tensor '{name}': {e}")))?;
        }
        let names = self.tensors.iter().map(|(n, _)| n.as_str());
        if let Some(name) = first_duplicate(names.chain([METADATA_KEY])) {
            return Err(Error::invalid(format!("tensor name '{name}' is used twice or reserved")));
        }
        if let Some(key) = first_duplicate(self.metadata.iter().map(|(k, _)| k.as_str())) {
            return Err(Error::invalid(format!("metadata key '{key}' is used twice")));
        }
        Ok(())
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&TensorView> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The metadata value under `key`, if present.
    pub fn get_metadata(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &str) -> Result<&TensorView> {
        self.get(name)
            .ok_or_else(|| Error::format(&self.origin, format!("tensor '{name}' is missing")))
    }

    fn wrong_dtype(&self, name: &str, view: &TensorView, expected: &str) -> Error {
        let msg = format!("tensor '{name}' has dtype {}, expected {expected}", view.dtype.name());
        Error::format(&self.origin, msg)
    }

    /// Shape and values of a float tensor stored as F32, F16 or BF16.
    pub fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let view = self.require(name)?;
        let values =
            view.to_f32().ok_or_else(|| self.wrong_dtype(name, view, "F32, F16 or BF16"))?;
        Ok((view.shape.clone(), values))
    }

    /// Shape and values of a float tensor stored as F64, F32, F16 or BF16.
    pub fn get_f64(&self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let view = self.require(name)?;
        let values = view.to_f64().ok_or_else(|| self.wrong_dtype(name, view, "a float dtype"))?;
        Ok((view.shape.clone(), values))
    }

    /// Shape and values of an integer tensor stored as I64 or I32 (e.g. token ids).
    pub fn get_i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let view = self.require(name)?;
        let values = view.to_i64().ok_or_else(|| self.wrong_dtype(name, view, "I64 or I32"))?;
        Ok((view.shape.clone(), values))
    }

    /// Shape and bytes of a U8 tensor.
    pub fn get_u8(&self, name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
        let view = self.require(name)?;
        if view.dtype != Dtype::U8 {
            return Err(self.wrong_dtype(name, view, "U8"));
        }
        Ok((view.shape.clone(), view.data.clone()))
    }

    /// Appends a tensor; its name must be new and not `__metadata__`.
    pub fn push(&mut self, name: &str, view: TensorView) -> Result<()> {
        if name == METADATA_KEY || self.get(name).is_some() {
            return Err(Error::invalid(format!("tensor name '{name}' is used twice or reserved")));
        }
        view.check()?;
        self.tensors.push((name.to_string(), view));
        Ok(())
    }

    pub fn push_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<()> {
        let data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(name, TensorView::new(Dtype::F32, shape.to_vec(), data)?)
    }

    pub fn push_f64(&mut self, name: &str, shape: &[usize], values: &[f64]) -> Result<()> {
        let data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(name, TensorView::new(Dtype::F64, shape.to_vec(), data)?)
    }

    pub fn push_i32(&mut self, name: &str, shape: &[usize], values: &[i32]) -> Result<()> {
        let data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(name, TensorView::new(Dtype::I32, shape.to_vec(), data)?)
    }

    pub fn push_i64(&mut self, name: &str, shape: &[usize], values: &[i64]) -> Result<()> {
        let data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(name, TensorView::new(Dtype::I64, shape.to_vec(), data)?)
    }

    pub fn push_u8(&mut self, name: &str, shape: &[usize], values: &[u8]) -> Result<()> {
        self.push(name, TensorView::new(Dtype::U8, shape.to_vec(), values.to_vec())?)
    }
}

/// Splits a file into its header bytes and its data section, checking the header length.
fn split_header(bytes: &[u8]) -> Checked<(&[u8], &[u8])> {
    let Some(length_bytes) = bytes.first_chunk::<8>() else {
        let len = bytes.len();
        return Err(format!("file of {len} bytes is too short for the 8-byte header length"));
    };
    let n = u64::from_le_bytes(*length_bytes);
    if n > MAX_HEADER_SIZE as u64 {
        return Err(format!("header length {n} exceeds the {MAX_HEADER_SIZE}-byte limit"));
    }
    // Cannot overflow: n ≤ 100 000 000.
    let data_start = 8 + n as usize;
    if data_start > bytes.len() {
        let len = bytes.len();
        return Err(format!("header length {n} runs past the end of the file ({len} bytes)"));
    }
    Ok((&bytes[8..data_start], &bytes[data_start..]))
}

/// The metadata and the tensor entries of a parsed header.
fn parse_header(header: Json) -> Checked<Header> {
    let Json::Object(members) = header else {
        return Err("the header is not a JSON object".into());
    };
    let mut metadata = Vec::new();
    let mut entries = Vec::new();
    for (key, value) in members {
        if key == METADATA_KEY {
            metadata = parse_metadata(value)?;
        } else {
            entries.push(parse_entry(key, value)?);
        }
    }
    Ok(Header { metadata, entries })
}

/// The first string that occurs twice, found by sorting (O(n log n)).
fn first_duplicate<'a>(items: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut sorted: Vec<&str> = items.collect();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// `__metadata__` must be an object of strings.
fn parse_metadata(value: Json) -> Checked<Vec<(String, String)>> {
    let Json::Object(members) = value else {
        return Err(format!("'{METADATA_KEY}' is not an object"));
    };
    members
        .into_iter()
        .map(|(key, value)| match value {
            Json::String(s) => Ok((key, s)),
            _ => Err(format!("'{METADATA_KEY}' value of '{key}' is not a string")),
        })
        .collect()
}

/// `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}`, nothing more or less.
fn parse_entry(name: String, value: Json) -> Checked<Entry> {
    let Json::Object(fields) = value else {
        return Err(format!("tensor '{name}': entry is not an object"));
    };
    let (mut dtype, mut shape, mut offsets) = (None, None, None);
    for (field, value) in &fields {
        match field.as_str() {
            "dtype" => dtype = Some(parse_dtype(&name, value)?),
            "shape" => shape = Some(parse_dims(&name, "shape", value)?),
            "data_offsets" => offsets = Some(parse_dims(&name, "data_offsets", value)?),
            _ => return Err(format!("tensor '{name}': unexpected field '{field}'")),
        }
    }
    let (Some(dtype), Some(shape), Some(offsets)) = (dtype, shape, offsets) else {
        return Err(format!("tensor '{name}': needs the fields dtype, shape and data_offsets"));
    };
    let [begin, end] = offsets[..] else {
        return Err(format!("tensor '{name}': data_offsets must be [begin, end]"));
    };
    Ok(Entry { name, dtype, shape, begin, end })
}

fn parse_dtype(name: &str, value: &Json) -> Checked<Dtype> {
    let Some(text) = value.as_str() else {
        return Err(format!("tensor '{name}': dtype is not a string"));
    };
    Dtype::from_name(text).ok_or_else(|| {
        if UNSUPPORTED_DTYPES.contains(&text) {
            format!("tensor '{name}': dtype {text} is not supported by igpt")
        } else {
            format!("tensor '{name}': unknown dtype {text:?}")
        }
    })
}

/// An array of non-negative integers (each at most 2^53 − 1).
fn parse_dims(name: &str, field: &str, value: &Json) -> Checked<Vec<usize>> {
    let bad = || format!("tensor '{name}': {field} must be an array of non-negative integers");
    let items = value.as_array().ok_or_else(bad)?;
    items.iter().map(|d| d.as_usize().ok_or_else(bad)).collect()
}

/// Sorts the entries by offsets and checks that they tile `data_len` bytes exactly.
fn check_layout(entries: &mut [Entry], data_len: usize) -> Checked<()> {
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut cursor = 0;
    let mut previous: Option<&str> = None;
    for e in entries.iter() {
        let (name, begin, end) = (&e.name, e.begin, e.end);
        let at = format!("tensor '{name}': data_offsets [{begin}, {end}]");
        if end < begin {
            return Err(format!("{at} end before they begin"));
        }
        if end > data_len {
            return Err(format!("{at} lie outside the data section of {data_len} bytes"));
        }
        if begin != cursor {
            let after =
                previous.map_or("the start of the data".into(), |p| format!("tensor '{p}'"));
            let problem = if begin < cursor { "overlap" } else { "leave a gap after" };
            return Err(format!("{at} {problem} {after}, which ends at {cursor}"));
        }
        let size = byte_len(e.dtype, &e.shape)
            .ok_or_else(|| format!("tensor '{name}': shape {:?} overflows", e.shape))?;
        if end - begin != size {
            let (dtype, shape) = (e.dtype.name(), &e.shape);
            return Err(format!(
                "{at} span {} bytes, but {dtype} {shape:?} needs {size}",
                end - begin
            ));
        }
        cursor = end;
        previous = Some(name);
    }
    if cursor != data_len {
        return Err(format!(
            "the data section has {data_len} bytes but the tensors cover only {cursor}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with the given header text (unpadded) and data.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn parse_err(bytes: &[u8]) -> String {
        SafeTensors::parse(bytes, "m.safetensors").unwrap_err().to_string()
    }

    #[test]
    fn reference_library_test_vector() {
        // `test_serialization` in the reference library: one F32 tensor "attn.0" of shape
        // [1, 2, 3] holding 0..6.
        let mut st = SafeTensors::new();
        st.push_f32("attn.0", &[1, 2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let header = r#"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#;
        let data: Vec<u8> = (0..6).flat_map(|x| (x as f32).to_le_bytes()).collect();
        assert_eq!(header.len(), 64);
        assert_eq!(st.to_bytes().unwrap(), file(header, &data));
        // Empty with metadata: `{"__metadata__":{"framework":"pt"}}` padded to 40 bytes.
        let mut empty = SafeTensors::new();
        empty.metadata.push(("framework".into(), "pt".into()));
        let expected = file(&format!("{:<40}", r#"{"__metadata__":{"framework":"pt"}}"#), &[]);
        assert_eq!(empty.to_bytes().unwrap(), expected);
        assert_eq!(SafeTensors::new().to_bytes().unwrap(), file("{}      ", &[]));
    }

    #[test]
    fn writer_sorts_by_dtype_rank_then_name_and_aligns() {
        let mut st = SafeTensors::new();
        st.push_u8("a", &[3], &[1, 2, 3]).unwrap();
        st.push_f32("b", &[1], &[1.0]).unwrap();
        st.push_f64("z", &[1], &[2.0]).unwrap();
        st.push_i64("y", &[1], &[3]).unwrap();
        st.push_f32("a32", &[1], &[4.0]).unwrap();
        let bytes = st.to_bytes().unwrap();
        let back = SafeTensors::parse(&bytes, "x").unwrap();
        let names: Vec<&str> = back.tensors.iter().map(|(n, _)| n.as_str()).collect();
        // I64 ranks above F64 in the reference library's enum, regardless of names.
        assert_eq!(names, ["y", "z", "a32", "b", "a"]);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        assert_eq!(back.get_f64("z").unwrap(), (vec![1], vec![2.0]));
        assert_eq!(back.get_i64("y").unwrap().1, [3]);
    }

    #[test]
    fn reads_half_precision_and_bfloat16_exactly() {
        let halves: [u16; 7] = [0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0x8000];
        let expected = [1.0, -2.0, 5.960_464_5e-8, 6.097_555e-5, 65504.0, f32::INFINITY, -0.0];
        let data: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F16, vec![7], data).unwrap();
        let got = view.to_f32().unwrap();
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g.to_bits(), e.to_bits(), "{g} vs {e}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc0a0), -5.0);
    }

    #[test]
    fn typed_getters_name_file_and_tensor() {
        let mut st = SafeTensors::new();
        st.push_i32("ids", &[2], &[5, 7]).unwrap();
        st.push_u8("mask", &[1], &[1]).unwrap();
        let st = SafeTensors::parse(&st.to_bytes().unwrap(), "g.safetensors").unwrap();
        assert_eq!(st.get_i64("ids").unwrap(), (vec![2], vec![5, 7]));
        assert_eq!(st.get_u8("mask").unwrap().1, [1]);
        let err = st.get_f32("ids").unwrap_err().to_string();
        assert_eq!(err, "g.safetensors: tensor 'ids' has dtype I32, expected F32, F16 or BF16");
        let err = st.get_f32("logits").unwrap_err().to_string();
        assert_eq!(err, "g.safetensors: tensor 'logits' is missing");
        assert!(st.get_u8("ids").is_err());
    }

    #[test]
    fn builders_reject_bad_tensors() {
        let mut st = SafeTensors::new();
        assert!(st.push_f32("x", &[2, 2], &[1.0]).is_err());
        st.push_f32("x", &[1], &[1.0]).unwrap();
        assert!(st.push_f32("x", &[1], &[1.0]).is_err());
        assert!(st.push_f32(METADATA_KEY, &[1], &[1.0]).is_err());
        st.tensors.push(("x".into(), st.tensors[0].1.clone()));
        assert!(st.to_bytes().unwrap_err().to_string().contains("'x' is used twice"));
        let mut st = SafeTensors::new();
        st.metadata = vec![("k".into(), "1".into()), ("k".into(), "2".into())];
        assert!(st.to_bytes().is_err());
        let huge = TensorView { dtype: Dtype::U8, shape: vec![1 << 60, 0], data: vec![] };
        assert!(huge.check().unwrap_err().to_string().contains("exceeds 2^53"));
    }

    #[test]
    fn malformed_files_give_clear_errors() {
        let entry = |name: &str, dtype: &str, shape: &str, offsets: &str| {
            format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}"#)
        };
        let one = |e: String| format!("{{{e}}}");
        let ok_a = entry("a", "F32", "[2]", "[0,8]");
        let ok_b = entry("b", "U8", "[2]", "[8,10]");
        let data = [0u8; 10];
        assert!(SafeTensors::parse(&file(&format!("{{{ok_a},{ok_b}}}"), &data), "m").is_ok());
        let mut lying_length = file("{}", &[]);
        lying_length[0] = 200;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 0, 0], "too short for the 8-byte header length"),
            (lying_length, "header length 200 runs past the end of the file (10 bytes)"),
            (u64::MAX.to_le_bytes().to_vec(), "exceeds the 100000000-byte limit"),
            (file("[]", &[]), "the header is not a JSON object"),
            (file("{\"a\":", &[]), "(header): invalid JSON at byte 5"),
            (file(&one(entry("a", "F32", "[2]", "[0,8]")), &data[..7]), "lie outside"),
            (file(&one(entry("a", "F32", "[2]", "[0,8]")), &data), "cover only 8"),
            (file(&one(entry("a", "F32", "[2]", "[2,10]")), &data), "leave a gap after the start"),
            (file(&one(entry("a", "F32", "[3]", "[0,10]")), &data), "span 10 bytes, but F32 [3]"),
            (file(&one(entry("a", "F32", "[2]", "[8,0]")), &data), "end before they begin"),
            (
                file(&format!("{{{ok_a},{}}}", entry("b", "U8", "[2]", "[6,8]")), &data[..8]),
                "tensor 'b': data_offsets [6, 8] overlap tensor 'a', which ends at 8",
            ),
            (file(&one(entry("a", "Q8", "[2]", "[0,2]")), &data[..2]), "unknown dtype \"Q8\""),
            (file(&one(entry("a", "F8_E4M3", "[2]", "[0,2]")), &data[..2]), "not supported"),
            (file(&one(entry("a", "F32", "[2.5]", "[0,8]")), &data), "non-negative integers"),
            (file(&one(entry("a", "F32", "[-1]", "[0,8]")), &data), "non-negative integers"),
            (file(&one(entry("a", "F32", "[2]", "[0]")), &data), "must be [begin, end]"),
            (file(&one(entry("a", "F32", "2", "[0,8]")), &data), "shape must be an array"),
            (file(&one(entry("a", "F32", "[4294967296,4294967296]", "[0,8]")), &data), "overflows"),
            (file(r#"{"a":{"dtype":"F32","shape":[0]}}"#, &[]), "needs the fields"),
            (
                file(r#"{"a":{"dtype":"U8","shape":[],"data_offsets":[0,1],"x":1}}"#, &data[..1]),
                "unexpected field 'x'",
            ),
            (file(r#"{"a":[]}"#, &[]), "tensor 'a': entry is not an object"),
            (file(&format!("{{{ok_a},{ok_a}}}"), &data[..8]), "duplicate key \"a\""),
            (file(r#"{"__metadata__":{"k":1}}"#, &[]), "value of 'k' is not a string"),
            (file(r#"{"__metadata__":[]}"#, &[]), "'__metadata__' is not an object"),
        ];
        for (bytes, expected) in cases {
            let msg = parse_err(&bytes);
            assert!(msg.starts_with("m.safetensors"), "{msg}");
            assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
        }
    }

    #[test]
    fn scalars_and_empty_tensors() {
        let mut st = SafeTensors::new();
        st.push_f32("loss", &[], &[2.5]).unwrap();
        st.push_f32("none", &[0, 4], &[]).unwrap();
        st.push_f32("also_none", &[0], &[]).unwrap();
        let back = SafeTensors::parse(&st.to_bytes().unwrap(), "s").unwrap();
        assert_eq!(back.get_f32("loss").unwrap(), (vec![], vec![2.5]));
        assert_eq!(back.get_f32("none").unwrap(), (vec![0, 4], vec![]));
        assert_eq!(back.to_bytes().unwrap(), st.to_bytes().unwrap());
    }
}
