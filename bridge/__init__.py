"""lambda-bridge: AWS Lambda event source mappings that run anywhere."""

__version__ = "0.1.0"
