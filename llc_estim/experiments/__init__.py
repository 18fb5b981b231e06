"""Experiments tying compiler, data and estimator together (these may import the whole project)."""
