#!/usr/bin/env bash
# The GPU check (docs/gpu.md): on a machine with an NVIDIA GPU and PyTorch 2.11 (with CUDA) installed,
# but no Rust toolchain, run from the bundle that scripts/gpu-bundle.sh builds:
#
#   * every parity test binary and the torch crate's integration tests, the torch engine on CUDA
#     (DLFS_TEST_DEVICE=cuda) and the from-scratch engine on the CPU, each comparison reporting its
#     worst difference against its tolerance;
#   * `dlfs run ch7-convnet --engine torch --epochs 1` on CUDA and on this machine's CPU: seconds per
#     epoch and test accuracy;
#   * `dlfs run ch6-lstm --engine torch` on CUDA: seconds per iteration and validation loss;
#   * `dlfs run ch8-gpt --engine torch` on CUDA in nanoGPT's GPU configuration of its character model
#     (6 blocks of 6 heads, width 384, context 256, batch 64, dropout 0.2) for a fixed time
#     (--gpt-seconds, default 120): tokens per second and validation loss;
#
# and write everything into one results file, OUT/gpu-check.txt, with the card's name, the libtorch
# version, and each command's output in OUT/logs/. It stays within a time budget (10 minutes).
#
#   scripts/gpu-check.sh [--torch PATH] [--bundle DIR] [--out DIR] [--cpu-only] [--iterations N]
#
#   --torch PATH    the Python environment (or site-packages, or torch package) that holds torch/lib;
#                   default $DLFS_TORCH, else /opt/torch/.venv
#   --bundle DIR    the bundle (default gpu-bundle)
#   --out DIR       where the results go (default $OUT if set, else gpu-check-out)
#   --cpu-only      everything on the CPU (DLFS_TEST_DEVICE=cpu, --device cpu): to try the check on a
#                   machine without a GPU; a real check never uses it
#   --iterations N  ch6-lstm's training iterations (default: the experiment's 2000)
#   --gpt-seconds S how long the GPT trains (default 120)
#   --budget S      stop starting work after S seconds (default 600): each step runs under a timeout of
#                   what is left, and the CPU epoch (last) is cut short, and said to be, if it runs over
#
# The binaries were linked against libtorch 2.11.0 (the files of PyPI's torch 2.11.0 wheel; see
# BUILD-INFO in the bundle). Their baked-in run path points at the machine they were built on, so this
# script puts the given torch/lib, and the CUDA libraries of the `nvidia` packages beside it, first in
# LD_LIBRARY_PATH: the binaries then load libtorch from there, and so does the engine's dlopen of
# libtorch_cuda.so (the CUDA backend, loaded when a run asks for the GPU).
set -uo pipefail
shopt -s nullglob

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

TORCH_PATH=${DLFS_TORCH:-/opt/torch/.venv}
BUNDLE=gpu-bundle
RESULTS=${OUT:-gpu-check-out}
DEVICE=cuda
ITERATIONS=
GPT_SECONDS=120
BUDGET=600
while [ $# -gt 0 ]; do
    case $1 in
        --torch) TORCH_PATH=${2:?--torch needs a path}; shift 2 ;;
        --bundle) BUNDLE=${2:?--bundle needs a folder}; shift 2 ;;
        --out) RESULTS=${2:?--out needs a folder}; shift 2 ;;
        --cpu-only) DEVICE=cpu; shift ;;
        --iterations)
            ITERATIONS=${2:?--iterations needs a number}
            [[ $ITERATIONS =~ ^[1-9][0-9]*$ ]] || { echo "gpu-check: --iterations: expected a whole number, got $ITERATIONS" >&2; exit 2; }
            shift 2 ;;
        --gpt-seconds)
            GPT_SECONDS=${2:?--gpt-seconds needs a number of seconds}
            [[ $GPT_SECONDS =~ ^[1-9][0-9]*$ ]] || { echo "gpu-check: --gpt-seconds: expected a whole number of seconds, got $GPT_SECONDS" >&2; exit 2; }
            shift 2 ;;
        --budget)
            BUDGET=${2:?--budget needs a number of seconds}
            [[ $BUDGET =~ ^[1-9][0-9]*$ ]] || { echo "gpu-check: --budget: expected a whole number of seconds, got $BUDGET" >&2; exit 2; }
            shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

fail() { echo "gpu-check: $*" >&2; exit 1; }
[ -f "$BUNDLE/binaries.tar.xz" ] || fail "no bundle at $BUNDLE (build it with scripts/gpu-bundle.sh where Rust is installed)"
TORCH_LIB=$(find -L "$TORCH_PATH" -maxdepth 6 -path '*torch/lib/libtorch_cpu.so' -print -quit 2> /dev/null)
[ -n "$TORCH_LIB" ] || fail "no torch/lib/libtorch_cpu.so under $TORCH_PATH: give the Python environment with --torch or DLFS_TORCH"
TORCH_LIB=$(cd "$(dirname "$TORCH_LIB")" && pwd)
TORCH_PKG=$(dirname "$TORCH_LIB")
NVIDIA_LIBS=$(find -L "$(dirname "$TORCH_PKG")/nvidia" -mindepth 2 -maxdepth 3 -type d -name lib 2> /dev/null | sort | paste -sd: -)
export LD_LIBRARY_PATH="$TORCH_LIB${NVIDIA_LIBS:+:$NVIDIA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PYTHON=$(command -v "$TORCH_PATH/bin/python" python3 2> /dev/null | head -n 1)

mkdir -p "$RESULTS/logs" || fail "cannot create $RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
REPORT=$RESULTS/gpu-check.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)

say() { printf '%s\n' "$*" | tee -a "$REPORT"; }
elapsed() { echo $(($(date +%s) - START)); }
remaining() { echo $((BUDGET - $(elapsed))); }

# The bundle, unpacked: the binaries, and the data decompressed (the test helpers look for the plain
# file names).
if command -v xz > /dev/null; then
    tar -C "$WORK" -xJf "$BUNDLE/binaries.tar.xz"
elif [ -n "$PYTHON" ]; then
    "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$BUNDLE/binaries.tar.xz" "$WORK"
else
    fail "neither xz nor python is available to unpack $BUNDLE/binaries.tar.xz"
fi || fail "cannot unpack $BUNDLE/binaries.tar.xz"
while read -r file; do
    mkdir -p "$WORK/data/$(dirname "$file")"
    gzip -dc "$BUNDLE/data/$file" > "$WORK/data/${file%.gz}" || fail "cannot decompress $BUNDLE/data/$file"
done < <(cd "$BUNDLE/data" && find . -name '*.gz')
mkdir -p "$WORK/tmp"
export DLFS_DATA=$WORK/data DLFS_REQUIRE_DATA=1 TMPDIR=$WORK/tmp RUST_BACKTRACE=1
DLFS=$WORK/bin/dlfs

: > "$REPORT"
say "# dlfs GPU check"
say ""
say "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine: $(uname -n), $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(ldd --version 2> /dev/null | head -n 1)"
if [ "$DEVICE" = cuda ]; then
    card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null | head -n 1)
    if [ -z "$card" ] && [ -n "$PYTHON" ]; then
        card=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0))' 2> /dev/null)
    fi
    say "card: ${card:-unknown (neither nvidia-smi nor torch.cuda names it)}"
else
    say "card: none used (--cpu-only: the torch engine on the CPU)"
fi
version=$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$TORCH_PKG/version.py" 2> /dev/null)
say "libtorch here: ${version:-unknown version} at $TORCH_LIB"
say "bundle:"
sed 's/^/  /' "$BUNDLE/BUILD-INFO" | tee -a "$REPORT"
built=$(sed -n 's/^libtorch_cpu.so sha256: //p' "$BUNDLE/BUILD-INFO")
here=$(sha256sum "$TORCH_LIB/libtorch_cpu.so" | cut -d' ' -f1)
if [ "$built" = "$here" ]; then
    say "libtorch_cpu.so: identical to the one the binaries were linked against"
else
    say "libtorch_cpu.so: differs from the one the binaries were linked against (sha256 $here)"
fi

# A first run of dlfs shows whether the binaries load here at all (libtorch, glibc, libstdc++).
if ! "$DLFS" list > "$RESULTS/logs/dlfs-list.log" 2>&1; then
    say ""
    say "the binaries do not run here: $(head -n 3 "$RESULTS/logs/dlfs-list.log")"
    exit 1
fi

# --- Parity tests -------------------------------------------------------------------------------------
say ""
say "## Tests on $DEVICE (torch engine on $DEVICE, from-scratch engine on the CPU)"
say ""
say "$(printf '%-24s %-8s %6s %6s %8s' binary result passed failed seconds)"
failed_any=0
# run_test NAME [SUFFIX [VAR=VALUE...]]: one test binary, its output in logs/test-NAME[SUFFIX].log.
run_test() {
    local name=$1 suffix=${2:-} log t0 status seconds passed failed result
    shift 2 || shift $#
    log=$RESULTS/logs/test-$name$suffix.log
    t0=$(date +%s.%N)
    local left
    left=$(remaining)
    [ "$left" -gt 300 ] && left=300
    if [ "$left" -lt 10 ]; then
        say "$(printf '%-24s skipped: the time budget (--budget %s s) is spent' "$name$suffix" "$BUDGET")"
        failed_any=1
        return
    fi
    env DLFS_TEST_DEVICE="$DEVICE" DLFS_PARITY_REPORT=1 "$@" timeout "$left" "$WORK/tests/$name" --nocapture > "$log" 2>&1
    status=$?
    seconds=$(echo "$t0 $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')
    passed=$(sed -n 's/^test result: .*\. \([0-9]*\) passed.*/\1/p' "$log" | tail -n 1)
    failed=$(sed -n 's/^test result: .* \([0-9]*\) failed.*/\1/p' "$log" | tail -n 1)
    case $status in
        0) result=ok ;;
        124) result=timeout ;;
        *) result=FAILED ;;
    esac
    [ $status -eq 0 ] || failed_any=1
    say "$(printf '%-24s %-8s %6s %6s %8s' "$name$suffix" "$result" "${passed:--}" "${failed:--}" "$seconds")"
}
for test in "$WORK"/tests/*; do
    run_test "$(basename "$test")"
done
# The layers cuDNN computes, again without it (DLFS_TEST_CUDNN=0): if a comparison fails with cuDNN
# and passes without, cuDNN's algorithms are the cause (TensorFloat-32 in f32 convolutions and
# recurrent layers, which libtorch allows by default).
if [ "$DEVICE" = cuda ]; then
    for name in convolution recurrent; do
        run_test "$name" -no-cudnn DLFS_TEST_CUDNN=0
    done
fi

say ""
say "## Worst difference of each test (ratio: the share of its tolerance used; over 1 fails)"
say ""
say "$(printf '%-64s %10s %10s  %s' binary/test ratio '|diff|' 'where')"
# "parity-worst <test> ratio <r> diff <d> <what>": the last line of a test is its worst (each line is a
# new worst).
for log in "$RESULTS"/logs/test-*.log; do
    awk -v bin="$(basename "$log" .log | sed 's/^test-//')" 'match($0, /parity-worst .*/) {
            n = split(substr($0, RSTART), f, " ")
            t = bin "/" f[2]; ratio[t] = f[4]; diff[t] = f[6]; what[t] = ""
            for (i = 7; i <= n; i++) what[t] = what[t] (i > 7 ? " " : "") f[i]
        }
        END { for (t in ratio) printf "%-64s %10s %10s  %s\n", t, ratio[t], diff[t], what[t] }' "$log" | sort
done | tee -a "$REPORT"

if [ $failed_any -ne 0 ]; then
    say ""
    say "## Failures"
    for log in "$RESULTS"/logs/test-*.log; do
        grep -A 3 "panicked at" "$log" | grep -v "^stack backtrace\|^--$\|^note:" | sed "s|^|$(basename "$log" .log): |" \
            | head -n 40 | tee -a "$REPORT"
    done
fi

# --- Training runs ------------------------------------------------------------------------------------
# summary NAME CSV: a summary value of the torch engine from a metrics CSV.
summary() { awk -F, -v name="$1" '$3 == "torch" && $4 == "summary" && $5 == name { print $7 }' "$2" 2> /dev/null; }

# One table: a run, its device, its speed (seconds per epoch or per iteration), its quality (test
# accuracy or validation loss) and its wall-clock seconds (data loading and evaluations included).
say ""
say "## Training (torch engine, f32)"
say ""
say "$(printf '%-28s %-6s %-20s %-28s %8s' run device speed result seconds)"
# train LABEL LOG CSV SPEED-KEY SPEED-UNIT RESULT-KEY RESULT-LABEL -- COMMAND...: one dlfs run, within
# what is left of the time budget.
train() {
    local label=$1 log=$2 csv=$3 speed=$4 unit=$5 result=$6 what=$7 device=$8 t0=$SECONDS left status
    shift 9
    left=$(remaining)
    if [ "$left" -lt 30 ]; then
        say "$(printf '%-28s %-6s skipped: the time budget (--budget %s s) is spent' "$label" "$device" "$BUDGET")"
        return
    fi
    timeout "$left" "$@" > "$RESULTS/logs/$log" 2>&1
    status=$?
    if [ $status -eq 0 ]; then
        say "$(printf '%-28s %-6s %-20s %-28s %8s' "$label" "$device" \
            "$(printf '%.4g %s' "$(summary "$speed" "$csv")" "$unit")" \
            "$(printf '%.4g %s' "$(summary "$result" "$csv")" "$what")" $((SECONDS - t0)))"
    elif [ $status -eq 124 ]; then
        say "$(printf '%-28s %-6s stopped after %s s (the time budget): see logs/%s' "$label" "$device" "$left" "$log")"
    else
        say "$(printf '%-28s %-6s failed (status %s): see logs/%s' "$label" "$device" $status "$log")"
    fi
}
convnet() {
    local out=$WORK/out-convnet-$1
    train "ch7-convnet, 1 epoch" "ch7-convnet-$1.log" "$out/ch7-convnet-metrics.csv" \
        seconds_per_epoch s/epoch test_accuracy_percent "% test accuracy" "$1" -- \
        "$DLFS" run ch7-convnet --engine torch --epochs 1 --device "$1" --out "$out"
}
convnet "$DEVICE"
out=$WORK/out-lstm-$DEVICE
train "ch6-lstm, ${ITERATIONS:-2000} iterations" "ch6-lstm-$DEVICE.log" "$out/ch6-lstm-metrics.csv" \
    seconds_per_iteration s/iteration final_validation_nats_per_char "nats/char, validation" "$DEVICE" -- \
    "$DLFS" run ch6-lstm --engine torch --device "$DEVICE" --out "$out" ${ITERATIONS:+--iterations "$ITERATIONS"}
out=$WORK/out-gpt-$DEVICE
train "ch8-gpt 6x384, ${GPT_SECONDS} s" "ch8-gpt-$DEVICE.log" "$out/ch8-gpt-metrics.csv" \
    tokens_per_second tokens/s final_validation_nats_per_char "nats/char, validation" "$DEVICE" -- \
    "$DLFS" run ch8-gpt --engine torch --device "$DEVICE" --out "$out" --layers 6 --heads 6 --hidden 384 \
    --context 256 --batch 64 --dropout 0.2 --max-seconds "$GPT_SECONDS"
# Last: the same convnet epoch on this machine's CPU, for comparison, in whatever time is left.
[ "$DEVICE" = cpu ] || convnet cpu
for csv in "$WORK"/out-*/*-metrics.csv; do
    [ -e "$csv" ] && cp "$csv" "$RESULTS/logs/$(basename "$(dirname "$csv")")-$(basename "$csv")"
done

say ""
say "total: $(elapsed) s"
exit $failed_any
