"""The Server-Server API: server keys, request authentication, discovery and policy."""
