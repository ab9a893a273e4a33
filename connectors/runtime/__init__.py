"""The `runtime` invoker: function packages hosted in execution environments that speak
the Lambda Runtime API (esm-reference.md 15)."""
