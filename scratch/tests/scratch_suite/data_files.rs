//! The data loaders: real files (when downloaded) and every kind of bad file, which must give an error
//! naming the file and what is wrong.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::{data_dir_or_skip, round};
use scratch::data::{boston, mnist, text, train_test_split};
use scratch::Error;

/// A fresh empty folder under the target directory.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path).unwrap().write_all(bytes).unwrap();
}

fn message(err: Error) -> String {
    let message = err.to_string();
    crate::common::assert_readable(&message);
    message
}

// ---------------------------------------------------------------------------------------------------
// Boston

const SKLEARN_HEAD: &str = "506,13,,,,,,,,,,,,\n\"CRIM\",\"ZN\",\"INDUS\",\"CHAS\",\"NOX\",\"RM\",\"AGE\",\"DIS\",\"RAD\",\"TAX\",\"PTRATIO\",\"B\",\"LSTAT\",\"MEDV\"\n";
const STDLIB_HEAD: &str = "crim,zn,indus,chas,nox,rm,age,dis,rad,tax,ptratio,b,lstat,medv\n";
const ROW: &str = "0.00632,18,2.31,0,0.538,6.575,65.2,4.09,1,296,15.3,396.9,4.98,24\n";

#[test]
fn boston_missing_file_names_it_and_the_setup_command() {
    let path = scratch_dir("boston-missing").join("nope.csv");
    let err = message(boston::load(&path).unwrap_err());
    assert!(err.contains("nope.csv") && err.contains("not found") && err.contains("make setup"), "{err}");
}

#[test]
fn boston_malformed_files() {
    let dir = scratch_dir("boston-bad");
    let cases: [(&str, String, &str); 6] = [
        ("empty.csv", String::new(), "empty"),
        ("header.csv", "a,b,c\n1,2,3\n".into(), "column names"),
        ("short-row.csv", format!("{STDLIB_HEAD}1,2,3\n"), "line 2: expected 14 comma-separated values, got 3"),
        (
            "not-number.csv",
            format!("{STDLIB_HEAD}{}", ROW.replace("6.575", "six")),
            "line 2: column 6 (RM) is not a number",
        ),
        ("truncated.csv", format!("{SKLEARN_HEAD}{ROW}{ROW}"), "declares 506 rows but the file has 2"),
        ("no-rows.csv", STDLIB_HEAD.into(), "no data rows"),
    ];
    for (name, content, expected) in cases {
        let path = dir.join(name);
        write(&path, content.as_bytes());
        let err = message(boston::load(&path).unwrap_err());
        assert!(err.contains(name) && err.contains(expected), "{name}: {err}");
    }
}

#[test]
fn boston_values_must_be_finite_and_not_absurd() {
    let dir = scratch_dir("boston-values");
    for (cell, shown) in [
        ("NaN", "NaN"),
        ("inf", "inf"),
        ("-infinity", "-infinity"),
        ("1e308", "1e308"),
        ("1e400", "1e400"),
        ("-2e9", "-2e9"),
    ] {
        let path = dir.join("values.csv");
        write(&path, format!("{STDLIB_HEAD}{ROW}{}", ROW.replace("6.575", cell)).as_bytes());
        let err = message(boston::load(&path).unwrap_err());
        let expected = format!("values.csv: line 3: column 6 (RM) is {shown}: values must be finite and at most 1e9");
        assert!(err.contains(&expected), "{cell}: {err}");
    }
    // The bound itself is accepted.
    let path = dir.join("bound.csv");
    write(&path, format!("{STDLIB_HEAD}{}", ROW.replace("6.575", "-1e9")).as_bytes());
    assert_eq!(boston::load(&path).unwrap().features[[0, 5]], -1e9);
}

#[test]
fn boston_small_files_in_both_formats_parse_the_same() {
    let dir = scratch_dir("boston-small");
    write(&dir.join("a.csv"), format!("{STDLIB_HEAD}{ROW}{ROW}").as_bytes());
    write(&dir.join("b.csv"), format!("{}{ROW}{ROW}", SKLEARN_HEAD.replace("506", "2")).as_bytes());
    let (a, b) = (boston::load(dir.join("a.csv")).unwrap(), boston::load(dir.join("b.csv")).unwrap());
    assert_eq!(a.features, b.features);
    assert_eq!(a.target.to_vec(), vec![24.0, 24.0]);
    assert_eq!(a.feature_names[12], "LSTAT");
}

#[test]
fn boston_real_files_agree_and_give_the_books_split() {
    let Some(dir) = data_dir_or_skip("boston/housing.csv") else { return };
    let sklearn = boston::load(dir.join("boston/boston_house_prices.csv")).unwrap();
    let stdlib = boston::load(dir.join("boston/housing.csv")).unwrap();
    assert_eq!(sklearn.features.dim(), (506, 13));
    assert_eq!(sklearn.features, stdlib.features);
    assert_eq!(sklearn.target, stdlib.target);

    // The indices and check values of scikit-learn's train_test_split(random_state=80718), as printed by the book.
    let (train, test) = train_test_split(506, 0.3, 80718).unwrap();
    assert_eq!(&test[..5], &[203, 379, 451, 438, 11]);
    assert_eq!(&test[146..], &[469, 101, 406, 312, 287, 204]);
    assert_eq!(&train[..4], &[4, 410, 380, 378]);
    assert_eq!(&train[349..], &[466, 391, 13, 81, 23]);
    let split = boston::book_split(&sklearn).unwrap();
    let x0: Vec<f64> = split.x_train.row(0).iter().take(3).map(|&v| round(v, 8)).collect();
    assert_eq!(x0, vec![-0.41248185, -0.48772236, -1.30687771]);
    assert_eq!(split.y_train.column(0).iter().take(3).copied().collect::<Vec<_>>(), vec![36.2, 15.0, 10.4]);
    assert_eq!(split.y_test.column(0).iter().take(3).copied().collect::<Vec<_>>(), vec![48.5, 10.2, 15.2]);
    assert!((split.y_test.mean().unwrap() - 22.07763157894737).abs() < 1e-12);
}

// ---------------------------------------------------------------------------------------------------
// MNIST

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(payload);
    out
}

fn write_small_mnist(dir: &Path, n: u32, gz: bool) {
    let files = [
        ("train-images-idx3-ubyte", idx(0x803, &[n, 2, 3], &vec![7; 6 * n as usize])),
        ("train-labels-idx1-ubyte", idx(0x801, &[n], &vec![3; n as usize])),
        ("t10k-images-idx3-ubyte", idx(0x803, &[1, 2, 3], &[0, 255, 0, 0, 0, 0])),
        ("t10k-labels-idx1-ubyte", idx(0x801, &[1], &[9])),
    ];
    for (name, bytes) in files {
        if gz {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&bytes).unwrap();
            write(&dir.join(format!("{name}.gz")), &enc.finish().unwrap());
        } else {
            write(&dir.join(name), &bytes);
        }
    }
}

#[test]
fn mnist_small_files_plain_and_gzipped() {
    for gz in [false, true] {
        let dir = scratch_dir(if gz { "mnist-gz" } else { "mnist-plain" });
        write_small_mnist(&dir, 4, gz);
        let m = mnist::load(&dir).unwrap();
        assert_eq!((m.train_images.dim(), m.rows, m.cols), ((4, 6), 2, 3));
        assert_eq!((&m.train_labels[..], &m.test_labels[..]), (&[3; 4][..], &[9][..]));
        assert_eq!(m.test_images.row(0).to_vec(), vec![0, 255, 0, 0, 0, 0]);
        // Every training pixel is 7: the sets are centred, not divided by a deviation of 0.
        let (train, test) = m.book_scaled::<f64>();
        assert!(train.iter().all(|&v| v == 0.0), "{train}");
        assert_eq!(test.row(0).to_vec(), vec![-7.0, 248.0, -7.0, -7.0, -7.0, -7.0]);
    }
}

#[test]
fn mnist_bad_files() {
    let dir = scratch_dir("mnist-bad");
    let missing = message(mnist::load(&dir).unwrap_err());
    assert!(missing.contains("train-images-idx3-ubyte") && missing.contains("make setup"), "{missing}");

    let fashion = scratch_dir("fashion-mnist-missing");
    let err = message(mnist::load(&fashion).unwrap_err());
    assert!(err.contains("dataset-fashion-mnist") && err.contains("apt-get"), "{err}");

    let images = dir.join("train-images-idx3-ubyte");
    let cases: [(Vec<u8>, &str); 4] = [
        (idx(0x801, &[1, 2, 3], &[0; 6]), "magic number 0x00000801 is not that of IDX images"),
        (idx(0x803, &[1, 2, 3], &[0; 106]), "(6 bytes of data) but the file has 100 bytes more (trailing data)"),
        (idx(0x803, &[2, 2, 3], &[0; 6]), "header says 2 × 2 × 3 (12 bytes of data) but the file has 6 (truncated?)"),
        (vec![0, 0, 8], "too short"),
    ];
    for (bytes, expected) in cases {
        write(&images, &bytes);
        let err = message(mnist::read_images(&images).unwrap_err());
        assert!(err.contains("train-images-idx3-ubyte") && err.contains(expected), "{err}");
    }
    let labels = dir.join("train-labels-idx1-ubyte");
    write(&labels, &idx(0x801, &[3], &[1, 12, 3]));
    let err = message(mnist::read_labels(&labels).unwrap_err());
    assert!(err.contains("label 1 is 12"), "{err}");

    write_small_mnist(&dir, 4, false);
    write(&labels, &idx(0x801, &[5], &[1; 5]));
    let err = message(mnist::load(&dir).unwrap_err());
    assert!(err.contains("4 images but 5 labels"), "{err}");

    let gz = dir.join("t10k-labels-idx1-ubyte.gz");
    write(&gz, b"not gzip");
    let err = message(mnist::read_labels(&gz).unwrap_err());
    assert!(err.contains("not a valid gzip file"), "{err}");
}

#[test]
fn idx_headers_that_overflow_wrap_or_promise_too_much_are_refused() {
    let dir = scratch_dir("mnist-headers");
    let cases: [(&[u32], &[u8], &str); 6] = [
        (&[u32::MAX; 3], &[0; 6], "header says 4294967295 × 4294967295 × 4294967295, whose product overflows 64 bits"),
        // 2²² · 2²¹ · 2²¹ = 2⁶⁴, which wraps around to the empty payload's 0.
        (&[1 << 22, 1 << 21, 1 << 21], &[], "header says 4194304 × 2097152 × 2097152, whose product overflows 64 bits"),
        // 3340214413 · 4141967055 · 8 = 6 · 2⁶⁴ + 24, which wraps around to the payload's 24 bytes.
        (
            &[3_340_214_413, 4_141_967_055, 8],
            &[0; 24],
            "header says 3340214413 × 4141967055 × 8, whose product overflows",
        ),
        (&[u32::MAX, 1, 1], &[0; 6], "(4294967295 bytes of data), more than the 1073741824 this loader accepts"),
        (&[0, 28, 28], &[], "header says 0 × 28 × 28: no data"),
        (&[1 << 10, 1 << 10, 1 << 10], &[0; 6], "(1073741824 bytes of data) but the file has 6 (truncated?)"),
    ];
    for (dims, payload, expected) in cases {
        let bytes = idx(0x803, dims, payload);
        for gz in [false, true] {
            let path = dir.join(if gz { "images.gz" } else { "images" });
            if gz {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&bytes).unwrap();
                write(&path, &enc.finish().unwrap());
            } else {
                write(&path, &bytes);
            }
            let err = message(mnist::read_images(&path).unwrap_err());
            assert!(err.contains("images") && err.contains(expected), "{dims:?} (gzip: {gz}): {err}");
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn multi_member_gzip_is_read_whole_and_trailing_data_refused() {
    let dir = scratch_dir("mnist-members");
    let pixels: Vec<u8> = (0..4 * 6).collect();
    let bytes = idx(0x803, &[4, 2, 3], &pixels);
    let path = dir.join("images.gz");
    // `cat a.gz b.gz c.gz`, cut inside the header, inside the data, and with an empty member.
    for cuts in [[2, 10, 30], [16, 16, 40], [0, 0, bytes.len()]] {
        let members = [&bytes[..cuts[0]], &bytes[cuts[0]..cuts[1]], &bytes[cuts[1]..cuts[2]], &bytes[cuts[2]..]];
        write(&path, &members.iter().flat_map(|m| gzip(m)).collect::<Vec<u8>>());
        let (images, rows, cols) = mnist::read_images(&path).unwrap();
        assert_eq!((images.dim(), rows, cols), ((4, 6), 2, 3));
        assert_eq!(images.iter().copied().collect::<Vec<u8>>(), pixels);
    }
    // More data than the header says, in one member or in a second one.
    for file in [gzip(&[&bytes[..], &[1]].concat()), [gzip(&bytes), gzip(&[1, 2])].concat()] {
        write(&path, &file);
        let err = message(mnist::read_images(&path).unwrap_err());
        assert!(err.contains("images.gz") && err.contains("bytes more (trailing data)"), "{err}");
    }
    // A damaged stream that decodes to more than the header says is reported as damaged.
    let mut damaged = gzip(&[&bytes[..], &[1, 2, 3]].concat());
    let crc = damaged.len() - 8;
    damaged[crc] ^= 0xff;
    write(&path, &damaged);
    let err = message(mnist::read_images(&path).unwrap_err());
    assert!(err.contains("images.gz") && err.contains("not a valid gzip file"), "{err}");
    // Bytes after the last member that are not gzip.
    write(&path, &[gzip(&bytes), b"junk".to_vec()].concat());
    let err = message(mnist::read_images(&path).unwrap_err());
    assert!(err.contains("images.gz") && err.contains("not a valid gzip file"), "{err}");
}

/// Each loader, given `path`: the error it reports.
fn every_loader(path: &Path) -> Vec<String> {
    vec![
        message(mnist::read_images(path).unwrap_err()),
        message(mnist::read_labels(path).unwrap_err()),
        message(boston::load(path).unwrap_err()),
        message(text::load(path).unwrap_err()),
    ]
}

#[test]
fn paths_that_are_not_regular_files_are_refused() {
    let dir = scratch_dir("not-regular");
    for err in every_loader(&dir) {
        assert!(err.contains("not-regular: is a directory, not a file"), "{err}");
    }
    if Path::new("/dev/zero").exists() {
        for err in every_loader(Path::new("/dev/zero")) {
            assert!(err.contains("/dev/zero: is not a regular file"), "{err}");
        }
    }
    // A FIFO would block a reader that opened it: it is refused before it is opened.
    let fifo = dir.join("fifo");
    match std::process::Command::new("mkfifo").arg(&fifo).status() {
        Ok(status) if status.success() => {
            for err in every_loader(&fifo) {
                assert!(err.contains("fifo: is not a regular file"), "{err}");
            }
        }
        _ => eprintln!("skipped the FIFO case: no mkfifo here"),
    }
}

#[test]
fn files_beyond_the_stated_maximum_are_refused_before_reading() {
    let dir = scratch_dir("too-large");
    // Sparse files: only their length is looked at. (IDX files are bounded by their header, above.)
    let text_path = dir.join("text.txt");
    std::fs::File::create(&text_path).unwrap().set_len(text::MAX_FILE_BYTES + 1).unwrap();
    let err = message(text::load(&text_path).unwrap_err());
    assert!(
        err.contains("text.txt: the file has 268435457 bytes, more than the 268435456 this loader accepts"),
        "{err}"
    );

    let csv = dir.join("boston.csv");
    let file = std::fs::File::create(&csv).unwrap();
    file.set_len(boston::MAX_FILE_BYTES + 1).unwrap();
    let err = message(boston::load(&csv).unwrap_err());
    assert!(err.contains("boston.csv: the file has 16777217 bytes, more than the 16777216"), "{err}");
    // At the limit the file is read, and found not to be a Boston CSV.
    file.set_len(boston::MAX_FILE_BYTES).unwrap();
    let err = message(boston::load(&csv).unwrap_err());
    assert!(err.contains("expected the 14 column names"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mnist_real_files_and_the_books_scaling() {
    let Some(dir) = data_dir_or_skip("mnist/train-images-idx3-ubyte") else { return };
    let m = mnist::load(dir.join("mnist")).unwrap();
    assert_eq!((m.train_images.dim(), m.test_images.dim()), ((60_000, 784), (10_000, 784)));
    assert_eq!((&m.train_labels[..5], &m.test_labels[..5]), (&[5, 0, 4, 1, 9][..], &[7, 2, 1, 0, 4][..]));
    let (mean, std) = mnist::pixel_statistics(&m.train_images);
    assert!((mean - 33.318421449829934).abs() < 1e-12 && (std - 78.56748998339799).abs() < 1e-12, "{mean} {std}");
    let (train, test) = m.book_scaled::<f64>();
    let range = |a: &ndarray::Array2<f64>| a.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    // Printed by the book's chapter-4 notebook after scaling, for both sets.
    for (lo, hi) in [range(&train), range(&test)] {
        assert!((lo - -0.424073894391566).abs() < 1e-12 && (hi - 2.821543345689335).abs() < 1e-12, "{lo} {hi}");
    }
    let one_hot = mnist::one_hot::<f32>(&m.train_labels[..3], 10).unwrap();
    assert!(mnist::one_hot::<f32>(&[10], 10).is_err(), "a label beyond the classes is an error");
    assert_eq!(one_hot.row(0).to_vec(), vec![0., 0., 0., 0., 0., 1., 0., 0., 0., 0.]);
}

/// Fashion-MNIST is optional (it comes through `apt-get`): this test runs when it is there, and skips
/// otherwise, even under `DLFS_REQUIRE_DATA`.
#[test]
fn fashion_mnist_when_downloaded() {
    let dir = scratch::data::default_dir();
    if !dir.join("fashion-mnist/train-images-idx3-ubyte.gz").exists() {
        eprintln!("skipped: the optional Fashion-MNIST is not in {}", dir.display());
        return;
    }
    let m = mnist::load(dir.join("fashion-mnist")).unwrap();
    assert_eq!((m.train_images.nrows(), m.test_images.nrows()), (60_000, 10_000));
}

// ---------------------------------------------------------------------------------------------------
// Text

#[test]
fn text_errors() {
    let dir = scratch_dir("text-bad");
    let err = message(text::load(dir.join("missing.txt")).unwrap_err());
    assert!(err.contains("missing.txt") && err.contains("make setup"), "{err}");
    write(&dir.join("latin1.txt"), b"caf\xe9");
    let err = message(text::load(dir.join("latin1.txt")).unwrap_err());
    assert!(err.contains("not UTF-8") && err.contains("offset 3"), "{err}");
    write(&dir.join("empty.txt"), b"  \n");
    assert!(message(text::load(dir.join("empty.txt")).unwrap_err()).contains("empty"));
}

#[test]
fn shakespeare_corpus() {
    let Some(dir) = data_dir_or_skip("text/shakespeare/hamlet.txt") else { return };
    let t = text::shakespeare(&dir, &["hamlet", "macbeth"]).unwrap();
    assert!(t.starts_with("HAMLET, PRINCE OF DENMARK"));
    assert_eq!(t.len(), 173_942 + 103_427);
    let vocab = text::Vocabulary::new(&t);
    assert!(vocab.len() > 60 && vocab.len() < 90, "{}", vocab.len());
}
