//! Integration tests of the angles core (no Python).
