"""EventBridge: a destination for asynchronous invocation records (PutEvents)."""
