"""Amazon SNS: a topic as an on-failure destination."""
