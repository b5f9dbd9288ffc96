"""The Synapse-compatible admin API at /_synapse/admin (see README.md in this folder)."""
