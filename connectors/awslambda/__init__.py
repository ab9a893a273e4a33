"""AWS Lambda: invoking a real function."""
