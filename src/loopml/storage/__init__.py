"""Stores every domain builds on: the metadata database (SQLAlchemy + Alembic) and the content-addressed blobs."""
