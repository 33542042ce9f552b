//! Integration tests of the peaks core (no Python).
