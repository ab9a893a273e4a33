"""The `lambda-bridge` command line and the offline tools it runs (validate, filter-test,
deploy-file linting)."""
