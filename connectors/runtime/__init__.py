"""The `runtime` invoker: function packages run in execution environments behind the Lambda
Runtime API."""
