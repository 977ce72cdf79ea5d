#!/usr/bin/env bash
# Builds the bundle that scripts/gpu-check.sh runs on a CUDA machine which has PyTorch but no Rust
# toolchain (see docs/gpu.md). Run it here, in the workspace, after `make setup`:
#
#   scripts/gpu-bundle.sh [FOLDER]        (default FOLDER: gpu-bundle, ignored by git)
#
# The folder holds, in under 64 MiB:
#   binaries.tar.xz   stripped builds of `dlfs`, of every test binary of the parity-tests crate
#                     and of the torch crate's integration tests, in bin/ and tests/ (one xz archive: the binaries
#                     share most of their code, which a solid archive stores once)
#   data/             gzip-compressed copies of MNIST, the Boston housing CSV and the Shakespeare texts
#                     (the check decompresses them)
#   BUILD-INFO        the commit, the compiler, the libtorch they were linked against (version and SHA-256
#                     of libtorch_cpu.so) and the newest glibc and libstdc++ symbol versions they need
#
# The binaries link libtorch dynamically: the run path baked in points at this machine's .libtorch/lib,
# which does not exist on the GPU machine, so gpu-check.sh puts that machine's torch/lib first in
# LD_LIBRARY_PATH. They are linked against libtorch 2.11.0 as installed by scripts/setup.py: the files of
# PyPI's torch 2.11.0 wheel, unchanged (their SHA-256 are those of the wheel's RECORD), without its CUDA
# dependencies. A full install of the same version (with CUDA) has the same C++ ABI; gpu-check.sh
# compares the two libtorch_cpu.so and reports whether they are identical.
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE=${1:-gpu-bundle}
LIMIT=$((64 * 1024 * 1024))
DATA=${DLFS_DATA:-data}
LIBTORCH_DIR=${LIBTORCH:-.libtorch}

for tool in cargo python3 strip xz gzip sha256sum objdump; do
    command -v "$tool" > /dev/null || { echo "gpu-bundle: \`$tool\` is needed and not installed" >&2; exit 1; }
done
for file in mnist/train-images-idx3-ubyte mnist/train-labels-idx1-ubyte mnist/t10k-images-idx3-ubyte \
    mnist/t10k-labels-idx1-ubyte boston/boston_house_prices.csv text/shakespeare/hamlet.txt; do
    [ -e "$DATA/$file" ] || [ -e "$DATA/$file.gz" ] || {
        echo "gpu-bundle: $DATA/$file is missing: run \`make setup\` first" >&2
        exit 1
    }
done
[ -e "$LIBTORCH_DIR/lib/libtorch_cpu.so" ] || {
    echo "gpu-bundle: no libtorch at $LIBTORCH_DIR: run \`make setup\` first" >&2
    exit 1
}

rm -rf "$BUNDLE"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/tests" "$BUNDLE/data"

# The executables cargo reports building, as "name<TAB>path" lines.
executables() {
    python3 -c '
import json, sys
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    # dlfs and the integration tests (not the unit tests of the harness library, which use no device).
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] in (["bin"], ["test"]):
        print(m["target"]["name"] + "\t" + m["executable"])'
}

echo "gpu-bundle: building the binaries (cargo, the profile the tests use)"
{
    cargo build -p examples --bin dlfs --message-format=json-render-diagnostics
    cargo test -p parity-tests --no-run --message-format=json-render-diagnostics
    cargo test -p torch --test torch_suite --no-run --message-format=json-render-diagnostics
} > "$STAGE/cargo.json"
executables < "$STAGE/cargo.json" > "$STAGE/executables.tsv"
while IFS=$'\t' read -r name path; do
    if [ "$name" = dlfs ]; then
        dest="$STAGE/bin/dlfs"
    else
        dest="$STAGE/tests/$name"
    fi
    strip --strip-all -o "$dest" "$path"
done < "$STAGE/executables.tsv"
[ -x "$STAGE/bin/dlfs" ] || { echo "gpu-bundle: cargo reported no dlfs executable" >&2; exit 1; }
echo "gpu-bundle: $(ls "$STAGE/tests" | wc -l) test binaries: $(ls "$STAGE/tests" | tr '\n' ' ')"
tar -C "$STAGE" -cf - bin tests | xz -9e -T0 > "$BUNDLE/binaries.tar.xz"

echo "gpu-bundle: compressing the data"
for file in mnist/train-images-idx3-ubyte mnist/train-labels-idx1-ubyte mnist/t10k-images-idx3-ubyte \
    mnist/t10k-labels-idx1-ubyte boston/boston_house_prices.csv; do
    mkdir -p "$BUNDLE/data/$(dirname "$file")"
    if [ -e "$DATA/$file" ]; then
        gzip -9 -c "$DATA/$file" > "$BUNDLE/data/$file.gz"
    else
        cp "$DATA/$file.gz" "$BUNDLE/data/$file.gz"
    fi
done
mkdir -p "$BUNDLE/data/text/shakespeare"
for text in "$DATA"/text/shakespeare/*.txt; do
    gzip -9 -c "$text" > "$BUNDLE/data/text/shakespeare/$(basename "$text").gz"
done

# The newest symbol version of `prefix` (GLIBC_, GLIBCXX_) that any binary needs.
newest() {
    for f in "$STAGE"/bin/* "$STAGE"/tests/*; do objdump -T "$f"; done \
        | grep -o "$1[0-9][0-9.]*" | sort -u -V | tail -n 1
}
torch_version=$(python3 -c "import runpy; print(runpy.run_path('$LIBTORCH_DIR/version.py')['__version__'])")
{
    echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo ' (with uncommitted changes)')"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "rustc: $(rustc --version)"
    echo "libtorch: $torch_version"
    echo "libtorch_cpu.so sha256: $(sha256sum "$LIBTORCH_DIR/lib/libtorch_cpu.so" | cut -d' ' -f1)"
    echo "needs glibc: $(newest GLIBC_ | sed 's/GLIBC_//')"
    echo "needs libstdc++ symbols: $(newest GLIBCXX_)"
} > "$BUNDLE/BUILD-INFO"
cat "$BUNDLE/BUILD-INFO"

size=$(du -sb "$BUNDLE" | cut -f1)
echo "gpu-bundle: $BUNDLE is $size bytes ($(du -sh "$BUNDLE" | cut -f1)), $((size * 100 / LIMIT)) % of 64 MiB"
if [ "$size" -ge "$LIMIT" ]; then
    echo "gpu-bundle: $BUNDLE is over 64 MiB" >&2
    exit 1
fi
