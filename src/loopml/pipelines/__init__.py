"""Training pipelines: steps, caching and execution."""
