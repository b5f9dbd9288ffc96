"""PostgreSQL storage: the pool, migrations, one store per domain, the embedded server.

Nothing here imports from the packages above it (homeserver, federation, e2ee).
"""
