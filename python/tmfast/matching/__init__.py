"""tmfast.matching."""
