"""Device lists: who must re-fetch whose device keys, and when."""
