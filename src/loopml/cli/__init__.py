"""The `loopml` command line: a thin shell over the Python API (Typer + Rich)."""
