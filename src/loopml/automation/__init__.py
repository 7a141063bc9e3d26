"""Continuous training and delivery: per-model policies, the controller that runs the loop, its timeline."""
