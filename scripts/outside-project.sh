#!/usr/bin/env bash
# Follows the README's section "In a project of your own" verbatim: the commands between its markers,
# with /path/to/dlfs replaced by this repository's path, run in a new temporary folder. They create a
# Cargo project outside this workspace that depends on the `scratch` and `torch` crates, set it up, build
# it and run it; the run must end with the from-scratch engine and libtorch agreeing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
block=$(sed -n '/<!-- own-project:begin -->/,/<!-- own-project:end -->/p' "$root/README.md" \
    | sed -n '/^```sh$/,/^```$/p' | sed '1d;$d')
if [ -z "$block" ]; then
    echo "outside-project: no commands between the own-project markers of README.md" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "outside-project: running the README's commands in $work"
output=$(bash -euo pipefail -c "${block//\/path\/to\/dlfs/$root}" 2>&1) || { echo "$output"; exit 1; }
echo "$output" | tail -n 12
if ! grep -q "predictions within .* of the from-scratch engine's" <<<"$output"; then
    echo "outside-project: the program did not print its comparison" >&2
    exit 1
fi
