"""A folder as an event source (S3-shaped events) and files as failure destinations."""
