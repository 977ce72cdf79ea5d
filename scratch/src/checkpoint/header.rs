//! The JSON header of a safetensors file: an object whose keys are tensor names, each
//! `{"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}`, and an optional `__metadata__` object of
//! strings.
//!
//! The entries are decoded into the `safetensors` crate's [`TensorInfo`] and checked by its
//! [`Metadata::new`]: the tensors, in offset order, tile the data from byte 0 without gaps or overlaps,
//! and each one's offsets span exactly the bytes of its shape and dtype, computed with checked
//! arithmetic. This module adds what the crate's own reader leaves out:
//!
//! * a tensor name or metadata key given twice is an error (the format forbids it, but the crate
//!   deserialises the header into maps that keep the last);
//! * the end of the last tensor is compared with the data's real length without adding the header's
//!   length to it (the crate's sum can overflow: a debug build panics on a header whose offsets approach
//!   2⁶⁴);
//! * each entry is decoded straight from the header's text, rather than through the crate's buffered
//!   (`flatten`) deserialisation, which holds some 30 bytes of memory per byte of header.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::SafeTensorError;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A parsed and validated header.
#[derive(Debug)]
pub(super) struct Header {
    /// The tensors, in the order of their offsets.
    pub tensors: Vec<(String, TensorInfo)>,
    /// The `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
}

/// A JSON object's entries in the text's order, a key given twice included.
struct Entries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// The first key of `entries` that an earlier entry already has.
fn repeated<V>(entries: &[(String, V)]) -> Option<&str> {
    let mut seen = BTreeSet::new();
    entries.iter().map(|(key, _)| key.as_str()).find(|key| !seen.insert(*key))
}

/// Parses `text`, the header, and validates it against `data_len`, the length of the data that follows.
pub(super) fn parse(text: &str, data_len: usize) -> Result<Header, String> {
    let Entries(entries) = serde_json::from_str::<Entries<&RawValue>>(text).map_err(|e| e.to_string())?;
    if let Some(name) = repeated(&entries) {
        let what = if name == "__metadata__" { "" } else { "tensor name " };
        return Err(format!("{what}{name:?} appears twice"));
    }
    let mut header = Header { tensors: Vec::new(), metadata: BTreeMap::new() };
    for (name, value) in entries {
        if name == "__metadata__" {
            let Entries(metadata) = serde_json::from_str(value.get()).map_err(|e| format!("__metadata__: {e}"))?;
            if let Some(key) = repeated(&metadata) {
                return Err(format!("metadata key {key:?} appears twice"));
            }
            header.metadata = metadata.into_iter().collect();
        } else {
            let info = serde_json::from_str(value.get()).map_err(|e| format!("tensor {name}: {e}"))?;
            header.tensors.push((name, info));
        }
    }
    header.tensors.sort_by_key(|(_, info)| info.data_offsets);
    // The crate's checks, which need the tensors in offset order; the `Metadata` they build is not needed.
    Metadata::new(None, header.tensors.clone()).map_err(|e| match e {
        SafeTensorError::InvalidOffset(name) => {
            let offsets = header.tensors.iter().find(|(n, _)| *n == name).map(|(_, t)| t.data_offsets);
            let offsets = offsets.map(|(start, end)| format!(" [{start}, {end}]")).unwrap_or_default();
            format!(
                "tensor {name}: data_offsets{offsets} overlap another tensor's, leave bytes unused before them, or \
                 end before they start"
            )
        }
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's data_offsets do not span the bytes its shape and dtype need".to_owned()
        }
        SafeTensorError::ValidationOverflow => "a tensor's shape overflows: its size does not fit in memory".into(),
        other => other.to_string(),
    })?;
    let end = header.tensors.last().map_or(0, |(_, info)| info.data_offsets.1);
    if end > data_len {
        return Err(format!(
            "the tensors' data_offsets go past the end of the data ({data_len} bytes; truncated?): the last ends at \
             byte {end}"
        ));
    }
    if end < data_len {
        return Err(format!("the tensors cover {end} bytes of data but the file holds {data_len}"));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::Dtype;

    #[test]
    fn parses_what_the_writer_writes_in_offset_order() {
        let text = r#"{"__metadata__":{"format":"dlfs-checkpoint/1","note":"caf\u00e9 \ud83d\ude00 \"q\""},"b":{"dtype":"F64","shape":[],"data_offsets":[24,32]} , "a" : {"shape":[2,3],"data_offsets":[0,24],"dtype":"F32"}}   "#;
        let h = parse(text, 32).unwrap();
        assert_eq!(h.metadata["note"], "café 😀 \"q\"");
        let names: Vec<&str> = h.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!((h.tensors[0].1.dtype, &h.tensors[0].1.shape[..]), (Dtype::F32, &[2, 3][..]));
        assert_eq!(h.tensors[1].1.data_offsets, (24, 32));
    }

    #[test]
    fn rejects_malformed_headers() {
        let entry =
            |name: &str, offsets: &str| format!(r#""{name}":{{"dtype":"F32","shape":[1],"data_offsets":{offsets}}}"#);
        let cases = [
            // The same tensor twice, at the same offsets: the crate alone would read one tensor.
            (format!("{{{},{}}}", entry("a", "[0,4]"), entry("a", "[0,4]")), "tensor name \"a\" appears twice"),
            (r#"{"__metadata__":{},"__metadata__":{}}"#.into(), "\"__metadata__\" appears twice"),
            (r#"{"__metadata__":{"k":"v","k":"w"}}"#.into(), "metadata key \"k\" appears twice"),
            (r#"{"__metadata__":{"k":1}}"#.into(), "__metadata__: invalid type: integer `1`, expected a string"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"dtype":"F64"}}"#.into(), "duplicate field"),
            (r#"{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}"#.into(), "tensor a: unknown variant `f32`"),
            (r#"{"a":{"dtype":"F32","shape":[1]}}"#.into(), "tensor a: missing field `data_offsets`"),
            (r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#.into(), "tensor a: invalid value"),
            (r#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#.into(), "tensor a: invalid type"),
            (r#"{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#.into(), "invalid number"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#.into(), "tensor a: trailing characters"),
            (r#"{"a":"#.into(), "EOF while parsing"),
            ("{} x".into(), "trailing characters"),
            ("[]".into(), "expected a JSON object"),
            // Nesting deep enough to overflow a recursive parser's stack.
            (format!(r#"{{"a":{}{}}}"#, "[".repeat(1 << 20), "]".repeat(1 << 20)), "tensor a: "),
            (r#"{"\ud800":1}"#.into(), "hex escape"),
        ];
        for (text, expected) in cases {
            let err = parse(&text, 4).unwrap_err();
            assert!(err.contains(expected), "{}: {err}", &text[..text.len().min(100)]);
        }
    }

    #[test]
    fn validation_checks_offsets_against_shapes_and_the_data() {
        let t = |name: &str, shape: &str, offsets: &str| {
            format!(r#""{name}":{{"dtype":"F64","shape":{shape},"data_offsets":{offsets}}}"#)
        };
        // Eight tensors of 2⁵⁸ - 1 values, each one's size without overflow: together they end 64 bytes
        // before 2⁶⁴.
        let size = ((1u64 << 58) - 1) * 8;
        let huge: Vec<String> = (0..8)
            .map(|i| {
                t(&format!("t{i}"), &format!("[{}]", (1u64 << 58) - 1), &format!("[{},{}]", i * size, (i + 1) * size))
            })
            .collect();
        let cases = [
            (t("a", "[1]", "[0,8]") + "," + &t("b", "[1]", "[4,12]"), 12, "tensor b: data_offsets [4, 12] overlap"),
            (t("a", "[1]", "[8,16]"), 16, "tensor a: data_offsets [8, 16] overlap another tensor's, leave bytes"),
            (t("a", "[2]", "[0,8]"), 8, "do not span the bytes its shape and dtype need"),
            (t("a", "[1]", "[8,0]"), 8, "end before they start"),
            (t("a", "[4294967296,4294967296]", "[0,8]"), 8, "overflows"),
            (t("a", "[2305843009213693951]", "[0,18446744073709551608]"), 8, "overflows"),
            (
                huge.join(","),
                0,
                "go past the end of the data (0 bytes; truncated?): the last ends at byte 18446744073709551552",
            ),
            (t("a", "[1]", "[0,8]"), 16, "cover 8 bytes of data but the file holds 16"),
        ];
        for (entries, data_len, expected) in cases {
            let err = parse(&format!("{{{entries}}}"), data_len).unwrap_err();
            assert!(err.contains(expected), "{entries}: {err}");
        }
    }
}
