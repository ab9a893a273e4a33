"""In-process Python handlers."""
