"""What every AWS connector shares: connection settings, clients and error mapping."""
