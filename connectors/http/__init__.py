"""Functions behind an HTTP endpoint speaking the Lambda Invoke contract (e.g. the RIE)."""
