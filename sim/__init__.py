"""Simulated machines: degradation to failure, operating regimes, sensor noise and injectable drift."""
