"""The demo environment: local stand-ins for the services of runbook 000, on loopback."""
