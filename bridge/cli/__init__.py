"""The `lambda-bridge` command line and the offline tools it runs (validate, filter-test,
deploy-file linting)."""

from bridge.cli.commands import main

__all__ = ["main"]
