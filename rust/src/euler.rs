//! Euler-angle conventions (owned by the angles work; see issue 2).
