//! Integration tests of the pure core (no Python).
