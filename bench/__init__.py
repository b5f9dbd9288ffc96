"""Load generator and side-by-side benchmark against Synapse (see bench/README.md)."""
