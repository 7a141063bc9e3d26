"""Data versioning: datasets and their immutable, content-addressed versions.

Dataset ── DatasetVersion v1, v2, ...   (a tree of files in the blob store; tables also carry a schema
                                         and a mergeable profile that monitoring uses as drift reference)
"""
