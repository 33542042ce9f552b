"""tmfast.io."""
