//! Mutation tests: every parser of the crate (IDX plain and gzip, the Boston CSV, text, checkpoints) is
//! fed thousands of seeded corruptions of a small valid file it generates itself (bit flips,
//! truncations, extreme header values, duplicated, moved and inserted bytes). Each must give an error
//! or the right value (checked against an independent reading of the same bytes), never panic, and never
//! allocate more than [`ALLOCATION_BOUND`]. Run with `--nocapture` to see the counts.

// The counting allocator below implements `GlobalAlloc`, an unsafe trait; nothing else here is unsafe.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{ArrayD, IxDyn};
use scratch::checkpoint;
use scratch::data::{boston, mnist, text};
use scratch::rng::RandomState;
use scratch::Result;

// ---------------------------------------------------------------------------------------------------
// Allocation accounting

/// No single allocation, and no peak of live bytes in this test binary, may exceed this: the valid
/// files are a few hundred bytes, so anything near it means a size was taken from a header unchecked.
const ALLOCATION_BOUND: usize = 64 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes, their peak, and the largest single request.
struct Counting;

fn grew(size: usize, by: usize) {
    LARGEST.fetch_max(size, Ordering::Relaxed);
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counters are
// only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size(), layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size(), layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            grew(new_size, new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn assert_allocations_bounded(parser: &str) {
    let (peak, largest) = (PEAK.load(Ordering::Relaxed), LARGEST.load(Ordering::Relaxed));
    println!(
        "{parser}: largest single allocation so far {largest} bytes, peak live bytes {peak} (bound {ALLOCATION_BOUND})"
    );
    assert!(largest < ALLOCATION_BOUND && peak < ALLOCATION_BOUND, "{parser}: {largest} / {peak} bytes");
}

// ---------------------------------------------------------------------------------------------------
// Mutations

/// Seeded corruptions of a byte string.
struct Mutator {
    rng: RandomState,
}

impl Mutator {
    fn new(seed: u32) -> Self {
        Mutator { rng: RandomState::new(seed) }
    }

    /// A uniform integer in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.rng.randint(0, n as i64).unwrap() as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A range `start..end` within `0..len`, at most `max_len` long.
    fn range(&mut self, len: usize, max_len: usize) -> (usize, usize) {
        let start = self.below(len + 1);
        let end = start + self.below((len - start).min(max_len) + 1);
        (start, end)
    }

    /// One generic mutation of `bytes`.
    fn generic(&mut self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self.below(6) {
            0 => {
                for _ in 0..1 + self.below(4) {
                    if len > 0 {
                        let i = self.below(len);
                        bytes[i] ^= 1 << self.below(8);
                    }
                }
            }
            1 => bytes.truncate(self.below(len + 1)),
            2 => {
                let (a, b) = self.range(len, 64);
                let copy = bytes[a..b].to_vec();
                let at = self.below(len + 1);
                bytes.splice(at..at, copy);
            }
            3 => {
                let (a, b) = self.range(len, 64);
                let moved: Vec<u8> = bytes.drain(a..b).collect();
                let at = self.below(bytes.len() + 1);
                bytes.splice(at..at, moved);
            }
            4 => {
                let at = self.below(len + 1);
                let inserted: Vec<u8> = (0..1 + self.below(16)).map(|_| self.below(256) as u8).collect();
                bytes.splice(at..at, inserted);
            }
            _ => {
                if len > 0 {
                    let i = self.below(len);
                    bytes[i] =
                        *self.pick(&[0, 0xff, 0x7f, 0x80, b'"', b',', b'\n', b'{', b'}', b'0', b'9', b'-', b'e']);
                }
            }
        }
    }
}

/// Results of one parser's run.
#[derive(Default)]
struct Tally {
    tried: usize,
    ok: usize,
    err: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Runs `check` on one mutated input; a panic, or a failed check (`Err(description)`), is recorded.
    fn run(&mut self, what: &str, check: impl FnOnce() -> Result<bool, String>) {
        self.tried += 1;
        match catch_unwind(AssertUnwindSafe(check)) {
            Ok(Ok(true)) => self.ok += 1,
            Ok(Ok(false)) => self.err += 1,
            Ok(Err(problem)) => self.failures.push(format!("{what}: {problem}")),
            Err(_) => self.failures.push(format!("{what}: panicked")),
        }
    }

    fn finish(self, parser: &str) {
        println!(
            "{parser}: {} mutations tried, {} Ok, {} Err, {} panics or wrong results",
            self.tried,
            self.ok,
            self.err,
            self.failures.len()
        );
        assert!(self.failures.is_empty(), "{parser}:\n{}", self.failures[..self.failures.len().min(10)].join("\n"));
        assert!(self.ok > 0 && self.err > 0, "{parser}: the mutations should give both outcomes");
        assert_allocations_bounded(parser);
    }
}

fn work_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mutations").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const MUTATIONS: usize = 3000;

/// Writes one mutated input to a fresh file (rewriting one file in place makes some file systems flush
/// it to disk each time).
fn write_input(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------------
// IDX

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(payload);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// What a correct reader returns for the IDX bytes `bytes`, worked out independently: `None` for an
/// error.
fn idx_reference(bytes: &[u8], magic: u32) -> Option<(Vec<usize>, Vec<u8>)> {
    let dims = (magic & 0xff) as usize;
    let header = bytes.get(..4 + 4 * dims)?;
    let words: Vec<u32> = header.chunks(4).map(|w| u32::from_be_bytes(w.try_into().unwrap())).collect();
    if words[0] != magic {
        return None;
    }
    let size: u128 = words[1..].iter().map(|&d| u128::from(d)).product();
    let payload = &bytes[header.len()..];
    if size == 0 || size > u128::from(mnist::MAX_DATA_BYTES) || payload.len() as u128 != size {
        return None;
    }
    if magic == 0x0801 && payload.iter().any(|&l| l > 9) {
        return None;
    }
    Some((words[1..].iter().map(|&d| d as usize).collect(), payload.to_vec()))
}

/// Reads `path` as images or labels (by `magic`) and compares with `expected`.
fn check_idx(path: &Path, magic: u32, expected: Option<(Vec<usize>, Vec<u8>)>) -> Result<bool, String> {
    let got = if magic == 0x0803 {
        mnist::read_images(path)
            .map(|(images, rows, cols)| (vec![images.nrows(), rows, cols], images.iter().copied().collect()))
    } else {
        mnist::read_labels(path).map(|labels| (vec![labels.len()], labels))
    };
    match (got, expected) {
        (Ok(got), Some(expected)) if got == expected => Ok(true),
        (Err(_), None) => Ok(false),
        (Ok(got), expected) => {
            Err(format!("read {:?} ({} bytes), expected {:?}", got.0, got.1.len(), expected.map(|e| e.0)))
        }
        (Err(e), Some(expected)) => Err(format!("{e}, but the data is a valid {:?}", expected.0)),
    }
}

/// An extreme value in one of the header's words (the magic number or a dimension).
fn extreme_idx_header(m: &mut Mutator, bytes: &mut [u8], dims: usize) {
    let word = m.below(dims + 1);
    let value = *m.pick(&[
        0,
        1,
        2,
        0x0803,
        0x0801,
        0x08ff,
        1 << 16,
        1 << 21,
        1 << 22,
        1 << 30,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fffe,
        0xffff_ffff,
    ]);
    if let Some(w) = bytes.get_mut(4 * word..4 * word + 4) {
        w.copy_from_slice(&u32::to_be_bytes(value));
    }
}

/// A small valid image file (`count` images of 2×3) and a label file, both from `rng`.
fn idx_bases(rng: &mut Mutator) -> [(u32, Vec<u8>); 2] {
    let pixels: Vec<u8> = (0..4 * 6).map(|_| rng.below(256) as u8).collect();
    let labels: Vec<u8> = (0..5).map(|_| rng.below(10) as u8).collect();
    [(0x0803, idx(0x0803, &[4, 2, 3], &pixels)), (0x0801, idx(0x0801, &[5], &labels))]
}

#[test]
fn idx_plain_mutations() {
    let dir = work_dir("idx-plain");
    let mut m = Mutator::new(1);
    let bases = idx_bases(&mut m);
    let mut tally = Tally::default();
    for i in 0..MUTATIONS {
        let (magic, base) = &bases[i % 2];
        let mut bytes = base.clone();
        for _ in 0..1 + m.below(3) {
            if m.below(3) == 0 {
                extreme_idx_header(&mut m, &mut bytes, (magic & 0xff) as usize);
            } else {
                m.generic(&mut bytes);
            }
        }
        // Now and then a header whose product wraps around to the payload's 24 bytes modulo 2⁶⁴.
        if *magic == 0x0803 && m.below(50) == 0 {
            bytes = idx(0x0803, &[3_340_214_413, 4_141_967_055, 8], &base[16..]);
        }
        let path = write_input(&dir, &format!("{i}-file"), &bytes);
        tally.run(&format!("mutation {i}"), || check_idx(&path, *magic, idx_reference(&bytes, *magic)));
        std::fs::remove_file(&path).unwrap();
    }
    tally.finish("IDX plain");
}

#[test]
fn idx_gzip_mutations() {
    let dir = work_dir("idx-gzip");
    let mut m = Mutator::new(2);
    let bases = idx_bases(&mut m);
    let mut tally = Tally::default();
    for i in 0..MUTATIONS {
        let (magic, base) = &bases[i % 2];
        // Corrupt the data before compression (the header reaches the parser intact through gzip), the
        // compressed stream, or both; sometimes split it into several gzip members.
        let mut plain = base.clone();
        let mode = m.below(3);
        if mode != 1 {
            for _ in 0..1 + m.below(2) {
                if m.below(2) == 0 {
                    extreme_idx_header(&mut m, &mut plain, (magic & 0xff) as usize);
                } else {
                    m.generic(&mut plain);
                }
            }
        }
        let mut bytes = if m.below(4) == 0 {
            let cut = m.below(plain.len() + 1);
            [gzip(&plain[..cut]), gzip(&plain[cut..])].concat()
        } else {
            gzip(&plain)
        };
        if mode != 0 {
            m.generic(&mut bytes);
        }
        let mut decompressed = Vec::new();
        let expected = match flate2::read::MultiGzDecoder::new(bytes.as_slice()).read_to_end(&mut decompressed) {
            Ok(_) => idx_reference(&decompressed, *magic),
            Err(_) => None,
        };
        let path = write_input(&dir, &format!("{i}-file.gz"), &bytes);
        tally.run(&format!("mutation {i}"), || check_idx(&path, *magic, expected));
        std::fs::remove_file(&path).unwrap();
    }
    tally.finish("IDX gzip");
}

// ---------------------------------------------------------------------------------------------------
// Boston CSV

const NAMES: &str = "CRIM,ZN,INDUS,CHAS,NOX,RM,AGE,DIS,RAD,TAX,PTRATIO,B,LSTAT,MEDV";

fn boston_bases(m: &mut Mutator) -> [Vec<u8>; 2] {
    let rows: Vec<String> = (0..6)
        .map(|_| (0..14).map(|_| format!("{}", m.below(100_000) as f64 / 100.0)).collect::<Vec<_>>().join(","))
        .collect();
    let quoted = NAMES.split(',').map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(",");
    [
        format!("6,13,,,,,,,,,,,,\n{quoted}\n{}\n", rows.join("\n")).into_bytes(),
        format!("{}\n{}\n", NAMES.to_lowercase(), rows.join("\r\n")).into_bytes(),
    ]
}

/// Replaces one comma-separated field of one line with an extreme value.
fn extreme_csv_field(m: &mut Mutator, bytes: &mut Vec<u8>) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let mut lines: Vec<Vec<String>> = text.split('\n').map(|l| l.split(',').map(str::to_owned).collect()).collect();
    let line = m.below(lines.len());
    let field = m.below(lines[line].len());
    let nines = "9".repeat(400);
    let value = *m.pick(&[
        "NaN",
        "nan",
        "inf",
        "-inf",
        "infinity",
        "1e308",
        "-1e308",
        "1e400",
        "1e9",
        "-1e9",
        "1000000001",
        "1e-400",
        "-0",
        "",
        " ",
        "0x1F",
        "18446744073709551615",
        "18446744073709551616",
        &nines,
        "13",
        "14",
        "0",
        "\"CRIM\"",
        "MEDV",
    ]);
    lines[line][field] = value.to_owned();
    *bytes = lines.iter().map(|l| l.join(",")).collect::<Vec<_>>().join("\n").into_bytes();
}

/// Whether `data` is a correct reading of `bytes`: its rows are the numbers of the file's last non-blank
/// lines, every value within the documented bounds, and the header's names are the Boston columns.
fn check_boston(bytes: &[u8], data: &boston::Boston) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "accepted a file that is not UTF-8")?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let rows = data.target.len();
    if rows == 0 || data.features.dim() != (rows, 13) || lines.len() <= rows {
        return Err(format!("{rows} rows from {} lines", lines.len()));
    }
    for (line, (features, target)) in
        lines[lines.len() - rows..].iter().zip(data.features.rows().into_iter().zip(&data.target))
    {
        let parsed: Vec<f64> = line
            .split(',')
            .map(|f| f.trim().parse::<f64>().map_err(|_| format!("{line:?}")))
            .collect::<Result<_, _>>()?;
        let read: Vec<f64> = features.iter().chain([target]).copied().collect();
        if parsed != read {
            return Err(format!("{line:?} read as {read:?}"));
        }
        if let Some(v) = read.iter().find(|v| !v.is_finite() || v.abs() > boston::MAX_ABS_VALUE) {
            return Err(format!("accepted {v}"));
        }
    }
    if data.feature_names.len() != 13 || data.feature_names[0] != "CRIM" {
        return Err(format!("names {:?}", data.feature_names));
    }
    Ok(())
}

#[test]
fn boston_csv_mutations() {
    let dir = work_dir("boston");
    let mut m = Mutator::new(3);
    let bases = boston_bases(&mut m);
    let mut tally = Tally::default();
    for i in 0..MUTATIONS {
        let mut bytes = bases[i % 2].clone();
        for _ in 0..1 + m.below(3) {
            if m.below(2) == 0 {
                extreme_csv_field(&mut m, &mut bytes);
            } else {
                m.generic(&mut bytes);
            }
        }
        let path = write_input(&dir, &format!("{i}-file.csv"), &bytes);
        tally.run(&format!("mutation {i}"), || match boston::load(&path) {
            Ok(data) => check_boston(&bytes, &data).map(|()| true),
            Err(_) => Ok(false),
        });
        std::fs::remove_file(&path).unwrap();
    }
    tally.finish("Boston CSV");
}

// ---------------------------------------------------------------------------------------------------
// Text

#[test]
fn text_mutations() {
    let dir = work_dir("text");
    let mut m = Mutator::new(4);
    let base = "To be, or not to be — that is the question:\nWhether 'tis nobler in the mind to suffer\nThe slings \
                and arrows of outrageous fortune, café, 😀\n"
        .as_bytes()
        .to_vec();
    let mut tally = Tally::default();
    for i in 0..MUTATIONS {
        let mut bytes = base.clone();
        for _ in 0..1 + m.below(3) {
            if m.below(4) == 0 {
                // An invalid or truncated UTF-8 sequence, or only whitespace.
                let at = m.below(bytes.len() + 1);
                let sequences: [&[u8]; 5] =
                    [&[0xff], &[0xc0, 0x80], &[0xe2, 0x80], &[0xed, 0xa0, 0x80], b"\xef\xbb\xbf"];
                let inserted = *m.pick(&sequences);
                bytes.splice(at..at, inserted.iter().copied());
            } else if m.below(20) == 0 {
                bytes = b" \n\t\r\n".to_vec();
            } else {
                m.generic(&mut bytes);
            }
        }
        let expected = std::str::from_utf8(&bytes).ok().filter(|t| !t.trim().is_empty()).map(str::to_owned);
        let path = write_input(&dir, &format!("{i}-file.txt"), &bytes);
        tally.run(&format!("mutation {i}"), || match (text::load(&path), expected) {
            (Ok(got), Some(expected)) if got == expected => Ok(true),
            (Err(_), None) => Ok(false),
            (got, expected) => Err(format!("got {:?}, expected {expected:?}", got.map_err(|e| e.to_string()))),
        });
        std::fs::remove_file(&path).unwrap();
    }
    tally.finish("text");
}

// ---------------------------------------------------------------------------------------------------
// Checkpoints

fn checkpoint_base<F: scratch::Float>(dir: &Path, m: &mut Mutator) -> Vec<u8> {
    let mut rng = RandomState::new(m.below(1000) as u32);
    let tensors: Vec<(String, ArrayD<F>)> =
        [("layers.0.weight", &[3, 2][..]), ("layers.0.bias", &[3]), ("\u{e9}chelle", &[]), ("empty", &[0, 2])]
            .iter()
            .map(|(name, shape)| (name.to_string(), rng.randn::<F, _>(IxDyn(shape))))
            .collect();
    // The only metadata is `format`: with more keys, their order in the file would change from run to run.
    let path = dir.join(format!("base-{}.safetensors", F::NAME));
    checkpoint::save(&path, &tensors, &BTreeMap::new()).unwrap();
    std::fs::read(path).unwrap()
}

/// The header's length from the first 8 bytes, if they are there.
fn header_len(bytes: &[u8]) -> Option<usize> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize)
}

/// Replaces `bytes[start..end]`, inside the header, with `new` and fixes the header's length.
fn splice_header(bytes: &mut Vec<u8>, start: usize, end: usize, new: &[u8]) {
    bytes.splice(start..end, new.iter().copied());
    if let Some(n) = header_len(bytes) {
        let n = n.wrapping_add(new.len()).wrapping_sub(end - start) as u64;
        bytes[..8].copy_from_slice(&n.to_le_bytes());
    }
}

/// An extreme header: its length, a number in it, a tensor renamed to another's name, or a dtype.
fn extreme_checkpoint_header(m: &mut Mutator, bytes: &mut Vec<u8>) {
    let Some(n) = header_len(bytes).filter(|&n| n <= bytes.len() - 8) else { return };
    let header = bytes[8..8 + n].to_vec();
    let find_all = |needle: &[u8]| -> Vec<usize> {
        header.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| 8 + i).collect()
    };
    match m.below(4) {
        0 => {
            let len = bytes.len() as u64;
            let n = n as u64;
            let value = *m.pick(&[0, 1, 7, 8, n.saturating_sub(1), n + 1, len, len - 8, 1 << 32, 1 << 63, u64::MAX]);
            bytes[..8].copy_from_slice(&value.to_le_bytes());
        }
        1 => {
            let digits: Vec<usize> = (0..header.len())
                .filter(|&i| header[i].is_ascii_digit() && (i == 0 || !header[i - 1].is_ascii_digit()))
                .collect();
            if digits.is_empty() {
                return;
            }
            let start = 8 + *m.pick(&digits);
            let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
            let value = *m.pick(&[
                "0",
                "1",
                "4294967296",
                "2305843009213693951",
                "9223372036854775807",
                "18446744073709551615",
                "18446744073709551616",
                "99999999999999999999999",
                "-1",
                "1e3",
                "1.5",
                "01",
            ]);
            splice_header(bytes, start, end, value.as_bytes());
        }
        2 => {
            let names = [
                &b"\"layers.0.weight\""[..],
                b"\"layers.0.bias\"",
                "\"\u{e9}chelle\"".as_bytes(),
                b"\"empty\"",
                b"\"__metadata__\"",
            ];
            let (from, to) = (*m.pick(&names), *m.pick(&names));
            if let Some(&at) = find_all(from).first() {
                splice_header(bytes, at, at + from.len(), to);
            }
        }
        _ => {
            let dtypes = [&b"\"F64\""[..], b"\"F32\""];
            let at: Vec<usize> = dtypes.iter().flat_map(|d| find_all(d)).collect();
            if at.is_empty() {
                return;
            }
            let start = *m.pick(&at);
            let to = *m.pick(&[&b"\"F32\""[..], b"\"F64\"", b"\"BF16\"", b"\"I64\"", b"\"F16\"", b"\"f32\"", b"\"\""]);
            splice_header(bytes, start, start + 5, to);
        }
    }
}

/// A checkpoint's tensors (name, shape, values as `f64`) and metadata.
type Reading = (Vec<(String, Vec<usize>, Vec<f64>)>, BTreeMap<String, String>);

/// The reference reading of safetensors `bytes`, by release 0.3 of the `safetensors` crate (which may
/// panic on some corrupt files: a panic counts as no reading), if every tensor is F32 or F64.
fn checkpoint_reference(bytes: &[u8]) -> Option<Reading> {
    use safetensors03 as safetensors;
    catch_unwind(|| {
        let file = safetensors::SafeTensors::deserialize(bytes).ok()?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
        let mut tensors = Vec::new();
        for (name, view) in file.tensors() {
            let values: Vec<f64> = match view.dtype() {
                safetensors::Dtype::F32 => {
                    view.data().chunks(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect()
                }
                safetensors::Dtype::F64 => {
                    view.data().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
                }
                _ => return None,
            };
            tensors.push((name, view.shape().to_vec(), values));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Some((tensors, header.metadata().clone().unwrap_or_default().into_iter().collect()))
    })
    .ok()
    .flatten()
}

/// Loads `path` as `f64` and as `f32` and compares both with the reference reading. `header_intact`: the
/// mutation left the header as it was, so a file whose values are all finite must load.
fn check_checkpoint(path: &Path, reference: Option<Reading>, header_intact: bool) -> Result<bool, String> {
    let loaded = checkpoint::load::<f64>(path);
    let as_f32 = checkpoint::load::<f32>(path);
    let finite = reference.as_ref().is_some_and(|(t, _)| t.iter().all(|(_, _, v)| v.iter().all(|x| x.is_finite())));
    match (loaded, reference) {
        (Ok(file), Some((tensors, metadata))) => {
            let got: Vec<(String, Vec<usize>, Vec<f64>)> = file
                .tensors
                .iter()
                .map(|(n, a)| (n.clone(), a.shape().to_vec(), a.iter().copied().collect()))
                .collect();
            if !finite {
                return Err("loaded a non-finite value".into());
            }
            if got != tensors || file.metadata != metadata {
                return Err(format!("loaded {got:?} {:?}, expected {tensors:?} {metadata:?}", file.metadata));
            }
            if let Ok(small) = as_f32 {
                let cast: Vec<Vec<f32>> =
                    tensors.iter().map(|(_, _, v)| v.iter().map(|&x| x as f32).collect()).collect();
                let got: Vec<Vec<f32>> = small.tensors.iter().map(|(_, a)| a.iter().copied().collect()).collect();
                if got != cast {
                    return Err("the f32 load differs from the values cast to f32".into());
                }
            }
            Ok(true)
        }
        (Ok(file), None) => Err(format!("loaded {} tensors from a file the reference rejects", file.tensors.len())),
        (Err(e), Some(_)) if header_intact && finite => Err(format!("{e}, but only the data changed and it is finite")),
        (Err(_), _) => Ok(false),
    }
}

#[test]
fn checkpoint_mutations() {
    let dir = work_dir("checkpoint");
    let mut m = Mutator::new(5);
    let bases = [checkpoint_base::<f64>(&dir, &mut m), checkpoint_base::<f32>(&dir, &mut m)];
    let mut tally = Tally::default();
    for i in 0..MUTATIONS {
        let base = &bases[i % 2];
        let header_end = header_len(base).unwrap() + 8;
        let mut bytes = base.clone();
        for _ in 0..1 + m.below(3) {
            match m.below(4) {
                0 => extreme_checkpoint_header(&mut m, &mut bytes),
                // The data only (most of the file is header): flipped bits, or a value's exponent set to
                // all ones, an infinity or a NaN.
                1 if bytes.len() > header_end => {
                    let at = header_end + m.below(bytes.len() - header_end);
                    if m.below(2) == 0 {
                        bytes[at] ^= 1 << m.below(8);
                    } else {
                        let width = if i % 2 == 0 { 8 } else { 4 };
                        let value = header_end + (at - header_end) / width * width + width - 1;
                        if let Some(top) = bytes.get_mut(value - 1..=value) {
                            top[1] |= 0x7f;
                            top[0] |= if width == 8 { 0xf0 } else { 0x80 };
                        }
                    }
                }
                _ => m.generic(&mut bytes),
            }
        }
        let header_intact = bytes.len() == base.len() && bytes[..header_end] == base[..header_end];
        let reference = checkpoint_reference(&bytes);
        let path = write_input(&dir, &format!("{i}-model.safetensors"), &bytes);
        tally.run(&format!("mutation {i}"), || check_checkpoint(&path, reference, header_intact));
        std::fs::remove_file(&path).unwrap();
    }
    tally.finish("checkpoint");
}
