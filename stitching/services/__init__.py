"""Stitching writes: configuration (config) and the engine (engine)."""
