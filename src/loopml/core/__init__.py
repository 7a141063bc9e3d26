"""Shared types every layer may use: errors, ids, settings, hashing, names, clock. Imports nothing of LoopML's."""
