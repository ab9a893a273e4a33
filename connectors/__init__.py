"""Connectors: one sub-package per service (sources, invokers, destinations)."""
