//! The JSON header of a safetensors file, parsed strictly and without recursion: an object whose keys
//! are tensor names, each `{"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}`, and an optional
//! `__metadata__` object of strings.
//!
//! The `safetensors` crate keeps only the last of two entries with the same name, and adds offsets read
//! from the file without checking for overflow; this parser reports both, and [`Header::validate`]
//! checks every tensor's offsets and size with checked arithmetic against the data section's real
//! length before any tensor is decoded.

use std::collections::BTreeMap;

/// The element types a checkpoint may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dtype {
    /// Little-endian IEEE 754 single precision.
    F32,
    /// Little-endian IEEE 754 double precision.
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub(super) fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// One tensor's entry in the header.
#[derive(Debug)]
pub(super) struct Entry {
    /// The tensor's name.
    pub name: String,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Where its bytes start and end in the data section (which follows the header).
    pub offsets: (usize, usize),
}

/// A parsed header.
#[derive(Debug)]
pub(super) struct Header {
    /// The tensors, in the file's order.
    pub tensors: Vec<Entry>,
    /// The `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
}

/// Parses `text`, the header (which may end with spaces, as writers pad it to 8 bytes).
pub(super) fn parse(text: &[u8]) -> Result<Header, String> {
    let mut p = Parser { text, pos: 0 };
    let mut header = Header { tensors: Vec::new(), metadata: BTreeMap::new() };
    let mut names = std::collections::BTreeSet::new();
    let mut seen_metadata = false;
    if text.first() != Some(&b'{') {
        return Err(p.error("the header does not start with '{'"));
    }
    p.object(|p, key| {
        if key == "__metadata__" {
            if std::mem::replace(&mut seen_metadata, true) {
                return Err("__metadata__ appears twice".into());
            }
            p.object(|p, key| {
                let value = p.string()?;
                match header.metadata.insert(key.clone(), value) {
                    Some(_) => Err(format!("metadata key {key:?} appears twice")),
                    None => Ok(()),
                }
            })
        } else {
            if !names.insert(key.clone()) {
                return Err(format!("tensor name {key:?} appears twice"));
            }
            let entry = p.tensor(&key)?;
            header.tensors.push(entry);
            Ok(())
        }
    })?;
    p.whitespace();
    if p.pos != text.len() {
        return Err(p.error("unexpected bytes after the header's closing brace"));
    }
    Ok(header)
}

impl Header {
    /// Checks that the tensors tile the data section of `data_len` bytes exactly, in some order, without
    /// gaps or overlaps, and that each one's offsets span the bytes its shape and dtype need (computed
    /// with checked arithmetic). Sorts the tensors by offset.
    pub(super) fn validate(&mut self, data_len: usize) -> Result<(), String> {
        self.tensors.sort_by_key(|t| t.offsets);
        let mut covered = 0usize;
        for t in &self.tensors {
            let (start, end) = t.offsets;
            if end < start {
                return Err(format!("tensor {}: data_offsets [{start}, {end}] end before they start", t.name));
            }
            if start < covered {
                return Err(format!("tensor {}: data_offsets [{start}, {end}] overlap another tensor's", t.name));
            }
            if start > covered {
                return Err(format!(
                    "tensor {}: data_offsets [{start}, {end}] leave bytes {covered}..{start} unused",
                    t.name
                ));
            }
            let needed = t
                .shape
                .iter()
                .try_fold(t.dtype.size(), |n, &d| n.checked_mul(d))
                .ok_or_else(|| format!("tensor {}: shape {:?} overflows", t.name, t.shape))?;
            if end - start != needed {
                return Err(format!(
                    "tensor {}: shape {:?} of {:?} needs {needed} bytes but its data_offsets [{start}, {end}] \
                     span {}",
                    t.name,
                    t.shape,
                    t.dtype,
                    end - start
                ));
            }
            if end > data_len {
                return Err(format!(
                    "tensor {}: data_offsets [{start}, {end}] go past the end of the data ({data_len} bytes; \
                     truncated?)",
                    t.name
                ));
            }
            covered = end;
        }
        if covered != data_len {
            return Err(format!("the tensors cover {covered} bytes of data but the file holds {data_len}"));
        }
        Ok(())
    }
}

/// A cursor over the header's bytes.
struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("header byte {}: {what}", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then consumes `byte` or fails naming `what` was expected.
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), String> {
        self.whitespace();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {what}")))
        }
    }

    /// An object, calling `member` with the parser positioned at each key's value. Keys are strings.
    fn object(&mut self, mut member: impl FnMut(&mut Self, String) -> Result<(), String>) -> Result<(), String> {
        self.expect(b'{', "'{'")?;
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':', "':'")?;
            member(self, key)?;
            self.whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// A JSON string, escapes decoded.
    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"', "a string")?;
        let mut out = Vec::new();
        loop {
            let Some(byte) = self.peek() else { return Err(self.error("unterminated string")) };
            self.pos += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(escape) = self.peek() else { return Err(self.error("unterminated string")) };
                    self.pos += 1;
                    let decoded = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("invalid escape in a string")),
                    };
                    out.extend_from_slice(decoded.encode_utf8(&mut [0; 4]).as_bytes());
                }
                0..=0x1f => return Err(self.error("control character in a string")),
                _ => out.push(byte),
            }
        }
        // The header was checked to be UTF-8, and strings only split it at ASCII bytes.
        String::from_utf8(out).map_err(|_| self.error("a string is not UTF-8"))
    }

    /// The character of a `\uXXXX` escape (the `\u` consumed), with a surrogate pair's second half.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if self.text.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return Err(self.error("unpaired surrogate in a \\u escape"));
            }
            self.pos += 2;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.error("unpaired surrogate in a \\u escape"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error("unpaired surrogate in a \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.text.get(self.pos..self.pos + 4).ok_or_else(|| self.error("short \\u escape"))?;
        let mut value = 0;
        for &d in digits {
            let digit = char::from(d).to_digit(16).ok_or_else(|| self.error("invalid \\u escape"))?;
            value = value * 16 + digit;
        }
        self.pos += 4;
        Ok(value)
    }

    /// A non-negative integer that fits in `usize`.
    fn integer(&mut self) -> Result<usize, String> {
        self.whitespace();
        let start = self.pos;
        let mut value: usize = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(usize::from(d - b'0')))
                .ok_or_else(|| self.error("integer too large"))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        if digits == 0 || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.error("expected a non-negative integer"));
        }
        if digits > 1 && self.text.get(start) == Some(&b'0') {
            return Err(self.error("integer with a leading zero"));
        }
        Ok(value)
    }

    /// An array of non-negative integers.
    fn integers(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'[', "'['")?;
        let mut out = Vec::new();
        self.whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.push(self.integer()?);
            self.whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// A tensor's entry: exactly the fields `dtype`, `shape` and `data_offsets`, in any order.
    fn tensor(&mut self, name: &str) -> Result<Entry, String> {
        let (mut dtype, mut shape, mut offsets) = (None, None, None);
        self.object(|p, key| {
            let duplicate = match key.as_str() {
                "dtype" => {
                    let value = p.string()?;
                    let parsed = match value.as_str() {
                        "F32" => Dtype::F32,
                        "F64" => Dtype::F64,
                        _ => return Err(format!("tensor {name} has dtype {value:?}; checkpoints hold F32 or F64")),
                    };
                    dtype.replace(parsed).is_some()
                }
                "shape" => {
                    let value = p.integers()?;
                    shape.replace(value).is_some()
                }
                "data_offsets" => {
                    let value = p.integers()?;
                    let [start, end] = value[..] else {
                        return Err(format!("tensor {name}: data_offsets {value:?} is not [start, end]"));
                    };
                    offsets.replace((start, end)).is_some()
                }
                _ => return Err(format!("tensor {name}: unknown field {key:?}")),
            };
            if duplicate {
                return Err(format!("tensor {name}: field {key} appears twice"));
            }
            Ok(())
        })?;
        let missing = |field: &str| format!("tensor {name}: no {field}");
        Ok(Entry {
            name: name.to_owned(),
            dtype: dtype.ok_or_else(|| missing("dtype"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
            offsets: offsets.ok_or_else(|| missing("data_offsets"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_writer_writes_and_decodes_escapes() {
        let text = br#"{"__metadata__":{"format":"dlfs-checkpoint/1","note":"caf\u00e9 \ud83d\ude00 \"q\""},"b":{"dtype":"F64","shape":[],"data_offsets":[24,32]} , "a" : {"shape":[2,3],"data_offsets":[0,24],"dtype":"F32"}}   "#;
        let mut h = parse(text).unwrap();
        assert_eq!(h.metadata["note"], "café 😀 \"q\"");
        h.validate(32).unwrap();
        let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!((h.tensors[0].dtype, &h.tensors[0].shape[..]), (Dtype::F32, &[2, 3][..]));
        assert_eq!(h.tensors[1].offsets, (24, 32));
    }

    #[test]
    fn rejects_malformed_headers() {
        let entry =
            |name: &str, offsets: &str| format!(r#""{name}":{{"dtype":"F32","shape":[1],"data_offsets":{offsets}}}"#);
        let cases = [
            (format!("{{{},{}}}", entry("a", "[0,4]"), entry("a", "[4,8]")), "tensor name \"a\" appears twice"),
            (r#"{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#.into(), "dtype \"BF16\""),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#.into(), "unknown field"),
            (r#"{"a":{"dtype":"F32","shape":[1]}}"#.into(), "no data_offsets"),
            (r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#.into(), "non-negative integer"),
            (r#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#.into(), "non-negative integer"),
            (r#"{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}"#.into(), "too large"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#.into(), "not [start, end]"),
            (r#"{"__metadata__":{"k":"v","k":"w"}}"#.into(), "metadata key \"k\" appears twice"),
            (r#"{"__metadata__":{"k":1}}"#.into(), "expected a string"),
            (r#"{"a":"#.into(), "expected '{'"),
            ("{} x".into(), "after the header's closing brace"),
            (" {}".into(), "does not start with '{'"),
            (r#"{"\ud800":1}"#.into(), "unpaired surrogate"),
        ];
        for (text, expected) in cases {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn validation_checks_offsets_against_shapes_and_the_data() {
        let header = |entries: &str| parse(format!("{{{entries}}}").as_bytes()).unwrap();
        let t = |name: &str, shape: &str, offsets: &str| {
            format!(r#""{name}":{{"dtype":"F64","shape":{shape},"data_offsets":{offsets}}}"#)
        };
        let cases = [
            (t("a", "[1]", "[0,8]") + "," + &t("b", "[1]", "[4,12]"), 12, "overlap"),
            (t("a", "[1]", "[8,16]"), 16, "leave bytes 0..8 unused"),
            (t("a", "[2]", "[0,8]"), 8, "needs 16 bytes"),
            (t("a", "[1]", "[8,0]"), 8, "end before they start"),
            (t("a", "[4294967296,4294967296]", "[0,8]"), 8, "overflows"),
            (t("a", "[2305843009213693951]", "[0,18446744073709551608]"), 8, "go past the end"),
            (t("a", "[1]", "[0,8]"), 16, "cover 8 bytes of data but the file holds 16"),
        ];
        for (entries, data_len, expected) in cases {
            let err = header(&entries).validate(data_len).unwrap_err();
            assert!(err.contains(expected), "{entries}: {err}");
        }
    }
}
