"""Loaders: one module per destination behind one small contract (loaders.base), a registry (loaders.registry)."""
