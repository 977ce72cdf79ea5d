//! Text corpora for the character-level language models of chapters 6 and 7.
//!
//! `make setup` fetches 42 of Shakespeare's works (Project Gutenberg's modern-spelling texts, plain
//! ASCII) into `data/text/shakespeare/`, one file per work (`hamlet.txt`, `macbeth.txt`, ...).

use std::collections::BTreeSet;
use std::path::Path;

use super::{read, SETUP_HINT};
use crate::{Error, Result};

/// The largest file [`load`] reads: 256 MiB, about fifty times the 42 works of the Shakespeare corpus
/// together (5 MB). A larger file is refused before anything is read (a model's encoding of a text
/// takes 8 bytes per character).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads a UTF-8 text file.
///
/// # Errors
/// A missing file (with the command that fetches it), a path that is not a regular file or is larger
/// than [`MAX_FILE_BYTES`], invalid UTF-8 (with the byte offset), or an empty file.
pub fn load(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = read::read(path, SETUP_HINT, MAX_FILE_BYTES, "text::MAX_FILE_BYTES")?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::bad_file(path, format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))
    })?;
    if text.trim().is_empty() {
        return Err(Error::bad_file(path, "the file is empty"));
    }
    Ok(text)
}

/// The named works of the Shakespeare corpus under `data_dir`, concatenated in the order given.
///
/// # Errors
/// As [`load`], for each work.
pub fn shakespeare(data_dir: impl AsRef<Path>, works: &[&str]) -> Result<String> {
    let dir = data_dir.as_ref().join("text").join("shakespeare");
    let mut text = String::new();
    for work in works {
        text.push_str(&load(dir.join(format!("{work}.txt")))?);
    }
    Ok(text)
}

/// A character vocabulary: the distinct characters of a text, **sorted**, so that indices are the same
/// in every run (the book's `list(set(text))` order changes from one Python process to the next).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    chars: Vec<char>,
}

impl Vocabulary {
    /// The vocabulary of `text`.
    pub fn new(text: &str) -> Self {
        Vocabulary { chars: text.chars().collect::<BTreeSet<_>>().into_iter().collect() }
    }

    /// The number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The index of `c`, if it is in the vocabulary.
    pub fn index(&self, c: char) -> Option<usize> {
        self.chars.binary_search(&c).ok()
    }

    /// Every character, in index order (sorted).
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The character at `index`.
    ///
    /// # Errors
    /// If `index` is not below the vocabulary's size.
    pub fn char(&self, index: usize) -> Result<char> {
        self.chars.get(index).copied().ok_or_else(|| {
            Error::InvalidArgument(format!("index {index} is outside a vocabulary of {} characters", self.chars.len()))
        })
    }

    /// The indices of every character of `text`.
    ///
    /// # Errors
    /// If `text` has a character outside the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        text.chars()
            .map(|c| {
                self.index(c).ok_or_else(|| Error::InvalidArgument(format!("character {c:?} is not in the vocabulary")))
            })
            .collect()
    }

    /// The text of `indices`.
    ///
    /// # Errors
    /// An index outside the vocabulary.
    pub fn decode(&self, indices: &[usize]) -> Result<String> {
        indices.iter().map(|&i| self.char(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_sorted_and_round_trips() {
        let v = Vocabulary::new("hello world");
        assert_eq!(v.len(), 8);
        assert_eq!(v.char(0).unwrap(), ' ');
        assert!(v.char(v.len()).is_err());
        let idx = v.encode("low").unwrap();
        assert_eq!(v.decode(&idx).unwrap(), "low");
        assert_eq!(idx.iter().map(|&i| v.char(i).unwrap()).collect::<String>(), "low");
        assert!(v.encode("z").is_err());
    }
}
