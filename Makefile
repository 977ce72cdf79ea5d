# The two commands of the README, and the checks CI runs.
#   make tour   set up, then run the side-by-side tour of the book's experiments
#   make test   set up, then run the whole test suite
# `make setup` is idempotent: with everything in place it only verifies files (no network access).
#   make fixtures  regenerate the PyTorch fixtures of parity-tests (needs Python 3; the tests do not)

CARGO ?= cargo

.PHONY: setup setup-cuda tour test lint fixtures

setup:
	python3 scripts/setup.py

setup-cuda:
	python3 scripts/setup.py --cuda

# `make tour` and `make test` set up what `make setup` does, but fetch the data sets while the code
# compiles (only libtorch is needed to build): `$(call with_data,COMMAND)` installs libtorch, then runs
# COMMAND beside `setup.py --no-torch`, prints the fetch's log, and fails if either failed.
define with_data
	python3 scripts/setup.py --no-data
	log=$$(mktemp); python3 scripts/setup.py --no-torch > $$log 2>&1 & fetch=$$!; \
	$(1); built=$$?; wait $$fetch; fetched=$$?; cat $$log; rm -f $$log; \
	test $$fetched -eq 0 && test $$built -eq 0
endef

tour:
	$(call with_data,$(CARGO) build -p examples --bin dlfs)
	$(CARGO) run -p examples --bin dlfs -- tour

# The tests build in the one profile the tour builds in (see Cargo.toml), so that the second
# command reuses everything the first one compiled (libtorch's C++ bindings above all), and so does a
# plain `cargo test -p parity-tests` after it.
# DLFS_REQUIRE_DATA turns a missing data set into a test failure instead of a skipped test.
test:
	$(call with_data,$(CARGO) test --workspace --no-run)
	DLFS_REQUIRE_DATA=1 $(CARGO) test --workspace

lint:
	$(CARGO) fmt --all --check
	python3 scripts/check-features.py
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace

# The golden fixtures of parity-tests/tests/parity_suite/pytorch_fixtures.rs, computed by PyTorch itself in a virtual
# environment of their own (git-ignored); the tests read the committed files and need no Python.
FIXTURES_VENV ?= .venv-fixtures
PYTHON ?= python3

fixtures:
	test -x $(FIXTURES_VENV)/bin/python || $(PYTHON) -m venv $(FIXTURES_VENV)
	$(FIXTURES_VENV)/bin/pip install torch==2.11.0 safetensors numpy
	$(FIXTURES_VENV)/bin/python parity-tests/fixtures/generate.py
