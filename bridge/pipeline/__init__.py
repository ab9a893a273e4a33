"""A mapping's run: reading, batching, invoking, retrying, settling and checkpointing records."""
