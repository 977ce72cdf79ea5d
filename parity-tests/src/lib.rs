//! Parity between the two engines.
