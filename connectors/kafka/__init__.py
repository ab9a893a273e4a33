"""Apache Kafka (self-managed or Amazon MSK) as a source and as an on-failure destination."""
