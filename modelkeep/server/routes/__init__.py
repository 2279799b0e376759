"""HTTP routes, one module per group. Registry operations come from ``registry/operations.py``."""
