"""Event patterns and Lambda event filtering (esm-reference.md 11)."""
