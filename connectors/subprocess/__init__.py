"""Functions run as a command per batch: event JSON on stdin, response JSON on stdout."""
