"""Profile models of check targets, one module per kind (the `http`, `tls`... sections)."""
