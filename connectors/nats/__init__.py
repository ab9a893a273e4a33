"""NATS JetStream: a durable pull consumer as a queue source, with records modelled on SQS."""
