"""tmfast.extraction."""
