"""Amazon SQS: a queue as a source, and as an on-failure destination."""
