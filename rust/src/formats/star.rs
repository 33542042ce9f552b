//! RELION STAR writer (owned by the formats work; see issue 2).
