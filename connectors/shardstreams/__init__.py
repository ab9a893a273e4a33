"""What sharded streams share (Kinesis Data Streams and DynamoDB Streams): shard lineage,
the readers of a stream's shards, and the SDK's timestamp handling. A shared package, so
that neither stream connector imports the other."""
