"""Redis Streams: a consumer-group source with stream leases, and an XADD destination."""
