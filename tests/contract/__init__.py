"""One conformance suite per connector role, each case run against every connector."""
