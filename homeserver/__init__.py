"""A Matrix homeserver for organisations that keep their messaging in their own jurisdiction."""

__version__ = "0.1.0"
