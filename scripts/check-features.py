#!/usr/bin/env python3
"""Checks that every command a contributor types builds each dependency with the features `make test`
builds it with, so that no command rebuilds what another one built.

Cargo picks a dependency's features from the packages a command selects: `cargo test --workspace` (what
`make test` runs) from all of them, `cargo test -p parity-tests` or `cargo run -p examples` from a part.
Where the part turns on fewer features of some crate, that crate and everything above it are compiled
again. The `workspace-hack` member turns the union on everywhere; this script fails, naming the crate,
when a dependency added since makes a selection differ again.
"""
import subprocess
import sys

# (what a contributor types, the cargo tree arguments that resolve the same features)
SELECTIONS = [
    ("cargo test -p scratch", ["-p", "scratch", "-e", "normal,build,dev"]),
    ("cargo test -p torch", ["-p", "torch", "-e", "normal,build,dev"]),
    ("cargo test -p parity-tests", ["-p", "parity-tests", "-e", "normal,build,dev"]),
    ("cargo test -p examples", ["-p", "examples", "-e", "normal,build,dev"]),
    ("cargo run -p examples (make tour)", ["-p", "examples", "-e", "normal,build"]),
]


def features(args):
    """Each package (name and version) with the feature lists it is built with (one per platform)."""
    out = subprocess.run(
        ["cargo", "tree", "--quiet", "--prefix", "none", "-f", "{p}|{f}", *args],
        check=True, capture_output=True, text=True,
    ).stdout
    packages = {}
    for line in out.splitlines():
        package, _, feats = line.removesuffix(" (*)").partition("|")
        if "(/" in package:  # a member of the workspace: no features of its own
            continue
        name_version = " ".join(package.split()[:2])
        packages.setdefault(name_version, set()).add(feats)
    return packages


def main():
    workspace = features(["--workspace", "-e", "normal,build,dev"])
    failures = []
    for command, args in SELECTIONS:
        for package, feats in sorted(features(args).items()):
            # A package can be built twice, for the host (build scripts, proc-macros) and for the target,
            # with a feature list each: every list of the selection must be one the workspace builds.
            if not feats <= workspace.get(package, set()):
                failures.append(f"{command}: {package} gets [{' / '.join(sorted(feats))}], "
                                f"`make test` gives it [{' / '.join(sorted(workspace.get(package, set())))}]")
    if failures:
        print("check-features: these commands would rebuild crates `make test` built, with other features:")
        print("\n".join("  " + f for f in failures))
        print("Add the crate with the missing features to workspace-hack/Cargo.toml "
              "([build-dependencies] for a proc-macro's or build script's dependency).")
        sys.exit(1)
    print(f"check-features: {len(SELECTIONS)} commands build {len(workspace)} dependencies as `make test` does")


if __name__ == "__main__":
    main()
