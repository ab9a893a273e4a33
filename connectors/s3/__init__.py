"""Amazon S3: a bucket as an on-failure destination."""
