"""tmfast.backends."""
