"""Amazon DynamoDB: a table's stream as a source, and a table as a checkpoint store."""
