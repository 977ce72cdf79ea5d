# The two commands of the README, and the checks CI runs.
#   make tour   set up, then run the side-by-side tour of the book's experiments
#   make test   set up, then run the whole test suite
# `make setup` is idempotent: with everything in place it only verifies files (no network access).

CARGO ?= cargo

.PHONY: setup setup-cuda tour test lint

setup:
	python3 scripts/setup.py

setup-cuda:
	python3 scripts/setup.py --cuda

tour: setup
	$(CARGO) run --release -p examples --bin dlfs -- tour

# The tests build in the release profile, as the tour does, so that the second command reuses every
# dependency the first one compiled (libtorch's C++ bindings above all) instead of building them again.
# DLFS_REQUIRE_DATA turns a missing data set into a test failure instead of a skipped test.
test: setup
	DLFS_REQUIRE_DATA=1 $(CARGO) test --release --workspace

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --release --no-deps --workspace
