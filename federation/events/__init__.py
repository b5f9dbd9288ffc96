"""Room events over federation: validation of received PDUs, fetching, visibility."""
