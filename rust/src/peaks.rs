//! Peak finding on score maps (owned by the peaks work; see issue 2).
