"""tmfast.filters."""
