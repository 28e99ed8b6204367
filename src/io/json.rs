//! A small, strict JSON reader and deterministic writer (RFC 8259).
//!
//! igpt reads and writes JSON in three places: HuggingFace `config.json`,
//! `preprocessor_config.json` (the palette's `clusters`), and the header of a safetensors file.
//! This module implements exactly RFC 8259 with these rules:
//!
//! * **Values.** [`Json`] holds `null`, booleans, numbers as `f64`, strings, arrays and objects.
//!   Objects keep their members in file order (`Vec<(String, Json)>`), so a file read and
//!   written again keeps its key order, and the writer's output is a pure function of the value.
//! * **Limits.** Input at most [`MAX_JSON_BYTES`]; arrays and objects nested at most
//!   [`MAX_DEPTH`] deep (the parser is recursive; the limit bounds its stack). Memory use is
//!   linear in the input size.
//! * **Strictness.** The input must be UTF-8 without a byte-order mark; whitespace is space, tab,
//!   CR, LF only; no trailing commas, comments, `NaN`/`Infinity`, leading zeros or leading `+`;
//!   control characters inside strings must be escaped; `\u` escapes of UTF-16 surrogates must
//!   come as a high/low pair; a number whose magnitude overflows `f64` is an error (never a
//!   silent infinity); duplicate keys in one object are an error. Every error names the origin
//!   and the byte offset.
//! * **Numbers out.** An integral value with `|x| ≤ 2^53 − 1` is written as an integer (`3`, not
//!   `3.0`); anything else in Rust's shortest round-trip form (`0.1`, `1e-5`, `1e300`). Parsing
//!   that text gives back the identical `f64`, and so the identical `f32` for values that came
//!   from one. NaN and infinities cannot be written (an error, not `null`).
//! * **Strings out.** `"` and `\` are escaped, control characters use `\b \f \n \r \t` or
//!   `\u00xx` (lowercase hex), and everything else — including non-ASCII — is written as raw
//!   UTF-8. This is what `serde_json` does, which the safetensors reference library uses for its
//!   header, so igpt's safetensors headers match it byte for byte.

use crate::error::{Error, Result};
use std::path::Path;

/// Deepest nesting of arrays and objects the parser accepts.
pub const MAX_DEPTH: usize = 64;

/// Largest input the parser accepts (128 MiB; a safetensors header may be up to 100 MB).
pub const MAX_JSON_BYTES: usize = 128 << 20;

/// Largest integer that `f64` represents together with all its neighbours: 2^53 − 1.
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A JSON value. Objects keep their members in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The value under `key` if `self` is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.as_object()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(x) => Some(*x),
            _ => None,
        }
    }

    /// The number as a `usize` if it is integral, non-negative and at most 2^53 − 1 (beyond
    /// which `f64` can no longer tell neighbouring integers apart).
    pub fn as_usize(&self) -> Option<usize> {
        let x = self.as_f64()?;
        let exact = x.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(&x);
        // The cast is exact when `exact` holds: x is a non-negative integer below 2^53.
        exact.then_some(x as usize)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// Compact text: no whitespace at all (`{"a":[1,2]}`).
    pub fn to_compact(&self) -> Result<String> {
        let mut out = String::new();
        write_value(self, &mut out, None)?;
        Ok(out)
    }

    /// Pretty text: two-space indentation, `": "` after keys, one member or element per line,
    /// empty containers as `[]`/`{}`; no trailing newline.
    pub fn to_pretty(&self) -> Result<String> {
        let mut out = String::new();
        write_value(self, &mut out, Some(0))?;
        Ok(out)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Self {
        Json::Bool(b)
    }
}

impl From<f64> for Json {
    fn from(x: f64) -> Self {
        Json::Number(x)
    }
}

impl From<f32> for Json {
    fn from(x: f32) -> Self {
        Json::Number(f64::from(x))
    }
}

impl From<usize> for Json {
    /// Exact for `n ≤ 2^53 − 1`; larger values round to the nearest `f64`.
    fn from(n: usize) -> Self {
        Json::Number(n as f64)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Self {
        Json::String(s.to_string())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Self {
        Json::String(s)
    }
}

/// Parses one JSON value (surrounded by optional whitespace) from `bytes`; `origin` names the
/// source in error messages.
pub fn parse_json(bytes: &[u8], origin: &str) -> Result<Json> {
    if bytes.len() > MAX_JSON_BYTES {
        let msg =
            format!("JSON text of {} bytes exceeds the {MAX_JSON_BYTES}-byte limit", bytes.len());
        return Err(Error::format(origin, msg));
    }
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(Error::format(
            origin,
            "invalid JSON at byte 0: byte-order mark is not allowed",
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::format(origin, format!("invalid JSON at byte {}: invalid UTF-8", e.valid_up_to()))
    })?;
    let mut parser = Parser { text, pos: 0, origin };
    parser.skip_whitespace();
    let value = parser.parse_value(0)?;
    parser.skip_whitespace();
    if parser.pos != text.len() {
        return Err(parser.error("unexpected data after the JSON value"));
    }
    Ok(value)
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> Result<Json> {
    let bytes = super::read_bytes(path)?;
    parse_json(&bytes, &path.display().to_string())
}

/// Writes `value` as pretty JSON plus a final newline, atomically.
pub fn write_json(path: &Path, value: &Json) -> Result<()> {
    let mut text = value.to_pretty()?;
    text.push('\n');
    super::write_atomic(path, text.as_bytes())
}

/// Recursive-descent parser over validated UTF-8; `pos` is a byte offset into `text`.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    origin: &'a str,
}

impl Parser<'_> {
    fn error(&self, msg: &str) -> Error {
        Error::format(self.origin, format!("invalid JSON at byte {}: {msg}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `byte` or fails with "expected {what}".
    fn expect(&mut self, byte: u8, what: &str) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {what}")))
        }
    }

    /// `depth` counts the arrays and objects that enclose this value.
    fn parse_value(&mut self, depth: usize) -> Result<Json> {
        match self.peek() {
            None => Err(self.error("unexpected end of input, expected a value")),
            Some(b'{') => self.parse_object(depth + 1),
            Some(b'[') => self.parse_array(depth + 1),
            Some(b'"') => Ok(Json::String(self.parse_string()?)),
            Some(b'-' | b'0'..=b'9') => self.parse_number(),
            Some(b't') => self.parse_literal("true", Json::Bool(true)),
            Some(b'f') => self.parse_literal("false", Json::Bool(false)),
            Some(b'n') => self.parse_literal("null", Json::Null),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn parse_literal(&mut self, word: &str, value: Json) -> Result<Json> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error(&format!("invalid literal, expected `{word}`")))
        }
    }

    fn check_depth(&self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn parse_array(&mut self, depth: usize) -> Result<Json> {
        self.check_depth(depth)?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.parse_value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]` in array")),
            }
        }
    }

    fn parse_object(&mut self, depth: usize) -> Result<Json> {
        self.check_depth(depth)?;
        let start = self.pos;
        self.pos += 1; // '{'
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key in object"));
            }
            let key = self.parse_string()?;
            self.skip_whitespace();
            self.expect(b':', "`:` after object key")?;
            self.skip_whitespace();
            let value = self.parse_value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("expected `,` or `}` in object")),
            }
        }
        self.check_unique_keys(&members, start)?;
        Ok(Json::Object(members))
    }

    /// Duplicate keys make a file ambiguous (different readers keep different copies), so they
    /// are rejected. Sorting the keys keeps this O(n log n) for large safetensors headers.
    fn check_unique_keys(&self, members: &[(String, Json)], start: usize) -> Result<()> {
        let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        match keys.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => Err(Error::format(
                self.origin,
                format!("invalid JSON: duplicate key {:?} in the object at byte {start}", w[0]),
            )),
            None => Ok(()),
        }
    }

    fn parse_string(&mut self) -> Result<String> {
        self.pos += 1; // opening '"'
        let mut out = String::new();
        loop {
            // Copy the run of ordinary characters up to the next quote, backslash or control.
            let run_end = self.text[self.pos..]
                .find(|c: char| c == '"' || c == '\\' || c < ' ')
                .map_or(self.text.len(), |i| self.pos + i);
            out.push_str(&self.text[self.pos..run_end]);
            self.pos = run_end;
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => out.push(self.parse_escape()?),
                Some(_) => return Err(self.error("unescaped control character in string")),
            }
        }
    }

    /// Parses one escape sequence starting at the backslash.
    fn parse_escape(&mut self) -> Result<char> {
        self.pos += 1; // '\'
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.parse_unicode_escape(),
            _ => return Err(self.error("invalid escape sequence")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// `\uXXXX`, where a UTF-16 high surrogate must be followed by `\uXXXX` with a low one.
    fn parse_unicode_escape(&mut self) -> Result<char> {
        let first = self.parse_hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.text[self.pos..].starts_with("\\u") {
                    return Err(self.error("high surrogate not followed by a low surrogate"));
                }
                self.pos += 1; // '\', parse_hex4 skips the 'u'
                let second = self.parse_hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("high surrogate not followed by a low surrogate"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("unpaired low surrogate")),
            _ => first,
        };
        // Cannot fail: surrogates were handled above and pairs stay below 0x110000.
        char::from_u32(code).ok_or_else(|| self.error("invalid code point"))
    }

    /// Parses `uXXXX` (the position is on the `u`) and returns the 16-bit value.
    fn parse_hex4(&mut self) -> Result<u32> {
        self.pos += 1; // 'u'
        let digits = self.text.as_bytes().get(self.pos..self.pos + 4);
        let value = digits.and_then(|d| {
            d.iter().try_fold(0u32, |acc, &b| Some(acc * 16 + (b as char).to_digit(16)?))
        });
        let value = value.ok_or_else(|| self.error("expected 4 hex digits after \\u"))?;
        self.pos += 4;
        Ok(value)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, converted with correct rounding.
    fn parse_number(&mut self) -> Result<Json> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error("leading zeros are not allowed in numbers"));
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits("expected a digit after the decimal point")?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.require_digits("expected a digit in the exponent")?;
        }
        let text = &self.text[start..self.pos];
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Json::Number(x)),
            _ => {
                self.pos = start;
                Err(self.error(&format!("number {text} is out of the range of f64")))
            }
        }
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self, msg: &str) -> Result<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error(msg));
        }
        self.skip_digits();
        Ok(())
    }
}

/// Appends `value`; `indent` is `None` for compact output or the current nesting level.
fn write_value(value: &Json, out: &mut String, indent: Option<usize>) -> Result<()> {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(x) => write_number(*x, out)?,
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                write_separator(out, i, indent);
                write_value(item, out, indent.map(|level| level + 1))?;
            }
            write_closing(out, items.is_empty(), indent, ']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                write_separator(out, i, indent);
                write_string(key, out);
                out.push_str(if indent.is_some() { ": " } else { ":" });
                write_value(item, out, indent.map(|level| level + 1))?;
            }
            write_closing(out, members.is_empty(), indent, '}');
        }
    }
    Ok(())
}

/// Before element `i` of a container at nesting `indent`: a comma after the first, and in
/// pretty mode a newline plus indentation one level deeper than the container.
fn write_separator(out: &mut String, i: usize, indent: Option<usize>) {
    if i > 0 {
        out.push(',');
    }
    if let Some(level) = indent {
        out.push('\n');
        push_indent(out, level + 1);
    }
}

fn write_closing(out: &mut String, empty: bool, indent: Option<usize>, bracket: char) {
    if let (Some(level), false) = (indent, empty) {
        out.push('\n');
        push_indent(out, level);
    }
    out.push(bracket);
}

fn push_indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

/// Integers (up to 2^53 − 1 in magnitude) without a fraction, everything else in Rust's
/// shortest round-trip notation (`{:?}`: `0.1`, `1e-5`, `-0.0`, `1e300`), both valid JSON.
fn write_number(x: f64, out: &mut String) -> Result<()> {
    if !x.is_finite() {
        return Err(Error::invalid(format!("cannot write the non-finite number {x} as JSON")));
    }
    let is_plain_integer = x.fract() == 0.0 && x.abs() <= MAX_SAFE_INTEGER;
    if is_plain_integer && !(x == 0.0 && x.is_sign_negative()) {
        // Exact: |x| < 2^53 fits in i64.
        out.push_str(&(x as i64).to_string());
    } else {
        out.push_str(&format!("{x:?}"));
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Json> {
        parse_json(text.as_bytes(), "test.json")
    }

    fn parse_err(text: &[u8]) -> String {
        parse_json(text, "test.json").unwrap_err().to_string()
    }

    #[test]
    fn parses_every_kind_of_value_and_keeps_key_order() {
        let v = parse(r#" {"z": [1, -2.5e3, true, false, null], "a": {"s": "x\u00e9"}} "#).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a"]);
        let z = v.get("z").unwrap().as_array().unwrap();
        assert_eq!(z[1].as_f64(), Some(-2500.0));
        assert_eq!(z[2].as_bool(), Some(true));
        assert!(z[4].is_null());
        assert_eq!(v.get("a").unwrap().get("s").unwrap().as_str(), Some("xé"));
    }

    #[test]
    fn escapes_and_surrogate_pairs() {
        let v = parse(r#""\"\\\/\b\f\n\r\t\u0041\ud83d\ude00""#).unwrap();
        assert_eq!(v.as_str(), Some("\"\\/\u{8}\u{c}\n\r\tA😀"));
    }

    #[test]
    fn as_usize_is_strict() {
        assert_eq!(Json::Number(3.0).as_usize(), Some(3));
        assert_eq!(Json::Number(3.5).as_usize(), None);
        assert_eq!(Json::Number(-1.0).as_usize(), None);
        assert_eq!(Json::Number(9007199254740992.0).as_usize(), None);
        assert_eq!(Json::Number(MAX_SAFE_INTEGER).as_usize(), Some(9007199254740991));
        assert_eq!(Json::String("3".into()).as_usize(), None);
    }

    #[test]
    fn malformed_inputs_give_errors_with_offsets() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "byte 0: unexpected end of input"),
            (b"[1,]", "byte 3: expected a value"),
            (b"[1 2]", "byte 3: expected `,` or `]`"),
            (b"{\"a\" 1}", "byte 5: expected `:`"),
            (b"{1:2}", "byte 1: expected a string key"),
            (b"01", "byte 1: leading zeros"),
            (b"1.", "byte 2: expected a digit after the decimal point"),
            (b"1e", "byte 2: expected a digit in the exponent"),
            (b"-", "byte 1: expected a digit"),
            (b"+1", "byte 0: expected a value"),
            (b"1e999", "out of the range of f64"),
            (b"NaN", "byte 0: expected a value"),
            (b"tru", "byte 0: invalid literal"),
            (b"\"abc", "byte 4: unterminated string"),
            (b"\"a\nb\"", "byte 2: unescaped control character"),
            (b"\"\\x\"", "byte 2: invalid escape"),
            (b"\"\\u12G4\"", "expected 4 hex digits"),
            (b"\"\\ud800\"", "high surrogate not followed by a low surrogate"),
            (b"\"\\ud800\\u0041\"", "high surrogate not followed by a low surrogate"),
            (b"\"\\udc00\"", "unpaired low surrogate"),
            (b"\"\xff\"", "byte 1: invalid UTF-8"),
            (b"\xEF\xBB\xBF{}", "byte-order mark"),
            (b"{} x", "byte 3: unexpected data after"),
            (b"{\"a\":1,\"a\":2}", "duplicate key \"a\""),
        ];
        for (text, expected) in cases {
            let msg = parse_err(text);
            assert!(msg.starts_with("test.json: "), "{msg}");
            assert!(msg.contains(expected), "{:?}: got {msg:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn nesting_is_limited() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse_err(deep.as_bytes()).contains("nesting deeper than 64"));
        let very_deep = "{\"a\":".repeat(100_000);
        assert!(parse_err(very_deep.as_bytes()).contains("nesting deeper"));
    }

    #[test]
    fn numbers_are_written_to_round_trip() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0.0"),
            (3.0, "3"),
            (-17.0, "-17"),
            (0.1, "0.1"),
            (1e-5, "1e-5"),
            (1.5e300, "1.5e300"),
            (9007199254740991.0, "9007199254740991"),
            (9007199254740992.0, "9007199254740992.0"),
            (f64::from(0.1f32), "0.10000000149011612"),
        ];
        for (x, text) in cases {
            let written = Json::Number(x).to_compact().unwrap();
            assert_eq!(written, text);
            let back = parse(&written).unwrap().as_f64().unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{text}");
        }
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(Json::Number(x).to_compact().is_err());
        }
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let s = Json::from("a\"b\\c/\u{1}\u{1f}\u{7f}é\n");
        assert_eq!(s.to_compact().unwrap(), "\"a\\\"b\\\\c/\\u0001\\u001f\u{7f}é\\n\"");
    }

    #[test]
    fn pretty_and_compact_layout() {
        let v = parse(r#"{"a":[1,{"b":null}],"c":{},"d":[]}"#).unwrap();
        assert_eq!(v.to_compact().unwrap(), r#"{"a":[1,{"b":null}],"c":{},"d":[]}"#);
        let pretty = "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {},\n  \"d\": []\n}";
        assert_eq!(v.to_pretty().unwrap(), pretty);
        assert_eq!(parse(pretty).unwrap(), v);
    }
}
