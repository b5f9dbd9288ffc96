"""Federation listener routes; federation.app mounts every module listed there."""
