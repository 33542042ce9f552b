"""tmfast.batch."""
