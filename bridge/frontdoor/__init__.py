"""Lambda's front door: the Lambda API (Invoke, for now) that the aws cli, boto3 and every
AWS SDK drive with nothing changed but `--endpoint-url` (esm-reference.md 14)."""
