"""The pure event model: room versions, hashes, signatures, redaction, auth rules, state res."""
