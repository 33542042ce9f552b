//! Rotation sets for the exhaustive search (owned by the angles work; see issue 2).
