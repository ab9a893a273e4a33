"""What an operator sees of the running daemon: logs, metrics, health, the admin
endpoint, systemd notifications and reloads."""
