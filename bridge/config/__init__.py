"""The config file: its models, loading with `file:line: key: message` errors, and the
checks pydantic cannot make."""
