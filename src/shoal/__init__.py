"""shoal: a local-first folder sync daemon with a PostgreSQL hub."""

__version__ = "0.1.0"
