"""The package version (read by hatchling at build time; a constant so importing LoopML stays fast)."""

__version__ = "0.1.0"
