"""Alembic migration scripts of the metadata database (one linear history)."""
