"""Content-addressed blob storage over fsspec."""
