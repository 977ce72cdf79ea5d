// Found only when libtorch is not installed: the real headers live in .libtorch/include.
#error "libtorch is not installed for this workspace. Run `make setup` (or `python3 scripts/setup.py`) in the repository root, then build again."
