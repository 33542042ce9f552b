//! Integration tests of the formats core (no Python).
