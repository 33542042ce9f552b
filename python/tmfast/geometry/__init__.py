"""tmfast.geometry."""
