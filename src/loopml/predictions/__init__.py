"""The prediction log: Parquet segments of every served or batch-scored prediction, indexed in the metadata
store, and the true labels (feedback) that arrive later. Serving and batch scoring write it; monitoring reads it."""
