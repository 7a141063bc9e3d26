"""The metadata database: schema, migrations, and opening it safely on SQLite or PostgreSQL."""
