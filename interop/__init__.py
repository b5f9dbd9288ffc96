"""Running other Matrix implementations next to ours (see interop/synapse.py)."""
