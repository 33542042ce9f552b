"""tmfast.templates."""
